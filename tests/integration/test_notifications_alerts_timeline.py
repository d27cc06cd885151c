"""Staff alerts and the order timeline as the notifications service runs: events published through RabbitMQ by
(stand-ins for) orders, payments and fulfillment become alerts in order, readable page by page and by kind
over RPC (what the gateway's SSE stream polls), once each even when an event is delivered twice; and one
order's story across the three services comes back in time order."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from services.fulfillment.contracts import events as fev
from services.gateway.rpc import AsyncRpcClient
from services.orders.contracts import events as oev
from services.orders.contracts.schemas import Actor
from services.payments.contracts import events as pev
from shared.envelope import Envelope, EventModel, source_for
from shared.errors import InvalidRequest
from tests.conftest import Servers
from tests.integration.conftest import publish_events, wait_for
from tests.processes import service_process

pytestmark = pytest.mark.integration

ANA = Actor(type="staff", id="ana", name="Ana")
CARRIER = Actor(type="integration", id="carrier", name="Sandbox carrier")
T0 = datetime(2024, 5, 1, 9, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def service(migrated: dict[str, str], servers: Servers, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    # The service's queues were declared when the run's database was migrated: in a full run they hold every
    # event the earlier modules published (thousands, poison messages included). These tests are about their
    # own events, so the service starts from empty queues.
    import pika

    from services.notifications.service import NotificationsService
    from shared.consumer import subscriptions_of

    conn = pika.BlockingConnection(pika.URLParameters(servers.amqp_url))
    channel = conn.channel()
    for sub in subscriptions_of(NotificationsService):
        channel.queue_purge(sub.queue)
    conn.close()
    with service_process("notifications", {**migrated, "OMS_METRICS_PORT": "0"},
                         tmp_path_factory.mktemp("notifications")) as log:
        yield log


@pytest.fixture(scope="module")
def db(migrated: dict[str, str], servers: Servers) -> Iterator[Any]:
    from shared.db import Database

    database = Database(servers.database_url, "notifications", size=2)
    database.open()
    yield database
    database.close()


def rpc(servers: Servers, method: str, **kwargs: Any) -> Any:
    async def main() -> Any:
        client = AsyncRpcClient(servers.amqp_url, timeout=15.0, reconnect_interval=0.5)
        await client.start(wait=10)
        try:
            return await client.call("notifications", method, **kwargs)
        finally:
            await client.close()

    return asyncio.run(main())


class Story:
    """One order's events as its three services publish them: each source numbers its own per-order sequence."""

    def __init__(self, *, test: bool = False) -> None:
        self.order_id = uuid.uuid4()
        self.number = 100_000 + uuid.uuid4().int % 800_000
        self.test = test
        self.sequences: dict[str, int] = {}

    def _env(self, source: str, event: EventModel) -> Envelope:
        self.sequences[source] = self.sequences.get(source, 0) + 1
        return Envelope(source=source_for(source), type=event.event_type, subject=str(self.order_id),
                        sequence=self.sequences[source], correlationid=str(self.order_id), causationid="test",
                        data=event.model_dump(mode="json"))

    def common(self, at: datetime) -> dict[str, Any]:
        return {"order_id": self.order_id, "number": self.number, "test": self.test, "at": at}

    def placed(self, at: datetime) -> Envelope:
        return self._env("orders", oev.OrderPlaced(
            **self.common(at), version=1, actor=ANA, channel="web", stage="placed",
            customer={"name": "Ida Ledger", "email": "ida@example.com"},
            items=[{"sku": "MUG", "name": "Mug", "quantity": 2, "unit_price": "10.00", "line_total": "20.00"}],
            currency="EUR", totals={"subtotal": "20.00", "shipping": "0", "discount": "0", "tax": "0",
                                    "total": "20.00"}, placed_at=at))

    def move(self, at: datetime, from_stage: str, to_stage: str, reason: str | None = None) -> Envelope:
        return self._env("orders", oev.OrderStageChanged(**self.common(at), version=self.sequences["orders"] + 1,
                                                         actor=ANA, from_stage=from_stage, to_stage=to_stage,
                                                         reason=reason))

    def paid(self, at: datetime) -> Envelope:
        return self._env("payments", pev.PaymentStatusChanged(
            **self.common(at), status="paid", previous_status="unpaid", captured=Decimal("20.00"),
            refunded=Decimal(0), balance_due=Decimal(0), overpaid=Decimal(0), currency="EUR"))

    def received(self, at: datetime) -> Envelope:
        return self._env("payments", pev.PaymentReceived(**self.common(at), payment_id="pay_1", method="card",
                                                         amount=Decimal("20.00"), currency="EUR"))

    def shipment(self, status: str) -> fev.ShipmentSummary:
        return fev.ShipmentSummary(shipment_id=uuid.UUID(int=self.number), number=f"{self.number}-S1",
                                   kind="carrier", shipping_point="local", status=status, carrier="sandbox",
                                   tracking_number="TRK1", lines=[fev.LineQuantity(line_id="1", sku="MUG", quantity=2)])

    def out_of_stock(self, at: datetime) -> Envelope:
        return self._env("fulfillment", fev.OutOfStock(**self.common(at), actor=ANA, lines=[
            fev.ShortLine(line_id="1", sku="MUG", requested=2, available=0)]))

    def shipped(self, at: datetime, from_status: str, to_status: str, reason: str | None = None) -> Envelope:
        return self._env("fulfillment", fev.ShipmentStatusChanged(
            **self.common(at), actor=CARRIER, shipment=self.shipment(to_status), from_status=from_status,
            to_status=to_status, reason=reason))


def alerts_of(servers: Servers, story: Story, after_id: int = 0, **kw: Any) -> list[dict[str, Any]]:
    page = rpc(servers, "alerts_after", after_id=after_id, **kw)
    return [a for a in page["items"] if a["order_id"] == str(story.order_id) and a["kind"] != "message_status"]


def last_alert_id(servers: Servers) -> int:
    last = 0
    while True:
        page = rpc(servers, "alerts_after", after_id=last, limit=1000)["items"]
        if not page:
            return last
        last = page[-1]["position"]


def test_events_through_the_broker_raise_alerts_in_order_once_each(
    servers: Servers, db: Any, service: Path
) -> None:
    story = Story()
    start = last_alert_id(servers)
    placed = story.placed(T0)
    publish_events(servers.amqp_url, [placed, story.move(T0 + timedelta(minutes=1), "placed", "confirmed"),
                                      placed])  # delivered twice: one alert
    # The service's queues were declared at migration: in a full run they hold every order event the earlier
    # test modules published, which it works through first.
    wait_for(lambda: len(alerts_of(servers, story, start)) == 2, timeout=120, what="two alerts")
    publish_events(servers.amqp_url, [story.paid(T0 + timedelta(minutes=2))])
    wait_for(lambda: len(alerts_of(servers, story, start)) == 3, what="the payment alert")
    oos = story.out_of_stock(T0 + timedelta(minutes=3))
    publish_events(servers.amqp_url, [oos, oos])
    wait_for(lambda: len(alerts_of(servers, story, start)) == 4, what="the out-of-stock alert")
    publish_events(servers.amqp_url, [story.move(T0 + timedelta(minutes=4), "confirmed", "on_hold", "out_of_stock")])
    wait_for(lambda: len(alerts_of(servers, story, start)) == 5, what="the hold alert")
    publish_events(servers.amqp_url, [story.shipped(T0 + timedelta(minutes=5), "awaiting_shipment", "in_transit"),
                                      story.shipped(T0 + timedelta(minutes=6), "in_transit", "delivery_failed",
                                                    "address not found")])
    alerts = wait_for(lambda: (a := alerts_of(servers, story, start)) and len(a) == 6 and a, what="the last alert")

    n = story.number
    assert [(a["kind"], a["title"]) for a in alerts] == [
        ("new_order", f"New order #{n}"),
        ("stage_change", f"Order #{n} is Confirmed"),
        ("payment_update", f"Payment update on order #{n}: paid"),
        ("out_of_stock", f"Out of stock for order #{n}"),
        ("order_held", f"Order #{n} is on hold"),
        ("delivery_failed", f"Delivery failed: shipment {n}-S1"),
    ]  # in transit raised nothing; the duplicates nothing more
    assert [a["id"] for a in alerts] == sorted(a["id"] for a in alerts)
    assert all(a["number"] == n and a["test"] is False for a in alerts)
    assert "address not found" in alerts[-1]["text"]

    # Each alert was announced once, through the outbox, and published.
    def announced() -> list[dict[str, Any]] | None:
        with db.transaction() as tx:
            rows = tx.execute(
                "SELECT payload::jsonb -> 'data' AS data, published_at FROM outbox"
                " WHERE event_type = 'notification.alert_raised.v1' AND subject = %s"
                " AND payload::jsonb -> 'data' ->> 'kind' <> 'message_status' ORDER BY id",
                (str(story.order_id),)).fetchall()
        return rows if rows and all(r["published_at"] for r in rows) else None

    rows = wait_for(announced, what="alert_raised published")
    assert [r["data"]["alert_id"] for r in rows] == [a["id"] for a in alerts]
    assert [r["data"]["kind"] for r in rows] == [a["kind"] for a in alerts]


def test_alerts_page_by_id_and_filter_by_kind(servers: Servers, service: Path) -> None:
    start = last_alert_id(servers)
    stories = [Story(test=i == 1) for i in range(3)]
    for i, s in enumerate(stories):
        publish_events(servers.amqp_url, [s.placed(T0 + timedelta(seconds=i)),
                                          s.move(T0 + timedelta(seconds=i, milliseconds=1), "placed", "confirmed")])
    mine = {s.number for s in stories}

    def own(items: list[dict[str, Any]]) -> list[dict[str, Any]]:  # other modules' orders may raise alerts too
        return [a for a in items if a["number"] in mine and a["kind"] != "message_status"]

    wait_for(lambda: len(own(rpc(servers, "alerts_after", after_id=start, limit=1000)["items"])) >= 6,
             timeout=120, what="six alerts")

    # A client reading two at a time from where it stopped sees every alert once, in order.
    seen: list[dict[str, Any]] = []
    last = start
    while page := rpc(servers, "alerts_after", after_id=last, limit=2)["items"]:
        assert len(page) <= 2
        seen.extend(page)
        last = page[-1]["position"]
    everything = rpc(servers, "alerts_after", after_id=start, limit=1000)["items"]
    assert everything[:len(seen)] == seen  # later alerts (other modules' orders) may only come after
    assert len({a["id"] for a in seen}) == len(seen) and len(own(seen)) == 6

    new_orders = own(rpc(servers, "alerts_after", after_id=start, kinds=["new_order"], limit=1000)["items"])
    assert {a["number"] for a in new_orders} == {s.number for s in stories}
    assert {a["kind"] for a in new_orders} == {"new_order"}
    assert [a["test"] for a in new_orders if a["number"] == stories[1].number] == [True]
    both = own(rpc(servers, "alerts_after", after_id=start, kinds="new_order,stage_change", limit=1000)["items"])
    assert len(both) == 6
    assert own(rpc(servers, "alerts_after", after_id=last)["items"]) == []
    with pytest.raises(InvalidRequest) as refused:
        rpc(servers, "alerts_after", after_id=start, kinds=["new_orders"])
    assert refused.value.extra["errors"][0]["field"] == "kinds"


def test_the_timeline_tells_the_story_across_services_in_time_order(
    servers: Servers, db: Any, service: Path
) -> None:
    story = Story()
    t = [T0 + timedelta(minutes=i) for i in range(6)]
    placed = story.placed(t[0])
    confirmed = story.move(t[1], "placed", "confirmed")
    paid, received = story.paid(t[2]), story.received(t[2])  # the same instant: in payments' own order
    approved = story.move(t[3], "confirmed", "approved")
    in_transit = story.shipped(t[4], "awaiting_shipment", "in_transit")
    delivered = story.shipped(t[5], "in_transit", "delivered")
    # Published out of time order across services (each service's own events in its order).
    publish_events(servers.amqp_url, [in_transit, delivered])
    publish_events(servers.amqp_url, [paid, received])
    publish_events(servers.amqp_url, [placed, confirmed, approved, confirmed])

    def told() -> list[dict[str, Any]] | None:
        try:
            found = rpc(servers, "timeline", order_id=str(story.order_id))
        except Exception:  # noqa: BLE001 - NotFound until the first event is in
            return None
        entries = found["entries"]
        events = [e for e in entries if e["source"] != "notifications"]
        messages = [e for e in entries if e["source"] == "notifications"]
        return entries if len(events) == 7 and messages else None

    everything = wait_for(told, what="seven events and a message on the timeline")
    n = story.number
    entries = [e for e in everything if e["source"] != "notifications"]
    assert [(e["source"], e["summary"]) for e in entries] == [
        ("orders", f"Order #{n} placed on web by Ana (staff): 2 items, 20.00 EUR"),
        ("orders", "Stage: placed -> confirmed by Ana (staff)"),
        ("payments", "Payment status: unpaid -> paid, 20.00 EUR captured, 0.00 EUR due"),
        ("payments", "Payment received: 20.00 EUR (card)"),
        ("orders", "Stage: confirmed -> approved by Ana (staff)"),
        ("fulfillment", f"Shipment {n}-S1 in transit"),
        ("fulfillment", f"Shipment {n}-S1 delivered"),
    ]
    # The customer's "Order placed" e-mail is on it too, with each status it took (queued now: after these 2024 events).
    messages = [e for e in everything if e["source"] == "notifications"]
    assert any(e["kind"] == "message.queued" and e["data"]["kind"] == "order_placed"
               and e["summary"].startswith('E-mail "Order placed" to i•••@example.com queued') for e in messages)
    assert [datetime.fromisoformat(e["at"]) for e in everything] == sorted(
        datetime.fromisoformat(e["at"]) for e in everything)
    assert [e["kind"] for e in entries][-1] == "fulfillment.shipment_status_changed.v1"
    assert entries[2]["actor"] == {"type": "system", "id": "payments", "name": "Payments"}
    assert entries[5]["actor"]["name"] == "Sandbox carrier"
    assert [datetime.fromisoformat(e["at"]) for e in entries] == [t[0], t[1], t[2], t[2], t[3], t[4], t[5]]
    with db.transaction() as tx:
        count = tx.execute("SELECT count(*) AS c FROM timeline_entries WHERE order_id = %s",
                           (story.order_id,)).fetchone()
    assert count is not None and count["c"] == 7  # the duplicate left nothing


def test_a_timeline_of_an_unknown_order_is_not_found(servers: Servers, service: Path) -> None:
    from shared.errors import NotFound

    with pytest.raises(NotFound):
        rpc(servers, "timeline", order_id=str(uuid.uuid4()))
    with pytest.raises(InvalidRequest):
        rpc(servers, "timeline", order_id="1001")
    log = service.read_text(errors="replace")
    # No story batch failed or was retried; only the poison messages other modules publish on purpose (not
    # JSON, not a CloudEvent) are dead-lettered, at once and alone.
    trouble = [line for line in log.splitlines() if "oms.notifications.timeline" in line
               and "dead-lettered after 1 attempt(s): PermanentError" not in line]
    assert not trouble, trouble


def test_a_resumed_stream_misses_no_alert_committed_late_and_writers_do_not_wait(servers: Servers,
                                                                                 migrated: dict[str, str]) -> None:
    """A client resumes the stream "after position N". An alert whose transaction commits after a later one was
    read must still come after N: positions are given when the stream is read, in the order alerts become
    visible. Writers do not wait for each other (they used to take one lock until their commit)."""
    from services.notifications import store_timeline
    from services.notifications.usecases import alerts as alert_cases
    from shared.db import Database

    db = Database(servers.database_url, "notifications", size=4)
    db.open()

    mark = uuid.uuid4().hex[:8]  # the running services may raise alerts meanwhile: only ours are looked at

    def row(title: str) -> dict[str, Any]:
        return {"kind": "new_order", "order_id": None, "number": None, "test": True, "title": f"{title} {mark}",
                "text": "", "at": datetime.now(UTC), "event_id": uuid.uuid4()}

    def read_after(after: int) -> list[dict[str, Any]]:
        items = alert_cases.alerts_after(db, after, None, 1000)["items"]
        while len(items) % 1000 == 0 and items:  # the running services' alerts may fill a page
            more = alert_cases.alerts_after(db, items[-1]["position"], None, 1000)["items"]
            if not more:
                break
            items += more
        return items

    def ours(alerts: list[dict[str, Any]]) -> list[str]:
        return [a["title"].removesuffix(f" {mark}") for a in alerts if a["title"].endswith(mark)]

    start = max([0, *[a["position"] for a in read_after(0)]])
    try:
        with db.transaction() as slow:
            slow_id = store_timeline.insert_alert(slow, row("slow writer"))["id"]
            with db.transaction() as fast:  # commits while the slow writer is still open: it did not wait
                fast_id = store_timeline.insert_alert(fast, row("fast writer"))["id"]
            assert slow_id < fast_id
            first_read = read_after(start)
            assert ours(first_read) == ["fast writer"]  # the slow one is not committed: not visible, no position
            resumed_at = max(a["position"] for a in first_read)
        second_read = read_after(resumed_at)  # the client reconnects with Last-Event-ID = what it saw last
        assert ours(second_read) == ["slow writer"]  # committed late, still after the resume point
        assert all(a["position"] > resumed_at for a in second_read)
        assert ours(read_after(start)) == ["fast writer", "slow writer"]  # the stream's order: visibility
    finally:
        db.close()
