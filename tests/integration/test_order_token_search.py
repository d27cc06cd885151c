"""A whole SKU or e-mail address is looked up in ``order_token`` (migration 0008, issue #10) instead of the
trigram index: the user sees the same orders, in the same pages, as the "contains" search gives; a term that is
part of a longer token (an SKU inside a longer SKU, a name part of an address) still finds every order holding
it; and the token table follows every kind of write.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from services.orders import store
from services.orders.service import OrdersService
from services.orders.usecases.placement import place_order, place_orders
from services.orders.usecases.queries import count_orders, list_orders
from tests.builders import order_cmd
from tests.integration.test_orders_service import ASHA, CUSTOMER, ids, marker, move, paid_after, window

pytestmark = pytest.mark.integration

SORTS = [(sort, direction) for sort in ("placed_at", "paid_at", "fulfillment_status") for direction in ("desc", "asc")]


@pytest.fixture(scope="module")
def svc(orders_db: Any) -> OrdersService:
    service = OrdersService()
    service.db = orders_db
    return service


def pages(db: Any, query: dict[str, Any], limit: int) -> list[list[int]]:
    out, cursor = [], None
    while True:
        page = list_orders(db, {**query, "limit": limit, **({"cursor": cursor} if cursor else {})})
        out.append(ids(page))
        if not (cursor := page["next_cursor"]):
            return out


def found(db: Any, q: str, **query: Any) -> list[int]:
    return ids(list_orders(db, {"q": q, "limit": 200, **query}))


def tokens_differ(db: Any, numbers: list[int]) -> int:
    """Rows of these orders where ``order_token`` is not what its triggers derive from ``orders`` (either way)."""
    source = ("SELECT w, number, placed_at, paid_at FROM orders, search_tokens(search_text) w "
              "WHERE number = ANY(%(n)s)")
    copied = "SELECT token, number, placed_at, paid_at FROM order_token WHERE number = ANY(%(n)s)"
    with db.transaction() as tx:
        row = tx.execute(f"SELECT (SELECT count(*) FROM ({source} EXCEPT ALL {copied}) a) "
                         f"+ (SELECT count(*) FROM ({copied} EXCEPT ALL {source}) b) AS n", {"n": numbers}).fetchone()
    return int(row["n"])


@pytest.fixture(scope="module")
def shop(orders_db: Any) -> dict[str, Any]:
    """Orders over a month sharing an SKU (some paid, one cancelled, across channels), customers with three
    orders each, and an SKU (``tee-x``) that two other orders' longer SKU (``tee-x-xl``) contains."""
    start = window()
    tag = marker()
    sku, tee = f"mug-{tag}-s", f"tee-{tag}"
    placed = []
    for day in range(0, 28, 2):
        items = [{"sku": sku.upper(), "name": "Mug", "quantity": 1, "unit_price": "9.00"}]
        if day == 10:
            items.append({"sku": tee, "name": "Tee", "quantity": 1, "unit_price": "11.00"})
        cmd = order_cmd(f"{tag}{'abcde'[day % 5]}", items=items, channel=("web", "pos", "whatsapp")[day % 3],
                        placed_at=(start + timedelta(days=day)).isoformat())
        placed.append(place_order(orders_db, cmd, CUSTOMER))
        if day % 4 == 0:
            paid_after(orders_db, placed[-1]["id"], timedelta(hours=30 - day))
    move(orders_db, placed[3]["id"], "cancelled", ASHA, reason="test")
    # Placed in one batch too (the set-based path and its statement-level trigger).
    batch = place_orders(orders_db, [{"command": order_cmd(f"{tag}z", items=[
        {"sku": f"{tee}-xl", "name": "Big tee", "quantity": 1, "unit_price": "11.00"}],
        placed_at=(start + timedelta(days=29)).isoformat()), "actor": CUSTOMER} for _ in range(2)])
    return {"tag": tag, "sku": sku, "tee": tee, "start": start, "numbers": [o["number"] for o in placed],
            "batched": [a["result"]["number"] for a in batch]}


@pytest.mark.parametrize(("term", "routed"), [
    ("{sku}", True),                 # a whole SKU, typed in any case
    ("{tag}c@example.com", True),    # a whole e-mail address (three orders)
    ("{tee}-xl", True),              # the longer SKU
    ("{tee}", False),                # an SKU inside the longer one: both
    ("ug-{tag}", False),             # part of an SKU
    ("{tag}c@example", False),       # part of an address
])
@pytest.mark.parametrize("query", [
    {},
    {"stage": ["placed"]},
    {"channel": ["web", "pos"], "test": False},
    {"payment_status": ["unpaid"]},
    {"placed_from": "+4", "placed_to": "+21"},
])
def test_the_token_route_lists_the_same_pages_as_the_contains_search(
        orders_db: Any, shop: dict[str, Any], term: str, routed: bool, query: dict[str, Any],
        monkeypatch: pytest.MonkeyPatch) -> None:
    q = term.format(**shop)
    dates = {k: (shop["start"] + timedelta(days=int(v[1:]))).isoformat() for k, v in query.items()
             if k.startswith("placed")}
    routes: list[str] = []
    whole_token = store._whole_token

    def spy(tx: Any, q: str) -> str | None:
        token = whole_token(tx, q)
        routes.append("token" if token else "contains")
        return token

    monkeypatch.setattr(store, "_whole_token", spy)
    by_token = {(s, d, limit): pages(orders_db, {**query, **dates, "q": q.upper(), "sort": s, "direction": d}, limit)
                for s, d in SORTS for limit in (1, 3, 50)}
    by_token_count = count_orders(orders_db, {**query, **dates, "q": q})
    assert set(routes) == {"token" if routed else "contains"}
    monkeypatch.setattr(store, "_whole_token", lambda tx, q: None)
    for (s, d, limit), got in by_token.items():
        assert got == pages(orders_db, {**query, **dates, "q": q, "sort": s, "direction": d}, limit), (s, d, limit)
    assert by_token_count == count_orders(orders_db, {**query, **dates, "q": q})
    if not query:
        assert by_token[("placed_at", "desc", 50)][0], "the term finds orders"


def test_an_sku_inside_a_longer_sku_finds_the_longer_ones_too(orders_db: Any, shop: dict[str, Any]) -> None:
    """``tee-x`` is contained in ``tee-x-xl``: a search for it lists the orders of both (the vocabulary sends it
    down the "contains" path); the longer one lists its own orders (the token path)."""
    tee = shop["tee"]
    with orders_db.transaction() as tx:
        assert store._whole_token(tx, tee) is None
        assert store._whole_token(tx, f"{tee}-xl") == f"{tee}-xl"
        assert store._whole_token(tx, shop["sku"]) == shop["sku"]
    assert sorted(found(orders_db, tee)) == sorted([shop["numbers"][5], *shop["batched"]])
    assert sorted(found(orders_db, f"{tee}-xl")) == sorted(shop["batched"])
    assert sorted(found(orders_db, shop["sku"])) == sorted(shop["numbers"])


def test_the_token_table_follows_every_kind_of_write(orders_db: Any, svc: OrdersService) -> None:
    tag = marker()
    a = place_order(orders_db, order_cmd(tag, items=[
        {"sku": f"CAP-{tag}", "name": "Cap", "quantity": 1, "unit_price": "9.00"}]), CUSTOMER)
    b = place_order(orders_db, order_cmd(tag, items=[
        {"sku": f"CAP-{tag}", "name": "Cap", "quantity": 1, "unit_price": "9.00"}]), CUSTOMER)
    assert found(orders_db, f"cap-{tag}") == [b["number"], a["number"]]

    # A new e-mail address: found by it, no longer by the old one (the old stays in the vocabulary: harmless).
    svc.change_customer(a["id"], {"customer": {"name": f"Zed {tag}", "email": f"zed.{tag}@example.org"}}, ASHA)
    assert found(orders_db, f"zed.{tag}@example.org") == [a["number"]]
    assert found(orders_db, f"{tag}@example.com") == [b["number"]]

    # A payment moves the order in the payment-date sort the token path walks.
    paid_after(orders_db, a["id"], timedelta(minutes=5))
    assert found(orders_db, f"cap-{tag}", sort="paid_at", direction="desc") == [a["number"], b["number"]]
    assert found(orders_db, f"cap-{tag}", sort="paid_at", direction="asc") == [a["number"], b["number"]]

    # Hand-made SQL: a new SKU in the search text, then a deleted order.
    with orders_db.transaction() as tx:
        tx.execute("UPDATE orders SET search_text = search_text || ' hat-' || %s WHERE id = %s", (tag, b["id"]))
    assert found(orders_db, f"hat-{tag}") == [b["number"]]
    assert tokens_differ(orders_db, [a["number"], b["number"]]) == 0
    with orders_db.transaction() as tx:
        tx.execute("DELETE FROM orders WHERE id = %s", (b["id"],))
    assert found(orders_db, f"cap-{tag}") == [a["number"]]
    assert found(orders_db, f"hat-{tag}") == []
    assert tokens_differ(orders_db, [a["number"], b["number"]]) == 0
