"""How many times the card path's use cases wait for Postgres: pinned, so a new round trip fails a test.

A card order (placed → paid → confirmed) goes through seven use cases in orders and payments. Each round trip
to Postgres costs both sides CPU (the service's driver and event loop, a backend's parse/plan/execute) and
holds the order's row lock longer, so their number is the service's cost per order more than anything
else it does. The test runs the whole path in-process (the in-memory provider, no broker: each service's
outbox rows are handed to the other's use case as the relay would) and counts, per use case:

* **round trips**: statements sent outside a pipeline, the ``BEGIN`` psycopg sends before a transaction's
  first statement (a round trip of its own), plus each pipeline sync (``Pipeline.sync``, leaving
  ``conn.pipeline()``, a fetch that must flush), plus commit/rollback;
* **statements**: every ``execute``, pipelined or not.

If a change adds a round trip, make it earn its place (or fold it into a statement that runs anyway), then
update the numbers here.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import psycopg
import pytest

from services.orders.usecases.changes import set_customer_note
from services.orders.usecases.payment_events import handle_payment_events
from services.orders.usecases.placement import place_order
from services.payments import usecases as payments
from shared.envelope import Envelope
from tests.conftest import Servers
from tests.fakes import InMemoryPaymentProvider

pytestmark = pytest.mark.integration

CUSTOMER = {"type": "customer", "id": "cust-web", "name": "Web shop customer"}
ADDRESS = {"line1": "12 MG Road", "city": "Bengaluru", "postal_code": "560001", "country": "IN"}


@dataclass
class Count:
    round_trips: int = 0
    statements: int = 0


@contextmanager
def counting() -> Iterator[Count]:
    """Count round trips and statements of every psycopg connection while the block runs."""
    count = Count()
    cursor_execute = psycopg.Cursor.execute
    fetch_pipeline = psycopg.Cursor._fetch_pipeline
    sync = psycopg.Pipeline.sync
    pipeline_exit = psycopg.Pipeline.__exit__
    commit = psycopg.Connection.commit
    start_query = psycopg.Connection._start_query
    rollback = psycopg.Connection.rollback

    def execute(self: psycopg.Cursor[Any], *args: Any, **kwargs: Any) -> Any:
        count.statements += 1
        if not self._conn._pipeline:
            count.round_trips += 1
        return cursor_execute(self, *args, **kwargs)

    def fetch(self: psycopg.Cursor[Any]) -> None:
        if self._execmany_returning is not False and not self.pgresult and self._conn._pipeline:
            count.round_trips += 1
        fetch_pipeline(self)

    def synced(self: psycopg.Pipeline) -> None:
        count.round_trips += 1
        sync(self)

    def exited(self: psycopg.Pipeline, *args: Any) -> None:
        if self.level == 1:  # the outermost block: it syncs
            count.round_trips += 1
        pipeline_exit(self, *args)

    def in_transaction(conn: psycopg.Connection[Any]) -> int:
        """1 if COMMIT/ROLLBACK goes to the server (psycopg sends nothing outside a transaction)."""
        return int(conn.pgconn.transaction_status != psycopg.pq.TransactionStatus.IDLE)

    def started(self: psycopg.Connection[Any]) -> Any:
        if not self.autocommit and self.pgconn.transaction_status == psycopg.pq.TransactionStatus.IDLE:
            count.round_trips += 1  # BEGIN
        return start_query(self)

    def committed(self: psycopg.Connection[Any]) -> None:
        count.round_trips += in_transaction(self)
        commit(self)

    def rolled_back(self: psycopg.Connection[Any]) -> None:
        count.round_trips += in_transaction(self)
        rollback(self)

    patches = {
        (psycopg.Cursor, "execute"): execute,
        (psycopg.Cursor, "_fetch_pipeline"): fetch,
        (psycopg.Pipeline, "sync"): synced,
        (psycopg.Pipeline, "__exit__"): exited,
        (psycopg.Connection, "commit"): committed,
        (psycopg.Connection, "_start_query"): started,
        (psycopg.Connection, "rollback"): rolled_back,
    }
    originals = {key: key[0].__dict__.get(key[1]) for key in patches}
    try:
        for (cls, name), fn in patches.items():
            setattr(cls, name, fn)
        yield count
    finally:
        for (cls, name), own in originals.items():
            if own is None:
                delattr(cls, name)  # it was inherited: uncover the base class's again
            else:
                setattr(cls, name, own)


@pytest.fixture(scope="module")
def quiet_database(migrated: dict[str, str], servers: Servers) -> Iterator[str]:
    """A database of this module's own. The tests hand orders' events to payments themselves; in the shared
    test database a relay and a payments service of another module may still run, take the same
    ``order.placed`` first, and make the test's own call a duplicate (seen once in a full run)."""
    from shared.config import get_settings
    from shared.db import database_name, with_database
    from shared.migrate import migrate

    url = with_database(servers.database_url, f"{database_name(servers.database_url)}_round_trips")
    with psycopg.connect(with_database(url, "postgres"), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{database_name(url)}"')
    migrate(get_settings().model_copy(update={"database_url": url}), declare_amqp=False)
    yield url
    with psycopg.connect(with_database(url, "postgres"), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{database_name(url)}" WITH (FORCE)')


def _pool(url: str, schema: str, size: int) -> Iterator[Any]:
    from shared.db import Database

    db = Database(url, schema, size=size)
    db.open()
    yield db
    db.close()


@pytest.fixture(scope="module")
def orders_db(quiet_database: str) -> Iterator[Any]:
    yield from _pool(quiet_database, "orders", 4)


@pytest.fixture(scope="module")
def payments_db(quiet_database: str) -> Iterator[Any]:
    yield from _pool(quiet_database, "payments", 2)


def outbox_events(db: Any, order_id: str, event_type: str) -> list[Envelope]:
    with db.transaction() as tx:
        rows = tx.execute(
            "SELECT payload FROM outbox WHERE subject = %s AND event_type = %s ORDER BY id", (order_id, event_type)
        ).fetchall()
    return [Envelope.model_validate_json(r["payload"]) for r in rows]


def card_order_path(orders_db: Any, payments_db: Any) -> dict[str, Count]:
    """Run one card order from placement to confirmation; the counts of each use case on the way."""
    provider = InMemoryPaymentProvider()
    counts: dict[str, Count] = {}
    cmd = {
        "channel": "web",
        "customer": {"name": "Round Trip", "email": "trip@example.com"},
        "items": [{"sku": "MUG", "name": "Mug", "quantity": 2, "unit_price": "12.50"}],
        "currency": "EUR",
        "shipping": "4.90",
        "shipping_address": ADDRESS,
        "payment_method": "card",
    }
    oid = place_order(orders_db, cmd, CUSTOMER, None)["id"]
    (placed,) = outbox_events(orders_db, oid, "order.placed.v1")
    with counting() as counts["payments: order.placed batch"]:
        payments.handle_order_events(payments_db, provider, [placed])
    with counting() as counts["orders: set_customer_note"]:
        set_customer_note(orders_db, oid, {"skip": True}, CUSTOMER)
    with counting() as counts["payments: create_payment_link"]:
        link = payments.create_payment_link(payments_db, provider, oid, CUSTOMER)
    with counting() as counts["payments: create_payment_link again (same link)"]:
        assert payments.create_payment_link(payments_db, provider, oid, CUSTOMER) == link
    provider.pay(link["link_id"])
    (webhook,) = provider.take_webhooks()
    with counting() as counts["payments: handle_webhook (payment.succeeded)"]:
        assert payments.handle_webhook(payments_db, provider, *webhook)["duplicate"] is False
    (status,) = outbox_events(payments_db, oid, "payment.status_changed.v1")
    with counting() as counts["orders: payment.status_changed batch (auto-confirm)"]:
        assert [o.value for o in handle_payment_events(orders_db, [status])] == ["applied"]
    confirmed = outbox_events(orders_db, oid, "order.stage_changed.v1")
    assert [e.data["to_stage"] for e in confirmed] == ["confirmed"]
    with counting() as counts["payments: order.stage_changed batch"]:
        payments.handle_order_events(payments_db, provider, confirmed)
    return counts


# Round trips and statements per use case, as measured: lower them freely, raise them only with a reason.
EXPECTED = {  # before this test (2026-12-01): 5/3, 7/5, 8/6, 6/4, 14/12, 8/6, 9/7
    "payments: order.placed batch": Count(round_trips=5, statements=3),
    "orders: set_customer_note": Count(round_trips=6, statements=4),
    "payments: create_payment_link": Count(round_trips=7, statements=5),
    "payments: create_payment_link again (same link)": Count(round_trips=1, statements=1),
    "payments: handle_webhook (payment.succeeded)": Count(round_trips=7, statements=5),
    "orders: payment.status_changed batch (auto-confirm)": Count(round_trips=7, statements=5),
    "payments: order.stage_changed batch": Count(round_trips=7, statements=5),
}


def test_the_card_path_makes_the_round_trips_it_needs_and_no_more(orders_db: Any, payments_db: Any) -> None:
    counts = card_order_path(orders_db, payments_db)
    report = "\n".join(f"{name}: {c.round_trips} round trips, {c.statements} statements" for name, c in counts.items())
    print(report)
    assert counts == EXPECTED, report


def test_the_provider_makes_a_link_while_nothing_holds_the_order_and_a_retry_gets_the_same_link(
    orders_db: Any, payments_db: Any
) -> None:
    """Another change to the order's payments (a webhook, say) need not wait for the provider's HTTP call."""
    from tests.builders import OrderStream
    from tests.builders import place_order as order_command

    stream = OrderStream.place(order_command())
    provider = InMemoryPaymentProvider()
    payments.handle_order_events(payments_db, provider, stream.envelopes)
    locked_meanwhile: list[bool] = []
    create = provider.create_payment_link

    def create_while_checking(*args: Any, **kwargs: Any) -> Any:
        with payments_db.transaction() as other:  # a second connection takes the order's row lock at once
            other.execute("SELECT 1 FROM payment_orders WHERE order_id = %s FOR UPDATE NOWAIT", (stream.order_id,))
            locked_meanwhile.append(True)
        return create(*args, **kwargs)

    provider.create_payment_link = create_while_checking  # type: ignore[method-assign]
    link = payments.create_payment_link(payments_db, provider, stream.order_id, CUSTOMER)
    assert locked_meanwhile == [True]
    with payments_db.transaction() as tx:  # the link is lost on the way back: the client asks again
        tx.execute("DELETE FROM payments WHERE order_id = %s", (stream.order_id,))
    again = payments.create_payment_link(payments_db, provider, stream.order_id, CUSTOMER)
    assert again["link_id"] == link["link_id"] and again["url"] == link["url"]


def test_a_link_asked_for_just_before_payments_see_the_order_placed_is_answered_without_a_retry(
    payments_db: Any,
) -> None:
    """The customer is faster than ``order.placed``: payments wait a moment instead of answering 404."""
    import threading
    import time

    from shared.errors import NotFound
    from tests.builders import OrderStream
    from tests.builders import place_order as order_command

    stream = OrderStream.place(order_command())
    provider = InMemoryPaymentProvider()
    answers: list[Any] = []
    asking = threading.Thread(
        target=lambda: answers.append(payments.create_payment_link(payments_db, provider, stream.order_id, CUSTOMER))
    )
    asking.start()
    time.sleep(0.01)
    payments.handle_order_events(payments_db, provider, stream.envelopes)
    asking.join(5)
    assert answers and answers[0]["status"] == "open"
    with pytest.raises(NotFound):  # an order nobody placed is still not found, after the short wait
        payments.create_payment_link(payments_db, provider, str(uuid.uuid4()), CUSTOMER)


def test_loading_under_the_lock_sees_what_the_transaction_it_waited_for_wrote(payments_db: Any) -> None:
    """A statement that waits for a row lock keeps its first snapshot for the other tables: the lock is taken
    by a statement of its own, so the ledger and attempts read after it include the waited-for commit."""
    import threading
    import time

    from services.payments import store
    from tests.builders import OrderStream
    from tests.builders import place_order as order_command

    stream = OrderStream.place(order_command())
    payments.handle_order_events(payments_db, InMemoryPaymentProvider(), stream.envelopes)
    seen: list[Any] = []

    def load_when_free() -> None:
        with payments_db.transaction() as tx:
            seen.append(store.find(tx, stream.order_id, for_update=True))

    with payments_db.transaction() as first:
        first.execute("SELECT 1 FROM payment_orders WHERE order_id = %s FOR UPDATE", (stream.order_id,))
        waiting = threading.Thread(target=load_when_free)
        waiting.start()
        time.sleep(0.2)  # the second transaction's statement has started, and waits for the lock
        first.execute(
            "INSERT INTO payments (id, order_id, method, amount, status) VALUES ('card:while-waiting', %s, 'card', 1,"
            " 'open')",
            (stream.order_id,),
        )
    waiting.join(5)
    assert [a.id for a in seen[0].attempts] == ["card:while-waiting"]
