"""The mail ``SmtpSender`` writes (``channels.smtp.mail_bytes``), read back by the standard library's parser as a
receiving client would: headers, encodings, line ends and lengths, and the parts."""

from __future__ import annotations

import email
import email.policy
from email.message import EmailMessage

from services.notifications.channels import Email
from services.notifications.channels.smtp import mail_bytes

SENDER = "Atelier Lüne, Tunis <shop@atelier.example>"
LONG_SUBJECT = "Votre commande n° 1001 est expédiée — suivez-la 📦 " * 4
TEXT = "Bonjour Camille,\r\n.a line starting with a dot\nprix = 44.535 TND  \n" + "très long " * 300 + "\nfin"
HTML = "<p>Bonjour Camille,</p>\n<p>" + "<b>en route</b> " * 200 + "</p>"


def mail(**kw: object) -> Email:
    fields: dict[str, object] = {
        "to": "camille@example.com", "subject": LONG_SUBJECT, "text": TEXT, "html": HTML,
        "message_id": "3f2b6c1e@oms", "headers": {"X-OMS-Kind": "order_placed", "X-OMS-Note": "Noël",
                                                  "Bcc": "spy@example.com", "Message-ID": "<not-this@evil>"}}
    fields.update(kw)
    return Email(**fields)  # type: ignore[arg-type]


def parse(raw: bytes) -> EmailMessage:
    message = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    return message


def test_the_mail_reads_back_whole_with_non_ascii_headers_long_lines_and_both_parts() -> None:
    raw = mail_bytes(mail(), SENDER)
    message = parse(raw)
    assert not message.defects and all(not p.defects for p in message.walk())
    assert message["From"].addresses[0].display_name == "Atelier Lüne, Tunis"
    assert message["From"].addresses[0].addr_spec == "shop@atelier.example"
    assert str(message["To"]) == "camille@example.com"
    assert str(message["Subject"]) == LONG_SUBJECT
    assert str(message["Message-ID"]) == "<3f2b6c1e@oms>"
    assert message["X-OMS-Kind"] == "order_placed" and str(message["X-OMS-Note"]) == "Noël"
    assert message["Bcc"] is None and message["Date"] is not None and message["MIME-Version"] == "1.0"
    assert message.get_content_type() == "multipart/alternative"
    plain, html = message.iter_parts()
    assert plain.get_content_type() == "text/plain" and html.get_content_type() == "text/html"
    assert plain.get_content().replace("\r\n", "\n") == TEXT.replace("\r\n", "\n")
    assert html.get_content().replace("\r\n", "\n") == HTML


def test_every_line_ends_in_crlf_and_stays_short() -> None:
    raw = mail_bytes(mail(), SENDER)
    assert raw.endswith(b"\r\n") and b"\n" not in raw.replace(b"\r\n", b"")  # no bare LF or CR
    lines = raw.split(b"\r\n")
    assert raw.isascii()  # 7-bit clean: no server needs 8BITMIME
    assert max(len(line) for line in lines) <= 78
    head = raw.split(b"\r\n\r\n", 1)[0]
    assert b"\xc3" not in head and b"=?utf-8?q?" in head  # encoded words, never raw UTF-8 in a header


def test_a_header_value_cannot_add_a_header() -> None:
    raw = mail_bytes(mail(subject="Hello\r\nBcc: spy@example.com", headers={"X-OMS-Kind": "a\nX-Evil: 1"}), SENDER)
    message = parse(raw)
    assert message["Bcc"] is None and message["X-Evil"] is None
    assert str(message["Subject"]) == "Hello Bcc: spy@example.com"


def test_a_text_only_mail_is_text_plain() -> None:
    message = parse(mail_bytes(mail(html=None, subject="Hi", headers={}), "oms@localhost"))
    assert message.get_content_type() == "text/plain" and message["Subject"] == "Hi"
    assert str(message["From"]) == "oms@localhost"
    assert message.get_content().replace("\r\n", "\n") == TEXT.replace("\r\n", "\n")
