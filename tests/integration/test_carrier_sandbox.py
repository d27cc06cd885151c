"""``HttpCarrier`` against the sandbox carrier started as its own process (``python -m``, configured only by its
``OMS_*`` settings), over HTTP, with a local receiver for its signed tracking webhooks."""

from __future__ import annotations

import io
import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal as D
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from pypdf import PdfReader

from services.fulfillment.carrier import CarrierError, Label, Rate, RateRequest, TrackingUpdate, VoidResult
from services.fulfillment.carrier.adapter import HttpCarrier
from services.fulfillment.contracts.sandbox import CARRIER_NAME, SIGNATURE_HEADER

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
API_KEY = "test-carrier-key"
SECRET = "test-carrier-webhook-secret"

SHIPPER = {
    "name": "Atelier Lune",
    "phone": "+33 1 23 45 67 89",
    "address": {"line1": "12 rue des Lilas", "city": "Paris", "postal_code": "75011", "country": "FR"},
}
RECIPIENT = {
    "name": "Camille Durand",
    "address": {"line1": "3 place Bellecour", "city": "Lyon", "postal_code": "69002", "country": "FR"},
}
ABROAD = {
    "name": "Jonas Berg",
    "address": {"line1": "Storgatan 1", "city": "Stockholm", "postal_code": "111 51", "country": "SE"},
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Receiver:
    """A webhook endpoint that records every delivery (headers, body); fails the next ``fail_next`` with 500."""

    def __init__(self) -> None:
        self.received: list[tuple[dict[str, str], bytes]] = []
        self.fail_next = 0
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server API)
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                with receiver.lock:
                    receiver.received.append(({k: v for k, v in self.headers.items()}, body))
                    failing = receiver.fail_next > 0
                    receiver.fail_next -= 1 if failing else 0
                self.send_response(500 if failing else 204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/carrier-webhooks"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def for_parcel(self, tracking_number: str) -> list[tuple[dict[str, str], bytes]]:
        with self.lock:
            return [(h, b) for h, b in self.received if json.loads(b)["tracking_number"] == tracking_number]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


def start_sandbox(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("OMS_")}
    full_env.update(env)
    with open(log, "wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "services.fulfillment.carrier.sandbox"],
            cwd=ROOT,
            env=full_env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


@pytest.fixture(scope="module")
def sandbox_url(receiver: Receiver, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = free_port()
    log = tmp_path_factory.mktemp("carrier") / "sandbox-carrier.log"
    proc = start_sandbox(
        {
            "OMS_SANDBOX_CARRIER_PORT": str(port),
            "OMS_SANDBOX_CARRIER_WEBHOOK_URL": receiver.url,
            "OMS_CARRIER_API_KEY": API_KEY,
            "OMS_CARRIER_WEBHOOK_SECRET": SECRET,
        },
        log,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"the sandbox carrier exited with {proc.returncode}:\n{log.read_text()}")
            try:
                httpx.get(f"{url}/track/none", timeout=1)
                break
            except httpx.TransportError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the sandbox carrier did not start:\n{log.read_text()}") from None
                time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture
def carrier(sandbox_url: str) -> Iterator[HttpCarrier]:
    c = HttpCarrier(sandbox_url, API_KEY, SECRET, timeout=5.0, retry_delays=(0.05, 0.1))
    yield c
    c.close()


def rate_request(**kw: Any) -> RateRequest:
    args: dict[str, Any] = {
        "shipper": SHIPPER,
        "recipient": RECIPIENT,
        "packages": [{"preset": "small_box", "weight_grams": 800}],
        "currency": "EUR",
        "drop_off_date": date.today() + timedelta(days=1),
    }
    args.update(kw)
    return RateRequest(**args)


def by_service(rates: list[Rate]) -> dict[str, Rate]:
    return {r.service: r for r in rates}


def buy(carrier: HttpCarrier, key: str, service: str = "express", **kw: Any) -> Label:
    rate = by_service(carrier.rates(rate_request(**kw)).rates)[service]
    return carrier.buy_label(rate.rate_id, f"order-{key}", key)


def control(sandbox_url: str, tracking_number: str, **body: Any) -> dict[str, Any]:
    resp = httpx.post(f"{sandbox_url}/v1/sandbox/tracking/{tracking_number}", json=body, timeout=20)
    assert resp.status_code == 200, resp.text
    result: dict[str, Any] = resp.json()
    return result


def verified(carrier: HttpCarrier, deliveries: list[tuple[dict[str, str], bytes]]) -> list[TrackingUpdate]:
    return [carrier.verify_webhook(body, headers) for headers, body in deliveries]


# -- rates ---------------------------------------------------------------------------------------------


def test_rates_have_prices_and_delivery_dates_that_depend_on_service_weight_and_options(carrier: HttpCarrier) -> None:
    quoted = carrier.rates(rate_request())
    rates = by_service(quoted.rates)
    assert set(rates) == {"ground", "express", "overnight"}
    assert quoted.expires_at is not None and quoted.expires_at > datetime.now(UTC)
    assert all(r.carrier == CARRIER_NAME and r.currency == "EUR" for r in rates.values())
    assert all(r.amount == r.amount.quantize(D("0.01")) and r.amount > 0 for r in rates.values())
    assert rates["ground"].amount < rates["express"].amount < rates["overnight"].amount
    ground, express, overnight = (rates[s].estimated_delivery for s in ("ground", "express", "overnight"))
    assert ground and express and overnight
    assert date.today() < overnight < express < ground
    assert (rates["ground"].transit_days, rates["overnight"].transit_days) == (4, 1)

    heavy = by_service(carrier.rates(rate_request(packages=[{"preset": "small_box", "weight_grams": 9_500}])).rates)
    assert all(heavy[s].amount > rates[s].amount for s in rates)
    bulky = carrier.rates(rate_request(packages=[{"length_cm": 60, "width_cm": 50, "height_cm": 40,
                                                  "weight_grams": 800}]))
    assert by_service(bulky.rates)["ground"].amount > rates["ground"].amount  # volumetric weight counts

    signed_for = by_service(carrier.rates(rate_request(signature_confirmation=True)).rates)
    assert signed_for["ground"].amount == rates["ground"].amount + D("3.00")
    insured = by_service(carrier.rates(rate_request(insurance=D("500.00"), declared_value=D("500.00"))).rates)
    assert insured["ground"].amount == rates["ground"].amount + D("5.00")
    dangerous = carrier.rates(rate_request(dangerous_goods=True)).rates
    assert [r.service for r in dangerous] == ["ground"] and dangerous[0].amount > rates["ground"].amount

    abroad = by_service(carrier.rates(rate_request(recipient=ABROAD)).rates)
    assert abroad["ground"].amount > rates["ground"].amount
    assert abroad["ground"].transit_days > rates["ground"].transit_days  # type: ignore[operator]

    yen = by_service(carrier.rates(rate_request(currency="JPY")).rates)
    assert yen["ground"].amount == yen["ground"].amount.to_integral_value() and yen["ground"].amount >= 100


def test_a_bad_rate_request_is_refused_naming_the_field_and_not_retryable(carrier: HttpCarrier) -> None:
    with pytest.raises(CarrierError) as info:
        carrier.rates(rate_request(packages=[{"preset": "crate", "weight_grams": 100}]))
    assert not info.value.retryable and info.value.code == "invalid_request" and "preset" in str(info.value)
    with pytest.raises(CarrierError) as heavy:
        carrier.rates(rate_request(packages=[{"preset": "large_box", "weight_grams": 90_000}]))
    assert heavy.value.code == "package_too_heavy"


def test_a_wrong_api_key_is_refused(sandbox_url: str) -> None:
    with HttpCarrier(sandbox_url, "not-the-key", SECRET) as intruder, pytest.raises(CarrierError) as info:
        intruder.rates(rate_request())
    assert (info.value.code, info.value.retryable) == ("unauthorized", False)


# -- labels --------------------------------------------------------------------------------------------


def test_buying_twice_with_one_idempotency_key_buys_one_label(carrier: HttpCarrier, sandbox_url: str) -> None:
    rate = by_service(carrier.rates(rate_request()).rates)["express"]
    first = carrier.buy_label(rate.rate_id, "order-1001", "shipment-1:label")
    again = carrier.buy_label(rate.rate_id, "order-1001", "shipment-1:label")  # a retry after a lost answer
    assert again == first
    assert (first.carrier, first.service, first.amount, first.currency) == (CARRIER_NAME, "express", rate.amount, "EUR")
    assert first.tracking_number.startswith("SBX") and first.tracking_url
    assert first.tracking_number in httpx.get(first.tracking_url).text
    tracking = carrier.tracking(first.tracking_number)
    assert (tracking["label_id"], tracking["status"]) == (first.label_id, "label_created")
    # the same rate under another key is a second purchase: refused, not a second label
    with pytest.raises(CarrierError) as twice:
        carrier.buy_label(rate.rate_id, "order-1001", "shipment-1:label:other")
    assert (twice.value.code, twice.value.retryable) == ("rate_already_purchased", False)
    # the same key for another request is a bug on the caller's side
    other = by_service(carrier.rates(rate_request()).rates)["ground"]
    with pytest.raises(CarrierError) as reused:
        carrier.buy_label(other.rate_id, "order-1001", "shipment-1:label")
    assert reused.value.code == "idempotency_key_reused"
    with pytest.raises(CarrierError) as unknown:
        carrier.buy_label("rate_nope", "order-1001", "shipment-x:label")
    assert unknown.value.code == "rate_not_found"


def test_the_label_pdf_shows_carrier_service_tracking_number_and_recipient(carrier: HttpCarrier) -> None:
    label = buy(carrier, "pdf-1", "overnight", signature_confirmation=True)
    pdf = carrier.label_pdf(label.label_id)
    assert pdf.startswith(b"%PDF")
    reader = PdfReader(io.BytesIO(pdf))
    text = " ".join(page.extract_text() for page in reader.pages)
    assert label.tracking_number in text
    for shown in (CARRIER_NAME, "overnight", RECIPIENT["name"], "Lyon", SHIPPER["name"], "signature required"):
        assert shown.lower() in text.lower(), shown
    width, height = reader.pages[0].mediabox.width, reader.pages[0].mediabox.height
    assert (round(width), round(height)) == (288, 432)  # 4 x 6 in
    with pytest.raises(CarrierError) as info:
        carrier.label_pdf("lbl_nope")
    assert info.value.code == "label_not_found"


def test_a_label_can_be_voided_until_the_parcel_is_in_transit(carrier: HttpCarrier, sandbox_url: str) -> None:
    early = buy(carrier, "void-1")
    assert carrier.void_label(early.label_id, "void-1:void") == VoidResult(voided=True)
    assert carrier.void_label(early.label_id, "void-1:void") == VoidResult(voided=True)  # replayed
    assert carrier.void_label(early.label_id, "void-1:void:again") == VoidResult(voided=True)  # already void
    assert carrier.tracking(early.tracking_number)["status"] == "voided"

    picked = buy(carrier, "void-2")
    control(sandbox_url, picked.tracking_number, status="picked_up")
    assert carrier.void_label(picked.label_id, "void-2:void").voided  # picked up, not yet moving

    moving = buy(carrier, "void-3")
    control(sandbox_url, moving.tracking_number, status="picked_up")
    control(sandbox_url, moving.tracking_number, status="in_transit")
    assert carrier.void_label(moving.label_id, "void-3:void") == VoidResult(voided=False, reason="label_in_transit")
    assert carrier.tracking(moving.tracking_number)["status"] == "in_transit"


# -- tracking webhooks ---------------------------------------------------------------------------------


def test_tracking_webhooks_are_signed_and_move_through_the_statuses(
    carrier: HttpCarrier, sandbox_url: str, receiver: Receiver
) -> None:
    label = buy(carrier, "track-1")
    for status in ("picked_up", "in_transit", "out_for_delivery", "delivered"):
        result = control(sandbox_url, label.tracking_number, status=status, location="Lyon")
        assert [d["status_code"] for d in result["deliveries"]] == [204]
    updates = verified(carrier, receiver.for_parcel(label.tracking_number))
    assert [u.status for u in updates] == ["shipped", "in_transit", "out_for_delivery", "delivered"]
    assert all(u.label_id == label.label_id and u.location == "Lyon" for u in updates)
    assert len({u.event_id for u in updates}) == 4
    assert carrier.tracking(label.tracking_number)["status"] == "delivered"


def test_duplicates_arrive_under_one_event_id_and_a_late_update_keeps_its_old_time(
    carrier: HttpCarrier, sandbox_url: str, receiver: Receiver
) -> None:
    label = buy(carrier, "track-2")
    control(sandbox_url, label.tracking_number, status="picked_up")
    control(sandbox_url, label.tracking_number, status="in_transit", repeat=3)
    control(sandbox_url, label.tracking_number, status="delivered")
    late_at = datetime.now(UTC) - timedelta(hours=5)
    control(sandbox_url, label.tracking_number, status="out_for_delivery", occurred_at=late_at.isoformat())
    deliveries = receiver.for_parcel(label.tracking_number)
    updates = verified(carrier, deliveries)  # every copy is validly signed
    assert [u.status for u in updates] == ["shipped", "in_transit", "in_transit", "in_transit", "delivered",
                                           "out_for_delivery"]
    copies = updates[1:4]
    assert len({u.event_id for u in copies}) == 1 and len({b for _, b in deliveries[1:4]}) == 1
    late, delivered = updates[5], updates[4]
    assert late.occurred_at < delivered.occurred_at  # arrives last, happened earlier: out of order
    assert abs((late.occurred_at - late_at).total_seconds()) < 1
    assert carrier.tracking(label.tracking_number)["status"] == "delivered"  # the carrier is not fooled either


def test_failed_delivery_and_return_to_sender_both_mean_delivery_failed(
    carrier: HttpCarrier, sandbox_url: str, receiver: Receiver
) -> None:
    label = buy(carrier, "track-3", "ground")
    control(sandbox_url, label.tracking_number, status="picked_up")
    control(sandbox_url, label.tracking_number, status="failure", description="Nobody at home")
    control(sandbox_url, label.tracking_number, status="returned_to_sender")
    failed, returned = verified(carrier, receiver.for_parcel(label.tracking_number))[1:]
    assert (failed.carrier_status, failed.status, failed.description) == ("failure", "delivery_failed",
                                                                          "Nobody at home")
    assert (returned.carrier_status, returned.status) == ("returned_to_sender", "delivery_failed")


def test_a_receiver_failing_with_5xx_gets_the_same_event_again(
    carrier: HttpCarrier, sandbox_url: str, receiver: Receiver
) -> None:
    label = buy(carrier, "track-4")
    receiver.fail_next = 1
    result = control(sandbox_url, label.tracking_number, status="picked_up")
    assert [d["status_code"] for d in result["deliveries"]] == [500, 204]
    updates = verified(carrier, receiver.for_parcel(label.tracking_number))
    assert len(updates) == 2 and updates[0].event_id == updates[1].event_id == result["event"]["id"]


def test_a_tampered_webhook_from_the_sandbox_does_not_verify(
    carrier: HttpCarrier, sandbox_url: str, receiver: Receiver
) -> None:
    label = buy(carrier, "track-5")
    control(sandbox_url, label.tracking_number, status="picked_up")
    headers, body = receiver.for_parcel(label.tracking_number)[0]
    assert SIGNATURE_HEADER in headers
    with pytest.raises(CarrierError) as info:
        carrier.verify_webhook(body.replace(b'"picked_up"', b'"delivered"'), headers)
    assert info.value.code == "bad_signature"


# -- outage --------------------------------------------------------------------------------------------


@pytest.fixture
def outage(sandbox_url: str) -> Iterator[Callable[[bool], None]]:
    def switch(down: bool) -> None:
        assert httpx.post(f"{sandbox_url}/v1/sandbox/outage", json={"down": down}).status_code == 200

    yield switch
    switch(False)


def test_an_outage_is_a_retryable_carrier_error_and_nothing_is_bought(
    carrier: HttpCarrier, outage: Callable[[bool], None]
) -> None:
    rate = by_service(carrier.rates(rate_request()).rates)["ground"]
    outage(True)
    with pytest.raises(CarrierError) as info:
        carrier.rates(rate_request())
    assert (info.value.code, info.value.retryable) == ("carrier_unavailable", True)
    with pytest.raises(CarrierError) as buying:
        carrier.buy_label(rate.rate_id, "order-7", "outage-1:label")
    assert buying.value.retryable
    outage(False)
    label = carrier.buy_label(rate.rate_id, "order-7", "outage-1:label")  # the retry after the outage
    assert label.tracking_number and carrier.buy_label(rate.rate_id, "order-7", "outage-1:label") == label


def test_an_unreachable_carrier_is_retryable() -> None:
    gone = HttpCarrier(f"http://127.0.0.1:{free_port()}", API_KEY, SECRET, timeout=1.0, retry_delays=())
    with gone, pytest.raises(CarrierError) as info:
        gone.rates(rate_request())
    assert (info.value.code, info.value.retryable) == ("carrier_unavailable", True)


def test_a_passing_5xx_is_retried_with_the_same_idempotency_key() -> None:
    keys: list[str] = []

    def flaky(request: httpx.Request) -> httpx.Response:
        keys.append(request.headers["idempotency-key"])
        if len(keys) == 1:
            return httpx.Response(502, json={"error": {"code": "bad_gateway", "message": "upstream"}})
        return httpx.Response(200, json={
            "label_id": "lbl_1", "tracking_number": "SBX1", "tracking_url": None, "carrier": CARRIER_NAME,
            "service": "ground", "amount": "6.00", "currency": "EUR", "label_url": "x", "status": "label_created",
        })

    client = httpx.Client(base_url="http://carrier.invalid", transport=httpx.MockTransport(flaky))
    with HttpCarrier("http://carrier.invalid", API_KEY, SECRET, retry_delays=(0.01,), client=client) as c:
        assert c.buy_label("rate_1", "order-1", "shipment-9:label").amount == D("6.00")
    assert keys == ["shipment-9:label", "shipment-9:label"]


# -- the process and its settings ------------------------------------------------------------------------


def test_the_sandbox_refuses_to_start_in_production_without_its_secrets(tmp_path: Path) -> None:
    proc = start_sandbox({"OMS_ENV": "production", "OMS_SANDBOX_CARRIER_PORT": str(free_port())}, tmp_path / "log")
    assert proc.wait(30) != 0
    assert "OMS_CARRIER_API_KEY" in (tmp_path / "log").read_text()
