"""The development mail catcher keeps mails as received and reads them when they are listed."""

from __future__ import annotations

from services.notifications.channels import Email
from services.notifications.channels.smtp import mail_bytes
from services.notifications.provider.mailcatcher import Mailbox, subject_of


def raw_mail(to: str, subject: str) -> bytes:
    return mail_bytes(Email(to=to, subject=subject, text="Bonjour,\nvotre commande", html="<p>Bonjour</p>",
                            message_id="<k1@oms>", headers={"X-OMS-Kind": "order_placed"}), "Shop <shop@example.com>")


def test_a_kept_mail_is_listed_with_its_fields_and_filtered_by_recipient() -> None:
    box = Mailbox(keep=10)
    box.add_raw("shop@example.com", ["Camille@Example.com"], raw_mail("camille@example.com", "Commande n° 1001"))
    box.add_raw("shop@example.com", ["store@example.com"], raw_mail("store@example.com", "New order #1001"))
    assert box.count() == 2
    (mail,) = box.list("camille@example.com")
    assert mail["subject"] == "Commande n° 1001" and mail["message_id"] == "<k1@oms>"
    assert mail["text"] == "Bonjour,\nvotre commande" and mail["html"] == "<p>Bonjour</p>"
    assert mail["headers"]["X-OMS-Kind"] == "order_placed" and mail["received_at"].endswith("Z")
    assert "raw" not in mail and [m["subject"] for m in box.list()] == ["Commande n° 1001", "New order #1001"]


def test_an_unreadable_mail_is_kept_as_text_never_refused() -> None:
    box = Mailbox(keep=10)
    box.add_raw("x@example.com", ["y@example.com"], b"\xff\xfe not a mail at all")
    (mail,) = box.list()
    assert mail["to"] == ["y@example.com"] and "not a mail at all" in mail["text"]


def test_the_log_line_reads_the_subject_from_the_headers_alone() -> None:
    assert subject_of(raw_mail("a@example.com", "Votre commande n° 1001 est expédiée")) == \
        "Votre commande n° 1001 est expédiée"
