"""The carrier's tracking webhooks are accepted only when signed with the shared secret and fresh."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from services.fulfillment.carrier import CarrierError
from services.fulfillment.carrier.adapter import HttpCarrier, sign_webhook
from services.fulfillment.contracts.sandbox import SIGNATURE_HEADER

pytestmark = pytest.mark.unit

SECRET = "test-carrier-webhook-secret"

BODY = json.dumps(
    {
        "id": "evt_1",
        "type": "tracking.updated",
        "tracking_number": "SBX000000000001",
        "label_id": "lbl_1",
        "status": "failure",
        "description": "Nobody at home",
        "location": "Lyon",
        "occurred_at": "2025-03-04T10:15:00.000000Z",
    },
    separators=(",", ":"),
)


@pytest.fixture
def carrier() -> Iterator[HttpCarrier]:
    c = HttpCarrier("http://127.0.0.1:9", "key", SECRET)
    yield c
    c.close()


def signed(body: str = BODY, *, secret: str = SECRET, at: int | None = None) -> dict[str, str]:
    return {SIGNATURE_HEADER: sign_webhook(secret, body, at)}


def test_a_genuine_webhook_verifies_and_maps_the_carrier_word_to_a_shipment_status(carrier: HttpCarrier) -> None:
    update = carrier.verify_webhook(BODY, signed())
    assert (update.event_id, update.label_id, update.tracking_number) == ("evt_1", "lbl_1", "SBX000000000001")
    assert (update.carrier_status, update.status) == ("failure", "delivery_failed")
    assert update.occurred_at == datetime(2025, 3, 4, 10, 15, tzinfo=UTC)
    assert (update.description, update.location) == ("Nobody at home", "Lyon")
    # bytes, as a web framework hands them over, and a lower-case header name verify the same
    assert carrier.verify_webhook(BODY.encode(), {SIGNATURE_HEADER.lower(): signed()[SIGNATURE_HEADER]}) == update


def test_a_tampered_body_is_refused(carrier: HttpCarrier) -> None:
    headers = signed()
    tampered = BODY.replace('"failure"', '"delivered"')
    assert tampered != BODY
    with pytest.raises(CarrierError) as info:
        carrier.verify_webhook(tampered, headers)
    assert info.value.code == "bad_signature" and not info.value.retryable


def test_a_signature_made_with_another_secret_is_refused(carrier: HttpCarrier) -> None:
    with pytest.raises(CarrierError) as info:
        carrier.verify_webhook(BODY, signed(secret="somebody-else"))
    assert info.value.code == "bad_signature"


def test_a_stale_or_future_timestamp_is_refused_even_when_correctly_signed(carrier: HttpCarrier) -> None:
    now = int(time.time())
    with pytest.raises(CarrierError, match="tolerance") as stale:
        carrier.verify_webhook(BODY, signed(at=now - 301), now=now)
    assert stale.value.code == "bad_signature"
    with pytest.raises(CarrierError, match="tolerance"):
        carrier.verify_webhook(BODY, signed(at=now + 301), now=now)
    # inside the window it passes: a late *event* (old occurred_at) is not a stale *message*
    assert carrier.verify_webhook(BODY, signed(at=now - 299), now=now).event_id == "evt_1"


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {SIGNATURE_HEADER: ""},
        {SIGNATURE_HEADER: "v1=abcdef"},
        {SIGNATURE_HEADER: f"t={int(time.time())}"},
        {SIGNATURE_HEADER: "t=yesterday,v1=abcdef"},
    ],
    ids=["missing", "empty", "no-timestamp", "no-signature", "bad-timestamp"],
)
def test_a_missing_or_malformed_signature_header_is_refused(carrier: HttpCarrier, headers: dict[str, str]) -> None:
    with pytest.raises(CarrierError) as info:
        carrier.verify_webhook(BODY, headers)
    assert info.value.code == "bad_signature"


def test_one_valid_signature_among_several_is_enough_for_secret_rotation(carrier: HttpCarrier) -> None:
    ts = int(time.time())
    old = sign_webhook("the-old-secret", BODY, ts).split(",")[1]
    new = sign_webhook(SECRET, BODY, ts)
    assert carrier.verify_webhook(BODY, {SIGNATURE_HEADER: f"{new},{old}"}).event_id == "evt_1"


def test_a_signed_body_that_is_not_a_tracking_update_is_refused_as_bad_payload(carrier: HttpCarrier) -> None:
    body = BODY.replace('"failure"', '"teleported"')
    with pytest.raises(CarrierError) as info:
        carrier.verify_webhook(body, signed(body))
    assert info.value.code == "bad_payload"
