"""The notifications domain without servers: channel choice and fallback, the test-order redirect, the WhatsApp
window, forward-only status moves, the retry schedule, keys, and which kinds an event raises."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from services.notifications import domain
from services.notifications.contracts.vocabulary import MESSAGE_TRANSITIONS, MessageChannel, MessageStatus

pytestmark = pytest.mark.unit

C = MessageChannel
S = MessageStatus
PHONE, EMAIL = "+216 98 765 432", "lina@example.com"


@pytest.mark.parametrize(("order_channel", "phone", "email", "expected"), [
    ("whatsapp", PHONE, EMAIL, [C.whatsapp, C.sms, C.email]),
    ("whatsapp", PHONE, None, [C.whatsapp, C.sms]),
    ("whatsapp", None, EMAIL, [C.email]),
    ("web", PHONE, EMAIL, [C.email, C.sms]),
    ("marketplace", None, EMAIL, [C.email]),
    ("pos", PHONE, None, [C.sms]),
    ("chat", None, None, []),
])
def test_auto_channels_follow_the_order_channel_and_skip_missing_addresses(order_channel, phone, email, expected):
    plan = domain.channel_plan(order_channel, phone, email)
    assert [c for c, _a in plan] == expected
    assert all(a == (email if c is C.email else phone) for c, a in plan)


def test_pinned_channels_replace_auto_and_fallback_takes_the_next_untried():
    plan = domain.channel_plan("web", PHONE, EMAIL, ["sms", "whatsapp"])
    assert [c for c, _ in plan] == [C.sms, C.whatsapp]
    assert domain.next_channel(plan, {"sms"}) == (C.whatsapp, PHONE)
    assert domain.next_channel(plan, {"sms", "whatsapp"}) is None


def test_real_orders_go_to_the_customer():
    assert domain.route(C.sms, PHONE, test=False, test_recipient="t@x", sandbox_channels=set()) == \
        domain.Route(C.sms, PHONE, False)


def test_a_test_order_never_messages_a_real_customer():
    by_mail = domain.route(C.email, EMAIL, test=True, test_recipient="staff@shop", sandbox_channels={"sms"})
    assert by_mail == domain.Route(C.email, "staff@shop", True)
    sandboxed = domain.route(C.sms, PHONE, test=True, test_recipient="staff@shop", sandbox_channels={"sms"})
    assert sandboxed == domain.Route(C.sms, PHONE, True)
    real_provider = domain.route(C.whatsapp, PHONE, test=True, test_recipient="staff@shop", sandbox_channels={"sms"})
    assert real_provider == domain.Route(C.email, "staff@shop", True)
    assert domain.route(C.email, EMAIL, test=True, test_recipient=None, sandbox_channels=set()) is None


def test_whatsapp_window_is_24_hours_since_the_customer_wrote():
    t = datetime(2025, 3, 14, 12, tzinfo=UTC)
    assert domain.in_window(t - timedelta(hours=23, minutes=59), t)
    assert not domain.in_window(t - timedelta(hours=24), t)
    assert not domain.in_window(None, t)


def test_status_moves_forward_only():
    assert domain.can_move(S.queued, S.sent)
    assert domain.can_move(S.sent, S.read)  # a receipt may skip ahead
    assert not domain.can_move(S.read, S.delivered)  # late delivered after read
    assert not domain.can_move(S.delivered, S.delivered)  # duplicate
    assert not domain.can_move(S.delivered, S.failed)
    assert domain.can_move(S.failed, S.queued)  # staff resend
    for status, allowed in MESSAGE_TRANSITIONS.items():
        for target in S:
            assert domain.can_move(status, target) == (target in allowed)


def test_backoff_doubles_with_jitter_and_is_capped():
    assert domain.backoff(1, 5, 0.0) == timedelta(seconds=2.5)
    assert domain.backoff(1, 5, 0.999).total_seconds() == pytest.approx(5, rel=1e-3)
    assert domain.backoff(3, 5, 0.0) == timedelta(seconds=10)
    assert domain.backoff(30, 5, 0.999) <= domain.MAX_RETRY_DELAY
    with pytest.raises(ValueError):
        domain.backoff(1, 5, 1.0)


def test_one_key_per_event_kind_channel_recipient():
    event = uuid.uuid4()
    key = domain.message_key(event, "order_placed", "email", EMAIL)
    assert key == domain.message_key(str(event), "order_placed", "email", " LINA@example.com ")
    assert key != domain.message_key(event, "order_placed", "sms", PHONE)
    assert key != domain.message_key(uuid.uuid4(), "order_placed", "email", EMAIL)
    assert domain.resend_key(key, 1) != domain.resend_key(key, 2) != key


def test_masking():
    assert domain.mask("ana@example.com") == "a•••@example.com"
    assert domain.mask("+21698765412") == "+2169•••••12"


def test_kinds_for_events_under_settings():
    prefs = domain.default_preferences()
    assert domain.kinds_for(domain.EventFacts("order.placed.v1"), prefs) == ["order_placed", domain.STAFF_KIND]
    assert domain.kinds_for(domain.EventFacts("order.stage_changed.v1", to_stage="shipped"), prefs) == \
        ["order_stage_changed"]
    assert domain.kinds_for(domain.EventFacts("order.stage_changed.v1", to_stage="approved"), prefs) == []
    assert domain.kinds_for(domain.EventFacts("order.note_added.v1"), prefs) == []
    no_notify = domain.EventFacts("fulfillment.shipment_edited.v1", notify_customer=False)
    assert domain.kinds_for(no_notify, prefs) == []
    assert domain.kinds_for(domain.EventFacts("fulfillment.shipment_edited.v1"), prefs) == ["shipment_updated"]

    changed = domain.merge_update(prefs, [
        {"kind": "order_placed", "enabled": False},
        {"kind": "order_stage_changed", "stages": ["approved"]},
    ])
    assert domain.kinds_for(domain.EventFacts("order.placed.v1"), changed) == [domain.STAFF_KIND]
    assert domain.kinds_for(domain.EventFacts("order.stage_changed.v1", to_stage="approved"), changed) == \
        ["order_stage_changed"]
    assert domain.kinds_for(domain.EventFacts("order.stage_changed.v1", to_stage="shipped"), changed) == []


@pytest.mark.parametrize(("change", "field"), [
    ({"kind": "order_teleported"}, "kinds[0].kind"),
    ({"kind": domain.STAFF_KIND, "channels": ["sms"]}, "kinds[0].channels"),
    ({"kind": "payment_received", "stages": ["shipped"]}, "kinds[0].stages"),
])
def test_settings_changes_refused_name_the_field(change, field):
    with pytest.raises(domain.Refused) as exc:
        domain.merge_update(domain.default_preferences(), [change])
    assert exc.value.field == field


def test_settings_manifest_and_store_settings():
    from services.fulfillment.settings import FulfillmentSettings
    from services.notifications.manifest import message_status_table, notification_kinds_table
    from services.notifications.settings import NotificationSettings
    from shared.config import StoreSettings

    assert issubclass(NotificationSettings, StoreSettings) and issubclass(FulfillmentSettings, StoreSettings)
    s = NotificationSettings(sms_url="https://api.twilio.com", whatsapp_url="http://127.0.0.1:8092")
    assert s.sandbox_channels() == {"whatsapp"}
    assert "`read`" in message_status_table() and "(final)" in message_status_table()
    assert "`order_placed`" in notification_kinds_table() and "new_order_staff" in notification_kinds_table()
