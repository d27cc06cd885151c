"""Search reads a narrow copy of the orders (``order_search``, migration 0007, issue #10): whatever writes an order,
the list's search finds it by what it says now, filtered and sorted by its current stage, payment and
fulfillment status. Each write below is one kind the system (or a person with SQL) makes.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from services.orders import store
from services.orders.contracts.schemas import FulfillmentStatus
from services.orders.service import OrdersService
from services.orders.usecases.payment_events import apply_payment_event
from services.orders.usecases.placement import place_order, place_orders
from services.orders.usecases.queries import count_orders, list_orders
from services.payments.contracts import events as pev
from tests.builders import order_cmd
from tests.integration.test_orders_service import (
    ADDRESS,
    ASHA,
    CUSTOMER,
    ids,
    marker,
    move,
    paid_after,
    payment_envelope,
    window,
)

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def svc(orders_db: Any) -> OrdersService:
    service = OrdersService()
    service.db = orders_db
    return service


def found(db: Any, q: str, **query: Any) -> list[int]:
    return ids(list_orders(db, {"q": q, "limit": 200, **query}))


def copy_differs(db: Any, numbers: list[int]) -> int:
    """Rows of these orders where the copy is not what the triggers derive from ``orders`` (either way)."""
    source = ("SELECT number, placed_at, paid_at, stage, channel, test, fulfillment_status, payment_status, "
              "search_key(search_text) FROM orders WHERE number = ANY(%(n)s)")
    copied = ("SELECT number, placed_at, paid_at, stage, channel, test, fulfillment_status, payment_status, key "
              "FROM order_search WHERE number = ANY(%(n)s)")
    with db.transaction() as tx:
        row = tx.execute(f"SELECT (SELECT count(*) FROM ({source} EXCEPT {copied}) a) "
                         f"+ (SELECT count(*) FROM ({copied} EXCEPT {source}) b) AS n", {"n": numbers}).fetchone()
    return int(row["n"])


def test_a_search_finds_an_order_by_what_it_says_after_every_kind_of_write(orders_db: Any, svc: OrdersService) -> None:
    tag = marker()
    one = place_order(orders_db, order_cmd(tag, items=[
        {"sku": f"MUG-NAVY-XS-{tag}", "name": "Mug", "quantity": 1, "unit_price": "9.00"}]), CUSTOMER)
    # Placed one by one and in a batch (the gateway's set-based path): found by SKU, name and e-mail.
    batch = place_orders(orders_db, [{"command": order_cmd(tag, customer={"name": f"Batch {tag}"}), "actor": CUSTOMER}
                                     for _ in range(3)])
    batched = [a["result"]["number"] for a in batch]
    assert found(orders_db, f"mug-navy-xs-{tag}") == [one["number"]]
    assert found(orders_db, f"{tag}@example.com") == [one["number"]]
    assert sorted(found(orders_db, f"batch {tag}")) == sorted(batched)
    assert count_orders(orders_db, {"q": tag})["count"] == 4

    # A new customer: found by the new name, phone and e-mail; no longer by the old ones.
    svc.change_customer(one["id"], {"customer": {"name": f"Zed Quill {tag}", "phone": "+49 30 7654321",
                                                 "email": f"zed.{tag}@example.org"}}, ASHA)
    assert found(orders_db, f"zed quill {tag}") == [one["number"]]
    assert one["number"] in found(orders_db, "+49 30 7654321")
    assert found(orders_db, f"zed.{tag}@example.org") == [one["number"]]
    assert found(orders_db, f"customer {tag}") == []
    assert found(orders_db, f"{tag}@example.com") == []

    # A stage change, an address and a note (no copied column changes): the filters see the current stage.
    svc.set_address(one["id"], {"address": ADDRESS}, ASHA)
    svc.add_note(one["id"], {"text": "fragile"}, ASHA)
    move(orders_db, one["id"], "cancelled", ASHA, reason="customer asked")
    assert found(orders_db, tag, stage=["cancelled"]) == [one["number"]]
    assert found(orders_db, tag, stage=["placed"]) == sorted(batched, reverse=True)

    # The payment projection: the paid order leads the payment-date sort and the payment-status filter.
    paid = batch[1]["result"]
    status = pev.PaymentStatusChanged(order_id=paid["id"], number=paid["number"], at=datetime.now(UTC),
                                      status="paid", captured="29.90", refunded="0", balance_due="0", overpaid="0",
                                      paid_at=datetime.now(UTC), currency="EUR")
    with orders_db.transaction() as tx:
        apply_payment_event(tx, payment_envelope(paid, status, 1))
    assert found(orders_db, tag, sort="paid_at", direction="desc")[0] == paid["number"]
    assert found(orders_db, tag, sort="paid_at", direction="asc")[0] == paid["number"]
    assert found(orders_db, tag, payment_status=["paid"]) == [paid["number"]]

    # The fulfillment projection (the document only; the status column is generated from it).
    shipped = batch[2]["result"]
    with orders_db.transaction() as tx:
        order = store.load(tx, shipped["id"], for_update=True)
        store.set_fulfillment_projection(tx, replace(order, fulfillment_status=FulfillmentStatus.partially_fulfilled))
    assert found(orders_db, tag, fulfillment_status=["partially_fulfilled"]) == [shipped["number"]]

    assert copy_differs(orders_db, [one["number"], *batched]) == 0


def test_writes_made_in_sql_by_hand_reach_the_search_too(orders_db: Any) -> None:
    """An import, a data fix or a test set-up writes ``orders`` directly: the copy follows (triggers)."""
    start = window()
    tag = marker()
    span = {"placed_from": start.isoformat(), "placed_to": (start + timedelta(days=30)).isoformat()}
    a = place_order(orders_db, order_cmd(tag, placed_at=(start + timedelta(days=1)).isoformat()), CUSTOMER)
    b = place_order(orders_db, order_cmd(tag, placed_at=(start + timedelta(days=2)).isoformat()), CUSTOMER)
    paid_after(orders_db, a["id"], timedelta(days=20))
    paid_after(orders_db, b["id"], timedelta(days=1))
    assert found(orders_db, tag, sort="paid_at", direction="desc", **span) == [a["number"], b["number"]]
    with orders_db.transaction() as tx:
        tx.execute("UPDATE orders SET search_text = search_text || ' handfixed' || %s WHERE id = %s", (tag, b["id"]))
    assert found(orders_db, f"handfixed{tag}") == [b["number"]]
    with orders_db.transaction() as tx:
        tx.execute("DELETE FROM orders WHERE id = %s", (a["id"],))
    assert found(orders_db, tag, **span) == [b["number"]]
    assert copy_differs(orders_db, [a["number"], b["number"]]) == 0


@pytest.mark.parametrize("query", [
    {"stage": ["placed", "cancelled"]},
    {"channel": ["web", "pos"], "sort": "paid_at", "direction": "desc"},
    {"fulfillment_status": ["unfulfilled"], "sort": "paid_at", "direction": "asc"},
    {"sort": "paid_at", "direction": "desc", "placed_to": "+20"},
    {"stage": ["placed"], "sort": "paid_at", "direction": "asc", "placed_from": "+0", "placed_to": "+25"},
    {"sort": "placed_at", "direction": "asc"},
])
def test_a_common_and_a_rare_term_list_the_same_orders(orders_db: Any, query: dict[str, Any],
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """A term Postgres expects to match many orders is found by walking an index and checking rows, a rare one
    through the trigram index (``store._COMMON``): the list, page by page, is the same either way."""
    start = window()
    tag = marker()
    placed = []
    for day in range(0, 28, 2):
        o = place_order(orders_db, order_cmd(tag, channel=("web", "pos", "whatsapp")[day % 3],
                                             placed_at=(start + timedelta(days=day)).isoformat()), CUSTOMER)
        placed.append(o)
        if day % 4 == 0:
            paid_after(orders_db, o["id"], timedelta(hours=30 - day))
    move(orders_db, placed[3]["id"], "cancelled", ASHA, reason="test")
    dates = {k: (start + timedelta(days=int(v[1:]))).isoformat() for k, v in query.items() if k.startswith("placed")}
    span = {"placed_from": start.isoformat(), "placed_to": (start + timedelta(days=30)).isoformat()}
    full = {**span, **query, **dates, "q": f"sku-{tag}"}

    def pages(limit: int) -> list[list[int]]:
        out, cursor = [], None
        while True:
            page = list_orders(orders_db, {**full, "limit": limit, **({"cursor": cursor} if cursor else {})})
            out.append(ids(page))
            if not (cursor := page["next_cursor"]):
                return out

    monkeypatch.setattr(store, "_COMMON", 10**12)
    rare = [pages(limit) for limit in (1, 3, 50)]
    monkeypatch.setattr(store, "_COMMON", 0)
    common = [pages(limit) for limit in (1, 3, 50)]
    assert common == rare
    assert rare[2][0], "the query finds orders"
