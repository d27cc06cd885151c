"""The notifications use cases in-process against a real Postgres, with in-memory channels at the ports
(``tests/fakes.py``) and the real templates. Order events are built as the orders service publishes them
(``tests/builders.OrderStream``) and handed to the inbox, as the subscriber does; the sender is driven round by
round with an explicit clock (``send_due(at=...)``). Each test uses recipients of its own."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from services.notifications import store, usecases
from services.notifications.settings import NotificationSettings
from services.notifications.usecases import events as nevents
from shared.errors import InvalidRequest, NotAllowedInThisState
from tests.builders import OrderStream, place_order
from tests.conftest import Servers
from tests.fakes import InMemoryMail, InMemorySms, InMemoryWhatsApp

pytestmark = pytest.mark.integration

STAFF = {"type": "staff", "id": "tester", "name": "Tester"}
SETTINGS = NotificationSettings(notify_retry_base=1, notify_max_attempts=3, notify_claim_timeout=30,
                                store_email="shop@example.com")


@pytest.fixture(scope="module")
def db(migrated: dict[str, str], servers: Servers) -> Iterator[Any]:
    from shared.db import Database

    database = Database(servers.database_url, "notifications", size=4)
    database.open()
    yield database
    database.close()


@pytest.fixture(autouse=True)
def default_settings(db: Any) -> Iterator[None]:
    with db.transaction() as tx:
        tx.execute("DELETE FROM settings")
    yield
    with db.transaction() as tx:
        tx.execute("DELETE FROM settings")


@pytest.fixture
def ch() -> usecases.Channels:
    return usecases.Channels(InMemoryMail(), InMemorySms(), InMemoryWhatsApp())


def tag() -> str:
    return uuid.uuid4().hex[:8]


def phone() -> str:
    return f"+2169{uuid.uuid4().int % 10**7:07d}"


def place(db: Any, *, channel: str = "web", email: str | None = None, phone_number: str | None = None,
          test: bool = False, deliver: bool = True) -> OrderStream:
    customer = {"name": "Lina Ben Ali", **({"email": email} if email else {}),
                **({"phone": phone_number} if phone_number else {})}
    stream = OrderStream.place(place_order(currency="TND", lines=[("TEE", 2, "19.900")], channel=channel,
                                           customer=customer, test=test),
                               number=int(uuid.uuid4().int % 900_000) + 1000)
    if deliver:
        handle(db, stream.envelopes)
    return stream


def handle(db: Any, envs: list[Any], source: str = "orders", settings: NotificationSettings = SETTINGS) -> None:
    usecases.handle_events(db, settings, source, envs)


def messages(db: Any, order_id: str, **kw: Any) -> list[dict[str, Any]]:
    return usecases.list_messages(db, order_id=order_id, **kw)["items"]


def send(db: Any, ch: usecases.Channels, at: datetime | None = None, settings: NotificationSettings = SETTINGS) -> None:
    while usecases.send_due(db, ch, settings, at=at or datetime.now(UTC), jitter=lambda: 0.0):
        pass


def statuses(msg: dict[str, Any]) -> list[str]:
    return [h["status"] for h in msg["history"]]


def test_new_order_messages_the_customer_and_emails_the_store(db, ch):
    email = f"lina-{tag()}@example.com"
    stream = place(db, email=email)
    kinds = {m["kind"]: m for m in messages(db, stream.order_id)}
    assert set(kinds) == {"order_placed", "new_order_staff"}
    assert kinds["order_placed"]["recipient"] == email and kinds["order_placed"]["status"] == "queued"
    assert kinds["new_order_staff"]["recipient"] == "shop@example.com"
    send(db, ch)
    [mail] = ch.email.to(email)
    number = stream.placed.number
    assert str(number) in mail["subject"] and "39.800 TND" in mail["text"] and mail["html"]
    assert mail["message_id"] == f"<{kinds['order_placed']['id']}@oms>"
    staff = [m for m in ch.email.to("shop@example.com") if str(number) in m["subject"]]
    assert len(staff) == 1
    assert {m["status"] for m in messages(db, stream.order_id)} == {"sent"}


def test_a_duplicated_event_gives_one_message(db, ch):
    email = f"dup-{tag()}@example.com"
    stream = place(db, email=email)
    handle(db, stream.envelopes)  # the broker delivers it again
    # and even past the inbox (a restart that lost the inbox row): the message key is the same
    with db.transaction() as tx:
        order = store.get_order(tx, stream.order_id)
        prefs = store.load_preferences(tx)[0]
        again = nevents.enqueue(tx, SETTINGS, prefs, order, str(stream.envelopes[0].id), "order_placed", {})
    assert again == []
    assert len([m for m in messages(db, stream.order_id) if m["kind"] == "order_placed"]) == 1
    send(db, ch)
    send(db, ch)
    assert len(ch.email.to(email)) == 1


def test_provider_down_then_up_delivers_once_after_retrying(db, ch):
    number = phone()
    stream = place(db, channel="pos", phone_number=number)
    ch.sms.down = True
    t0 = datetime.now(UTC)
    send(db, ch, t0)
    [msg] = [m for m in messages(db, stream.order_id) if m["kind"] == "order_placed"]
    assert msg["channel"] == "sms" and msg["status"] == "retrying" and msg["attempts"] == 1
    assert "unavailable" in msg["reason"]
    send(db, ch, t0 + timedelta(milliseconds=100))  # not due yet: nothing is tried
    assert len(ch.sms.calls) == 1
    ch.sms.down = False
    send(db, ch, t0 + timedelta(seconds=5))
    [msg] = [m for m in messages(db, stream.order_id) if m["kind"] == "order_placed"]
    assert msg["status"] == "sent" and msg["attempts"] == 2
    assert statuses(msg) == ["queued", "retrying", "sent"]
    assert len(ch.sms.to(number)) == 1
    assert ch.sms.calls[0] == ch.sms.calls[1]  # the same idempotency key on each attempt


def test_an_outage_that_lasts_fails_the_message_after_the_last_attempt(db, ch):
    number = phone()
    stream = place(db, channel="pos", phone_number=number)
    ch.sms.down = True
    t = datetime.now(UTC)
    for i in range(SETTINGS.notify_max_attempts):
        send(db, ch, t + timedelta(hours=i))
    [msg] = [m for m in messages(db, stream.order_id) if m["kind"] == "order_placed"]
    assert msg["status"] == "failed" and "gave up after 3 attempts" in msg["reason"]


def test_a_permanent_failure_fails_alerts_staff_and_falls_back_to_the_next_channel(db, ch):
    number, email = phone(), f"wa-{tag()}@example.com"
    stream = place(db, channel="whatsapp", phone_number=number, email=email)
    ch.whatsapp.refuse[number] = ("131026", "Message undeliverable: not a WhatsApp number")
    send(db, ch)
    placed = {m["channel"]: m for m in messages(db, stream.order_id) if m["kind"] == "order_placed"}
    assert placed["whatsapp"]["status"] == "failed"
    assert "not a WhatsApp number" in placed["whatsapp"]["reason"]
    assert placed["sms"]["status"] == "sent"  # the fallback, sent in the same round
    assert len(ch.sms.to(number)) == 1 and ch.whatsapp.to(number) == []
    with db.transaction() as tx:
        alerts = tx.execute("SELECT * FROM alerts WHERE order_id = %s AND kind <> 'message_status'",
                            (stream.order_id,)).fetchall()
        link = tx.execute("SELECT fallback_of FROM messages WHERE id = %s", (placed["sms"]["id"],)).fetchone()
        events = tx.execute("SELECT event_type FROM outbox WHERE subject = %s ORDER BY id",
                            (stream.order_id,)).fetchall()
    assert [a["kind"] for a in alerts] == ["message_failed"]
    assert str(stream.placed.number) in alerts[0]["text"]
    assert str(link["fallback_of"]) == placed["whatsapp"]["id"]
    assert "notification.alert_raised.v1" in {e["event_type"] for e in events}


def test_a_test_order_messages_nobody_real(db, ch):
    email = f"real-{tag()}@example.com"
    stream = place(db, email=email, test=True)
    send(db, ch)
    assert ch.email.to(email) == []
    [msg] = [m for m in messages(db, stream.order_id) if m["kind"] == "order_placed"]
    assert msg["redirected"] and msg["recipient"] == "shop@example.com"
    assert msg["subject"].startswith("[TEST]") and msg["text"].startswith("[TEST]")

    # SMS: the sandbox provider may get it; a real provider never: redirected to the test recipient by e-mail
    usecases.update_settings(db, SETTINGS, {"test_recipient": "qa@example.com"}, STAFF)
    real = NotificationSettings(sms_url="https://api.twilio.com", store_email="shop@example.com")
    number = phone()
    stream = OrderStream.place(place_order(currency="TND", lines=[("TEE", 1, "5.000")], channel="pos",
                                           customer={"name": "Sami", "phone": number}, test=True), number=4242)
    handle(db, stream.envelopes, settings=real)
    [msg] = [m for m in messages(db, stream.order_id) if m["kind"] == "order_placed"]
    assert (msg["channel"], msg["recipient"], msg["redirected"]) == ("email", "qa@example.com", True)
    sandboxed = place(db, channel="pos", phone_number=number, test=True)
    [msg] = [m for m in messages(db, sandboxed.order_id) if m["kind"] == "order_placed"]
    assert (msg["channel"], msg["recipient"], msg["redirected"]) == ("sms", number, True)


def test_settings_are_effective_at_once(db, ch):
    usecases.update_settings(db, SETTINGS, {"kinds": [{"kind": "order_placed", "enabled": False}]}, STAFF)
    off = place(db, email=f"off-{tag()}@example.com")
    assert [m["kind"] for m in messages(db, off.order_id)] == ["new_order_staff"]
    view = usecases.update_settings(db, SETTINGS, {"kinds": [{"kind": "order_placed", "channels": ["sms"]}]}, STAFF)
    assert next(k for k in view["kinds"] if k["kind"] == "order_placed")["channels"] == ["sms"]
    number = phone()
    on = place(db, email=f"on-{tag()}@example.com", phone_number=number)
    [msg] = [m for m in messages(db, on.order_id) if m["kind"] == "order_placed"]
    assert (msg["channel"], msg["recipient"]) == ("sms", number)
    with pytest.raises(InvalidRequest) as exc:
        usecases.update_settings(db, SETTINGS, {"kinds": [{"kind": "nope"}]}, STAFF)
    assert exc.value.extra["errors"][0]["field"] == "kinds[0].kind"


def test_stage_changes_notify_for_the_chosen_stages_only(db, ch):
    email = f"stage-{tag()}@example.com"
    stream = place(db, email=email)
    handle(db, [stream.move("confirmed"), stream.move("approved"), stream.move("processed"), stream.move("shipped")])
    send(db, ch)
    texts = [m["text"] for m in ch.email.to(email)]
    assert len(texts) == 3  # placed, then confirmed and shipped (the default stages), not approved/processed
    assert any("Shipped" in t or "shipped" in t for t in texts)


def shipment_envelope(stream: OrderStream, seq: int, event: Any) -> Any:
    from shared.envelope import Envelope, source_for

    return Envelope(source=source_for("fulfillment"), type=event.event_type, subject=stream.order_id, sequence=seq,
                    correlationid=stream.order_id, causationid=stream.order_id, data=event.model_dump(mode="json"))


def test_a_shipment_edit_notifies_only_when_staff_ask_for_it(db, ch):
    from services.fulfillment.contracts import events as fev

    email = f"ship-{tag()}@example.com"
    stream = place(db, email=email)
    shipment = fev.ShipmentSummary(shipment_id=uuid.uuid4(), number=f"{stream.placed.number}-S1", kind="carrier",
                                   shipping_point="local", status="shipped", carrier="Aramex",
                                   tracking_number="AX1", tracking_url="https://t.example/AX1", lines=[])
    common = {"order_id": stream.placed.order_id, "number": stream.placed.number, "at": datetime.now(UTC),
              "actor": STAFF, "shipment": shipment, "changed": ["tracking_number"]}
    handle(db, [shipment_envelope(stream, 1, fev.ShipmentEdited(**common, notify_customer=False)),
                shipment_envelope(stream, 2, fev.ShipmentEdited(**common, notify_customer=True))], "fulfillment")
    updates = [m for m in messages(db, stream.order_id) if m["kind"] == "shipment_updated"]
    assert len(updates) == 1
    send(db, ch)
    assert any("AX1" in m["text"] for m in ch.email.to(email))


def test_receipts_move_forward_only_and_inbound_opens_the_window(db, ch):
    number = phone()
    # the customer wrote on WhatsApp: free text is allowed for 24 hours
    inbound = {"messages": [{"from": number.lstrip("+"), "id": "wamid.in1", "text": "hi",
                             "at": datetime.now(UTC).isoformat()}]}
    usecases.handle_provider_webhook(db, ch, SETTINGS, "whatsapp", json.dumps(inbound), {}, "http://x")
    ch.whatsapp.open.add(number)
    stream = place(db, channel="whatsapp", phone_number=number)
    send(db, ch)
    [sent] = ch.whatsapp.to(number)
    assert sent["type"] == "text"

    def receipt(status: str) -> int:
        body = json.dumps({"statuses": [{"id": sent["id"], "status": status}]})
        return usecases.handle_provider_webhook(db, ch, SETTINGS, "whatsapp", body, {}, "http://x")["applied"]

    assert receipt("read") == 1
    assert receipt("delivered") == 0  # late, after read: nothing changes
    assert receipt("read") == 0  # duplicate
    [msg] = [m for m in messages(db, stream.order_id) if m["kind"] == "order_placed"]
    assert msg["status"] == "read" and statuses(msg) == ["queued", "sent", "read"]


def test_every_status_a_message_takes_is_a_live_alert_on_its_order_and_emails_no_one(db, ch):
    number = phone()
    stream = place(db, phone_number=number)
    send(db, ch)
    [sent] = ch.sms.to(number)
    mails_before = len(ch.email.delivered)
    body = json.dumps({"MessageSid": sent["id"], "MessageStatus": "delivered"})
    applied = usecases.handle_provider_webhook(db, ch, SETTINGS, "sms", body, {"X-Twilio-Signature": "good"}, "http://x")
    assert applied["applied"] == 1
    with db.transaction() as tx:
        alerts = tx.execute("SELECT * FROM alerts WHERE order_id = %s AND kind = 'message_status' ORDER BY id",
                            (stream.order_id,)).fetchall()
        announced = tx.execute("SELECT count(*) AS n FROM outbox WHERE subject = %s"
                               " AND event_type = 'notification.alert_raised.v1'"
                               " AND payload::jsonb -> 'data' ->> 'kind' = 'message_status'",
                               (str(stream.order_id),)).fetchone()
        statuses = tx.execute("SELECT count(*) AS n FROM outbox WHERE subject = %s"
                              " AND event_type = 'notification.message_status_changed.v1'",
                              (str(stream.order_id),)).fetchone()
    sms = [a for a in alerts if a["title"].startswith("SMS")]
    assert [a["title"].rsplit(" ", 1)[-1] for a in sms] == ["queued", "sent", "delivered"]
    assert number not in sms[-1]["title"] and "sent -> delivered" in sms[-1]["text"]
    assert all(a["number"] == stream.placed.number for a in alerts)
    # On the live stream only: integrators have each status as its message_status_changed event, once.
    assert announced["n"] == 0 and statuses["n"] == len(alerts)
    assert len(ch.email.delivered) == mails_before  # an alert, not a message: no one is e-mailed


def test_whatsapp_outside_the_window_uses_the_approved_template(db, ch):
    number = phone()
    stream = place(db, channel="whatsapp", phone_number=number)
    send(db, ch)
    [sent] = ch.whatsapp.to(number)
    assert sent["type"] == "template" and sent["template"] == "oms_order_placed"
    assert str(stream.placed.number) in sent["params"]


def test_a_bad_signature_is_rejected(db, ch):
    from services.notifications.contracts.errors import ProviderWebhookRejected

    with pytest.raises(ProviderWebhookRejected):
        usecases.handle_provider_webhook(db, ch, SETTINGS, "sms", "{}", {"X-Twilio-Signature": "forged"}, "http://x")


def test_crash_after_the_provider_accepted_sends_again_with_the_same_key(db, ch):
    number = phone()
    stream = place(db, channel="pos", phone_number=number)
    t0 = datetime.now(UTC)
    with db.transaction() as tx:  # a sender claims the row, the provider accepts, then the process dies
        rows = [r for r in store.claim_due(tx, t0, t0 + timedelta(seconds=30), 1000)
                if str(r["order_id"]) == stream.order_id and r["kind"] == "order_placed"]
    [row] = rows
    ch.sms.send(number, "Your order", str(row["idempotency_key"]))
    send(db, ch, t0 + timedelta(seconds=1))  # still claimed: not sent again
    assert len(ch.sms.calls) == 1
    send(db, ch, t0 + timedelta(seconds=31))  # the claim ran out: sent again, same key
    assert ch.sms.calls == [str(row["idempotency_key"])] * 2
    assert len(ch.sms.to(number)) == 1
    [msg] = [m for m in messages(db, stream.order_id) if m["kind"] == "order_placed"]
    assert msg["status"] == "sent" and msg["attempts"] == 1


def test_resend_of_a_failed_message_uses_a_new_key(db, ch):
    number = phone()
    stream = place(db, channel="pos", phone_number=number)
    ch.sms.refuse[number] = ("21211", "invalid number")
    send(db, ch)
    [msg] = [m for m in messages(db, stream.order_id) if m["kind"] == "order_placed"]
    assert msg["status"] == "failed"
    with pytest.raises(NotAllowedInThisState):
        usecases.resend_message(db, [m for m in messages(db, stream.order_id)
                                     if m["kind"] == "new_order_staff"][0]["id"], STAFF)
    del ch.sms.refuse[number]
    again = usecases.resend_message(db, msg["id"], STAFF)
    assert again["status"] == "queued"
    send(db, ch)
    assert usecases.get_message(db, msg["id"])["status"] == "sent"
    assert len(set(ch.sms.calls)) == 2


def test_templates_are_validated_at_save_time_and_used_at_once(db, ch):
    with pytest.raises(InvalidRequest) as exc:
        usecases.save_template(db, {"kind": "order_placed", "channel": "sms", "language": "en",
                                    "text": "Hi {{ ordr.number }}"}, STAFF)
    [err] = exc.value.extra["errors"]
    assert err["field"] == "text" and "ordr" in err["reason"]
    saved = usecases.save_template(db, {"kind": "order_placed", "channel": "sms", "language": "en",
                                        "text": "Order {{ order.number }} received, {{ customer.first_name }}!"},
                                   STAFF)
    assert not saved["is_default"] and "order" in saved["variables"]
    try:
        number = phone()
        stream = place(db, channel="pos", phone_number=number)
        send(db, ch)
        assert ch.sms.to(number)[0]["body"] == f"Order {stream.placed.number} received, Lina!"
        preview = usecases.preview_template(db, SETTINGS, {"kind": "order_placed", "channel": "sms",
                                                          "order_id": stream.order_id})
        assert preview["text"] == f"Order {stream.placed.number} received, Lina!" and preview["recipient"] == number
        listed = usecases.list_templates(db, kind="order_placed", channel="sms", language="en")["items"]
        assert [t["is_default"] for t in listed] == [False]
    finally:
        reset = usecases.reset_template(db, "order_placed", "sms", "en", STAFF)
    assert reset["is_default"]
    assert usecases.list_templates(db, kind="order_placed", channel="sms", language="en")["items"][0]["is_default"]


def test_a_receipt_that_overtakes_the_record_of_its_send_is_refused_for_a_retry_not_lost(db, ch):
    from services.notifications.contracts.errors import ReceiptTooEarly

    number = phone()
    ch.whatsapp.open.add(number)
    stream = place(db, channel="whatsapp", phone_number=number)
    early = json.dumps({"statuses": [{"id": "wamid.not-recorded-yet", "status": "delivered"}]})
    with pytest.raises(ReceiptTooEarly):  # 503: the provider delivers it again a moment later
        usecases.handle_provider_webhook(db, ch, SETTINGS, "whatsapp", early, {}, "http://x")
    send(db, ch)
    [sent] = ch.whatsapp.to(number)
    again = json.dumps({"statuses": [{"id": sent["id"], "status": "delivered"}]})
    assert usecases.handle_provider_webhook(db, ch, SETTINGS, "whatsapp", again, {}, "http://x")["applied"] == 1
    [msg] = [m for m in messages(db, stream.order_id) if m["kind"] == "order_placed"]
    assert msg["status"] == "delivered"


def test_a_round_records_a_sent_a_retryable_and_a_permanent_failure_together(db, ch):
    sent_to, refused, number, wa = f"ok-{tag()}@example.com", f"gone-{tag()}@example.com", phone(), phone()
    ok = place(db, email=sent_to)
    down = place(db, channel="whatsapp", phone_number=wa)  # WhatsApp is down: retryable
    gone = place(db, email=refused, phone_number=number)  # the mailbox does not exist: permanent, then SMS
    ch.whatsapp.down = True
    ch.email.refuse[refused] = ("recipient_refused", "550 5.1.1 user unknown")
    at = datetime.now(UTC)
    assert usecases.send_due(db, ch, SETTINGS, at=at, limit=1000, jitter=lambda: 0.0) >= 6

    def customer(stream: OrderStream) -> list[dict[str, Any]]:
        return [m for m in messages(db, stream.order_id) if m["kind"] == "order_placed"]

    [sent], [retrying] = customer(ok), customer(down)
    failed = next(m for m in customer(gone) if m["channel"] == "email")
    fallback = next(m for m in customer(gone) if m["channel"] == "sms")
    assert (sent["status"], sent["attempts"], statuses(sent)) == ("sent", 1, ["queued", "sent"])
    assert sent["provider_message_id"] == ch.email.to(sent_to)[0]["id"]
    assert (retrying["status"], retrying["attempts"], statuses(retrying)) == ("retrying", 1, ["queued", "retrying"])
    assert "unavailable" in retrying["reason"]
    assert (failed["status"], statuses(failed)) == ("failed", ["queued", "failed"])
    assert failed["reason"] == "recipient_refused: 550 5.1.1 user unknown"
    assert (fallback["status"], fallback["recipient"], statuses(fallback)) == ("queued", number, ["queued"])
    ids = [sent["id"], retrying["id"], failed["id"], fallback["id"]]
    ids += [m["id"] for s in (ok, down, gone) for m in messages(db, s.order_id) if m["kind"] == "new_order_staff"]
    with db.transaction() as tx:
        # one transaction wrote every outcome of the round: the rows carry its transaction id (xmin)
        written = tx.execute("SELECT id, xmin::text AS tx, next_attempt_at, claimed_until, fallback_of"
                             " FROM messages WHERE id = ANY(%s::uuid[])", (ids,)).fetchall()
        alerts = tx.execute("SELECT kind, xmin::text AS tx FROM alerts WHERE order_id = %s AND kind = 'message_failed'",
                            (gone.order_id,)).fetchall()
        events = tx.execute(
            "SELECT subject, event_type, payload::jsonb -> 'data' AS data FROM outbox"
            " WHERE subject = ANY(%s) AND xmin::text = %s ORDER BY id",
            ([ok.order_id, down.order_id, gone.order_id], written[0]["tx"])).fetchall()
    assert len(written) == 7 and {w["tx"] for w in written} == {written[0]["tx"]}
    assert all(w["claimed_until"] is None for w in written)
    by_id = {str(w["id"]): w for w in written}
    assert by_id[retrying["id"]]["next_attempt_at"] == at + timedelta(seconds=SETTINGS.notify_retry_base / 2)
    assert str(by_id[fallback["id"]]["fallback_of"]) == failed["id"]
    assert [a["tx"] for a in alerts] == [written[0]["tx"]]
    moves = {(e["data"]["message_id"], e["data"]["status"]) for e in events
             if e["event_type"] == "notification.message_status_changed.v1"}
    assert {(sent["id"], "sent"), (retrying["id"], "retrying"), (failed["id"], "failed"),
            (fallback["id"], "queued")} <= moves
    raised = [e["data"]["kind"] for e in events if e["event_type"] == "notification.alert_raised.v1"]
    assert raised == ["message_failed"]

    ch.whatsapp.down = False
    send(db, ch, at + timedelta(seconds=5))
    assert customer(down)[0]["status"] == "sent" and len(ch.whatsapp.to(wa)) == 1
    assert usecases.get_message(db, fallback["id"])["status"] == "sent" and len(ch.sms.to(number)) == 1
    assert len(ch.email.to(sent_to)) == 1


def test_a_round_whose_record_fails_is_sent_again_with_the_same_keys_and_loses_nothing(db, ch, monkeypatch):
    import psycopg

    email, number = f"lost-{tag()}@example.com", phone()
    by_mail, by_sms = place(db, email=email), place(db, channel="pos", phone_number=number)
    real = store.record_round

    def database_gone(*args: Any, **kwargs: Any) -> None:
        raise psycopg.OperationalError("server closed the connection unexpectedly")

    monkeypatch.setattr(store, "record_round", database_gone)
    t0 = datetime.now(UTC)
    with pytest.raises(psycopg.OperationalError):
        usecases.send_due(db, ch, SETTINGS, at=t0, limit=1000, jitter=lambda: 0.0)
    assert len(ch.email.to(email)) == 1 and len(ch.sms.to(number)) == 1  # the providers took them
    for stream in (by_mail, by_sms):  # but nothing of the round was kept: still queued, still claimed
        assert {(m["status"], m["attempts"]) for m in messages(db, stream.order_id)} == {("queued", 0)}
        assert all(statuses(m) == ["queued"] for m in messages(db, stream.order_id))
    monkeypatch.setattr(store, "record_round", real)
    send(db, ch, t0 + timedelta(seconds=1))  # the claims have not run out: nothing is sent again yet
    assert len(ch.sms.calls) == 1

    send(db, ch, t0 + timedelta(seconds=SETTINGS.notify_claim_timeout + 1))
    for stream in (by_mail, by_sms):
        for m in messages(db, stream.order_id):
            assert (m["status"], m["attempts"], statuses(m)) == ("sent", 1, ["queued", "sent"])
    [sms] = [m for m in messages(db, by_sms.order_id) if m["kind"] == "order_placed"]
    assert ch.sms.calls == [str(sms["id"])] * 2 and len(ch.sms.to(number)) == 1  # same key: the provider dedupes
    # SMTP has no idempotency: the mail went twice, under one Message-ID (mail clients show one)
    assert len({m["message_id"] for m in ch.email.to(email)}) == 1


def test_a_round_that_takes_half_the_claim_timeout_sends_no_more_and_releases_the_rest(db, ch):
    email = f"slow-{tag()}@example.com"
    send(db, ch)  # nothing else due
    again = place(db, email=email)  # two messages: the customer's and the store's
    ticks = iter([0.0, 0.0] + [SETTINGS.notify_claim_timeout] * 100)  # the first send took half the claim timeout
    at = datetime.now(UTC)
    assert usecases.send_due(db, ch, SETTINGS, at=at, limit=1000, jitter=lambda: 0.0, clock=lambda: next(ticks)) == 2
    mine = messages(db, again.order_id)
    assert sorted(m["status"] for m in mine) == ["queued", "sent"]
    with db.transaction() as tx:
        [rest] = tx.execute("SELECT claimed_until, attempts FROM messages WHERE id = %s",
                            (next(m["id"] for m in mine if m["status"] == "queued"),)).fetchall()
    assert rest["claimed_until"] is None and rest["attempts"] == 0  # released, not tried
    assert usecases.send_due(db, ch, SETTINGS, at=at, limit=1000, jitter=lambda: 0.0) == 1  # due at once
    assert {m["status"] for m in messages(db, again.order_id)} == {"sent"}
    assert len(ch.email.to(email)) == 1
