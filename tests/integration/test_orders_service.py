"""The orders service against a real Postgres, as a merchant's team experiences it: concurrent edits, refused
requests that change nothing, the audit trail and its events, automatic moves, and the order list.

Most tests call the use cases in-process (``services/orders/usecases/``: a ``Database`` and plain dicts,
exactly what the Nameko entrypoints pass on); the abandonment timer is also run in the real service
process. The session database is shared, so every test works inside its own ``placed_at`` window and with
its own letters-only marker in names, e-mails and SKUs, and filters by them.
"""

from __future__ import annotations

import base64
import itertools
import json
import threading
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from services.orders import domain
from services.orders.contracts.schemas import Transition
from services.orders.service import OrdersService
from services.orders.usecases.abandonment import abandon_stale_orders
from services.orders.usecases.changes import change
from services.orders.usecases.payment_events import PAYMENT_EVENT_HANDLERS, apply_payment_event
from services.orders.usecases.placement import place_order
from services.orders.usecases.queries import get_order, list_orders
from services.payments.contracts import events as pev
from shared.envelope import Envelope
from shared.errors import IllegalTransition, InvalidRequest, NotFound, VersionConflict
from tests.builders import order_cmd
from tests.integration.conftest import wait_for
from tests.processes import service_process

pytestmark = pytest.mark.integration

ASHA = {"type": "staff", "id": "staff-asha", "name": "Asha"}
BEN = {"type": "staff", "id": "staff-ben", "name": "Ben"}
CUSTOMER = {"type": "customer", "id": "cust-web", "name": "Web shop customer"}
ADDRESS = {"line1": "12 MG Road", "city": "Bengaluru", "postal_code": "560001", "country": "IN"}

_windows = itertools.count()


def marker() -> str:
    """A letters-only tag (no digits, so it never matches a number or phone search by accident)."""
    return "".join(chr(ord("a") + int(c, 16)) for c in uuid.uuid4().hex[:10])


def window() -> datetime:
    """The start of a 30-day stretch of ``placed_at`` no other test uses."""
    return datetime(2001, 1, 1, tzinfo=UTC) + timedelta(days=30 * next(_windows))


@pytest.fixture(scope="module")
def svc(orders_db: Any) -> OrdersService:
    """The Nameko service class with its database dependency filled in: the RPC methods, called directly."""
    service = OrdersService()
    service.db = orders_db
    return service


def move(db: Any, ref: str, to: str, actor: dict[str, Any], expected_version: int | None = None,
         reason: str | None = None) -> dict[str, Any]:
    """What ``OrdersService.transition`` does: a ``Transition`` applied under the row lock."""
    cmd = Transition(to=to, reason=reason, expected_version=expected_version)
    return change(
        db, ref, actor, lambda o, a, now: domain.apply_transition(o, cmd, a, now).as_outcome(), "transition"
    )


def race(db: Any, oid: str, moves: list[tuple[dict[str, Any], str, int]]) -> dict[str, Any]:
    """Each staff member sends a move at the same moment (threads released together); actor id -> answer."""
    barrier = threading.Barrier(len(moves))
    results: dict[str, Any] = {}

    def act(actor: dict[str, Any], to: str, expected_version: int) -> None:
        barrier.wait()
        try:
            results[actor["id"]] = move(db, oid, to, actor, expected_version=expected_version)
        except Exception as exc:  # noqa: BLE001 - the caller's assertions say what it was
            results[actor["id"]] = exc

    threads = [threading.Thread(target=act, args=m) for m in moves]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    return results


def row(db: Any, order_id: str) -> dict[str, Any]:
    with db.transaction() as tx:
        r = tx.execute(
            "SELECT version, stage, paid_at, doc::text AS doc FROM orders WHERE id = %s", (order_id,)
        ).fetchone()
    assert r is not None
    return dict(r)


def history(db: Any, order_id: str) -> list[dict[str, Any]]:
    with db.transaction() as tx:
        return [
            dict(r)
            for r in tx.execute(
                "SELECT seq, action, from_stage, to_stage, actor, reason, data FROM order_history "
                "WHERE order_id = %s ORDER BY seq",
                (order_id,),
            ).fetchall()
        ]


def outbox(db: Any, order_id: str) -> list[dict[str, Any]]:
    with db.transaction() as tx:
        rows = tx.execute(
            "SELECT event_type, sequence, correlation_id, payload FROM outbox WHERE subject = %s ORDER BY id",
            (order_id,),
        ).fetchall()
    return [{**r, "payload": json.loads(r["payload"])} for r in rows]


def snapshot(db: Any, order_id: str) -> tuple[Any, ...]:
    """Everything a refused request must leave as it was: the row, the history and the outbox."""
    return row(db, order_id), history(db, order_id), outbox(db, order_id)


# ------------------------------------------------------------------------------------------ 1. two staff


@pytest.mark.parametrize(("first", "second"), [("confirmed", "on_hold"), ("cancelled", "confirmed")])
def test_two_staff_acting_at_once_one_wins_and_the_other_is_told_the_order_changed(
    orders_db: Any, first: str, second: str
) -> None:
    for _round in range(5):
        placed = place_order(orders_db, order_cmd(marker()), CUSTOMER, None)
        oid = placed["id"]
        # Both load the order page: both see version N.
        seen = [get_order(orders_db, oid)["version"], get_order(orders_db, placed["display_number"])["version"]]
        assert seen[0] == seen[1] == placed["version"]
        n = seen[0]

        results = race(orders_db, oid, [(ASHA, first, n), (BEN, second, n)])

        wins = {k: v for k, v in results.items() if isinstance(v, dict)}
        losses = {k: v for k, v in results.items() if not isinstance(v, dict)}
        assert len(wins) == 1 and len(losses) == 1, results
        (winner, won), (loser, lost) = next(iter(wins.items())), next(iter(losses.items()))
        won_stage = first if winner == ASHA["id"] else second
        assert isinstance(lost, VersionConflict), repr(lost)
        assert lost.extra["order_id"] == oid
        assert lost.extra["number"] == placed["number"]
        assert lost.extra["expected_version"] == n and lost.extra["current_version"] == n + 1
        assert placed["display_number"] in lost.detail and "reload" in lost.detail

        assert won["stage"] == won_stage and won["version"] == n + 1
        assert row(orders_db, oid)["stage"] == won_stage and row(orders_db, oid)["version"] == n + 1
        moves = [h for h in history(orders_db, oid) if h["action"] == "stage_changed"]
        assert len(moves) == 1
        assert moves[0]["actor"]["id"] == winner and moves[0]["to_stage"] == won_stage
        stage_events = [e for e in outbox(orders_db, oid) if e["event_type"] == "order.stage_changed.v1"]
        assert len(stage_events) == 1
        assert stage_events[0]["payload"]["data"]["to_stage"] == won_stage
        assert stage_events[0]["payload"]["data"]["actor"]["id"] == winner
        assert loser != winner


# ------------------------------------------------------------------------------ 2. wrong requests


def test_an_illegal_move_is_refused_with_the_stage_and_the_allowed_moves_and_changes_nothing(orders_db: Any) -> None:
    placed = place_order(orders_db, order_cmd(marker()), CUSTOMER, None)
    oid = placed["id"]
    before = snapshot(orders_db, oid)

    with pytest.raises(IllegalTransition) as err:
        move(orders_db, oid, "shipped", ASHA, reason="courier came early")
    assert err.value.extra["order_id"] == oid
    assert err.value.extra["stage"] == "placed"
    assert err.value.extra["requested"] == "shipped"
    assert err.value.extra["allowed"] == ["confirmed", "on_hold", "rejected", "cancelled"]
    assert f"Order {placed['display_number']} is placed" in err.value.detail

    # A person cannot abandon an order by hand, even though the stage machine has placed -> abandoned.
    with pytest.raises(IllegalTransition) as err:
        move(orders_db, placed["display_number"], "abandoned", ASHA)
    assert "abandonment timer" in err.value.detail
    assert "abandoned" not in err.value.extra["allowed"]

    # A stale copy is refused before anything is written.
    with pytest.raises(VersionConflict):
        move(orders_db, oid, "confirmed", ASHA, expected_version=placed["version"] + 5)

    assert snapshot(orders_db, oid) == before

    # The last stage of the story: archived is final and says so.
    move(orders_db, oid, "cancelled", ASHA)
    move(orders_db, oid, "archived", ASHA)
    archived = snapshot(orders_db, oid)
    with pytest.raises(IllegalTransition) as err:
        move(orders_db, oid, "placed", ASHA)
    assert err.value.extra["stage"] == "archived" and err.value.extra["allowed"] == []
    assert "archived is final" in err.value.detail
    assert snapshot(orders_db, oid) == archived


def test_an_unknown_order_is_not_found(orders_db: Any, svc: OrdersService) -> None:
    for ref in (str(uuid.uuid4()), "#999999999", "999999998", "not-an-order"):
        with pytest.raises(NotFound):
            get_order(orders_db, ref)
        with pytest.raises(NotFound):
            move(orders_db, ref, "confirmed", ASHA)
    with pytest.raises(NotFound):
        svc.set_address(str(uuid.uuid4()), {"address": ADDRESS}, CUSTOMER)


def test_an_invalid_body_names_the_field_and_places_nothing(orders_db: Any, svc: OrdersService) -> None:
    tag = marker()
    bad = order_cmd(tag)
    bad["items"] = [{"sku": f"SKU-{tag}", "name": "Shirt", "quantity": 0, "unit_price": "12.50"}]
    with pytest.raises(InvalidRequest) as err:
        place_order(orders_db, bad, CUSTOMER, None)
    fields = [e["field"] for e in err.value.extra["errors"]]
    assert fields == ["items[0].quantity"]
    assert "items[0].quantity" in err.value.detail

    floats = order_cmd(tag, shipping=4.9)
    floats["items"][0]["unit_price"] = 12.5
    with pytest.raises(InvalidRequest) as err:
        place_order(orders_db, floats, CUSTOMER, None)
    assert {e["field"] for e in err.value.extra["errors"]} == {"items[0].unit_price", "shipping"}

    with pytest.raises(InvalidRequest) as err:
        place_order(orders_db, order_cmd(tag, shiping="4.90"), CUSTOMER, None)  # a typo is an error
    assert [e["field"] for e in err.value.extra["errors"]] == ["shiping"]

    page = list_orders(orders_db, {"q": tag})
    assert page["items"] == []  # nothing was placed

    placed = place_order(orders_db, order_cmd(tag), CUSTOMER, None)
    before = snapshot(orders_db, placed["id"])
    with pytest.raises(InvalidRequest) as err:
        svc.transition(placed["id"], {"to": "teleported"}, ASHA)
    assert [e["field"] for e in err.value.extra["errors"]] == ["to"]
    with pytest.raises(InvalidRequest) as err:
        svc.set_customer_note(placed["id"], {"note": "ring twice", "skip": True}, CUSTOMER)
    with pytest.raises(InvalidRequest) as err:
        svc.set_address(placed["id"], {"address": {**ADDRESS, "country": "India"}}, CUSTOMER)
    assert [e["field"] for e in err.value.extra["errors"]] == ["address.country"]
    assert snapshot(orders_db, placed["id"]) == before


# ------------------------------------------------------------------- 3. every change writes its event


def test_every_change_writes_its_event_in_the_same_transaction(orders_db: Any, svc: OrdersService) -> None:
    tag = marker()
    placed = place_order(orders_db, order_cmd(tag), CUSTOMER, None)
    oid = placed["id"]
    svc.set_address(oid, {"address": ADDRESS}, CUSTOMER)
    svc.set_address(oid, {"address": ADDRESS}, CUSTOMER)  # a repeat changes nothing, emits nothing
    svc.set_payment_method(oid, {"method": "cash_on_delivery"}, CUSTOMER)
    note = svc.add_note(oid, {"text": "Customer asked for gift wrap"}, ASHA)
    note_id = note["notes"][0]["id"]
    svc.edit_note(oid, note_id, {"text": "Gift wrap, blue paper"}, BEN)
    svc.set_customer_note(oid, {"skip": True}, CUSTOMER)  # completes the checkout: auto-confirmed too
    svc.transition(oid, {"to": "approved", "reason": "stock checked"}, ASHA)
    svc.transition(oid, {"to": "on_hold", "reason": "address check"}, BEN)
    svc.transition(oid, {"to": "approved"}, BEN)
    svc.change_customer(oid, {"customer": {"name": f"Customer {tag} Jr", "phone": "+49 30 1234567"}}, ASHA)
    svc.delete_note(oid, note_id, ASHA)
    final = get_order(orders_db, oid)

    hist = history(orders_db, oid)
    events = outbox(orders_db, oid)
    n = len(hist)
    assert [h["action"] for h in hist] == [
        "placed",
        "address_set",
        "payment_method_set",
        "note_added",
        "note_edited",
        "customer_note_set",
        "stage_changed",
        "stage_changed",
        "stage_changed",
        "stage_changed",
        "customer_changed",
        "note_deleted",
    ]
    assert [h["seq"] for h in hist] == list(range(1, n + 1))
    assert [e["sequence"] for e in events] == list(range(1, n + 1))
    assert [e["payload"]["sequence"] for e in events] == list(range(1, n + 1))
    assert [e["event_type"] for e in events] == [f"order.{h['action']}.v1" for h in hist]
    assert [e["payload"]["type"] for e in events] == [e["event_type"] for e in events]
    assert {e["correlation_id"] for e in events} == {oid}
    assert {e["payload"]["correlationid"] for e in events} == {oid}
    assert {e["payload"]["subject"] for e in events} == {oid}
    # Each event announces the version its change produced, the same one its history entry recorded.
    assert [e["payload"]["data"]["version"] for e in events] == list(range(1, n + 1))
    assert [h["data"]["version"] for h in hist] == list(range(1, n + 1))
    assert final["version"] == row(orders_db, oid)["version"] == n
    stage_moves = [(h["from_stage"], h["to_stage"], h["actor"]["name"]) for h in hist if h["to_stage"]][1:]
    assert stage_moves == [
        ("placed", "confirmed", "Automatic confirmation"),
        ("confirmed", "approved", "Asha"),
        ("approved", "on_hold", "Ben"),
        ("on_hold", "approved", "Ben"),
    ]
    assert [
        (e["payload"]["data"]["from_stage"], e["payload"]["data"]["to_stage"])
        for e in events
        if e["event_type"] == "order.stage_changed.v1"
    ] == [(f, t) for f, t, _ in stage_moves]


def test_a_change_whose_event_cannot_be_written_is_not_saved(
    orders_db: Any, svc: OrdersService, monkeypatch: pytest.MonkeyPatch
) -> None:
    placed = place_order(orders_db, order_cmd(marker()), CUSTOMER, None)
    before = snapshot(orders_db, placed["id"])

    def broken_emit(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("outbox unavailable")

    monkeypatch.setattr("services.orders.usecases.common.outbox.emit", broken_emit)
    with pytest.raises(RuntimeError, match="outbox unavailable"):
        svc.transition(placed["id"], {"to": "confirmed"}, ASHA)
    with pytest.raises(RuntimeError, match="outbox unavailable"):
        place_order(orders_db, order_cmd(marker()), CUSTOMER, None)
    monkeypatch.undo()
    assert snapshot(orders_db, placed["id"]) == before
    assert get_order(orders_db, placed["id"])["stage"] == "placed"


# ------------------------------------------------------------------------------------ 4. auto-confirm


def test_an_order_confirms_itself_once_address_payment_and_note_are_in(orders_db: Any, svc: OrdersService) -> None:
    oid = place_order(orders_db, order_cmd(marker()), CUSTOMER, None)["id"]
    assert svc.set_address(oid, {"address": ADDRESS}, CUSTOMER)["stage"] == "placed"
    assert svc.set_payment_method(oid, {"method": "cash_on_delivery"}, CUSTOMER)["stage"] == "placed"
    done = svc.set_customer_note(oid, {"skip": True}, CUSTOMER)
    assert done["stage"] == "confirmed"
    assert "approved" in done["allowed_transitions"]
    last = history(orders_db, oid)[-2:]
    assert [h["action"] for h in last] == ["customer_note_set", "stage_changed"]
    assert last[1]["actor"]["name"] == "Automatic confirmation"
    assert (last[1]["from_stage"], last[1]["to_stage"]) == ("placed", "confirmed")
    assert [e["event_type"] for e in outbox(orders_db, oid)][-2:] == [
        "order.customer_note_set.v1",
        "order.stage_changed.v1",
    ]

    # All three given at checkout: confirmed straight away, in the same transaction as the placement.
    at_once = place_order(
        orders_db,
        order_cmd(marker(), shipping_address=ADDRESS, payment_method="cash_on_delivery", customer_note="Ring twice"),
        CUSTOMER,
        None,
    )
    assert at_once["stage"] == "confirmed"
    assert [e["event_type"] for e in outbox(orders_db, at_once["id"])] == [
        "order.placed.v1",
        "order.stage_changed.v1",
    ]


def test_a_card_order_waits_for_the_money(orders_db: Any, svc: OrdersService) -> None:
    oid = place_order(
        orders_db, order_cmd(marker(), shipping_address=ADDRESS, payment_method="card"), CUSTOMER, None
    )["id"]
    assert svc.set_customer_note(oid, {"skip": True}, CUSTOMER)["stage"] == "placed"
    assert get_order(orders_db, oid)["stage"] == "placed"
    assert row(orders_db, oid)["paid_at"] is None
    paid = svc.set_payment_method(oid, {"method": "card", "paid": True}, CUSTOMER)
    assert paid["stage"] == "confirmed" and paid["paid_at"] is not None
    assert row(orders_db, oid)["paid_at"] is not None


# --------------------------------------------------------------------------------------- 6. queries


def ids(page: dict[str, Any]) -> list[int]:
    return [o["number"] for o in page["items"]]


def walk(db: Any, query: dict[str, Any]) -> tuple[list[int], int]:
    """Every page of a listing, following ``next_cursor``; returns the numbers and the page count."""
    numbers: list[int] = []
    pages = 0
    cursor = None
    while True:
        page = list_orders(db, {**query, **({"cursor": cursor} if cursor else {})})
        pages += 1
        numbers.extend(ids(page))
        cursor = page["next_cursor"]
        if cursor is None:
            return numbers, pages
        assert pages < 1000, "pagination does not end"


def test_filters_by_stage_channel_test_flag_and_date(orders_db: Any, svc: OrdersService) -> None:
    start = window()
    tag = marker()
    made: dict[str, dict[str, Any]] = {}
    specs = {
        "web-placed": ("web", False, 0, None),
        "wa-confirmed": ("whatsapp", False, 1, "confirmed"),
        "wa-cancelled": ("whatsapp", False, 2, "cancelled"),
        "pos-test": ("pos", True, 3, None),
        "test-channel": ("test", False, 4, None),
        "manual-late": ("manual", False, 20, "confirmed"),
    }
    for name, (channel, test, day, stage) in specs.items():
        cmd = order_cmd(tag, channel=channel, test=test, placed_at=(start + timedelta(days=day, hours=9)).isoformat())
        made[name] = place_order(orders_db, cmd, CUSTOMER, None)
        if stage:
            svc.transition(made[name]["id"], {"to": stage}, ASHA)
    num = {k: v["number"] for k, v in made.items()}
    span = {"placed_from": start.isoformat(), "placed_to": (start + timedelta(days=30)).isoformat()}

    def listed(**query: Any) -> set[int]:
        page = list_orders(orders_db, {**span, "limit": 200, **query})
        assert page["next_cursor"] is None
        return set(ids(page))

    assert listed() == set(num.values())
    assert listed(stage=["confirmed"]) == {num["wa-confirmed"], num["manual-late"]}
    assert listed(stage=["placed", "cancelled"]) == {num["web-placed"], num["wa-cancelled"], num["pos-test"],
                                                     num["test-channel"]}
    assert listed(channel=["whatsapp"]) == {num["wa-confirmed"], num["wa-cancelled"]}
    assert listed(channel=["whatsapp"], stage=["confirmed"]) == {num["wa-confirmed"]}
    # The test channel's orders are test orders even when the flag was not set.
    assert listed(test=True) == {num["pos-test"], num["test-channel"]}
    assert listed(test=False) == set(num.values()) - {num["pos-test"], num["test-channel"]}
    # placed_from is inclusive, placed_to exclusive.
    assert listed(
        placed_from=(start + timedelta(days=1, hours=9)).isoformat(),
        placed_to=(start + timedelta(days=3, hours=9)).isoformat(),
    ) == {num["wa-confirmed"], num["wa-cancelled"]}
    assert listed(placed_from=(start + timedelta(days=10)).isoformat()) == {num["manual-late"]}
    page = list_orders(orders_db, {**span, "stage": ["confirmed"], "limit": 200})
    assert {o["stage"] for o in page["items"]} == {"confirmed"}
    assert all(o["display_number"] == f"#{o['number']}" for o in page["items"])

    with pytest.raises(InvalidRequest) as err:
        list_orders(orders_db, {"stage": ["lost"]})
    assert [e["field"] for e in err.value.extra["errors"]] == ["stage[0]"]
    with pytest.raises(InvalidRequest) as err:
        list_orders(orders_db, {"placed_from": "2024-01-01T00:00:00"})  # no time zone: ambiguous
    assert [e["field"] for e in err.value.extra["errors"]] == ["placed_from"]


def test_search_finds_orders_by_number_name_phone_email_and_sku(orders_db: Any) -> None:
    start = window()
    tag = marker()
    span = {"placed_from": start.isoformat(), "placed_to": (start + timedelta(days=30)).isoformat(), "limit": 200}

    def place(day: int, customer: dict[str, Any], sku: str) -> dict[str, Any]:
        cmd = order_cmd(
            tag,
            customer=customer,
            items=[{"sku": sku, "name": "Item", "quantity": 1, "unit_price": "10.00"}],
            placed_at=(start + timedelta(days=day)).isoformat(),
        )
        return place_order(orders_db, cmd, CUSTOMER, None)

    priya = place(1, {"name": f"Priya Raman {tag}", "phone": "+91 98450 12345",
                      "email": f"Priya.R.{tag}@Example.com"}, f"TSHIRT-RED-M-{tag}")
    rahul = place(2, {"name": f"Rahul Mehta {tag}", "email": f"rahul.{tag}@example.org"}, f"MUG-BLUE-{tag}")
    anna = place(3, {"name": f"Anna Schmidt {tag}"}, f"TSHIRT-RED-L-{tag}")

    def found(q: str) -> set[int]:
        return set(ids(list_orders(orders_db, {**span, "q": q})))

    # By the number people quote, with or without '#'.
    for q in (str(rahul["number"]), f"#{rahul['number']}", f" # {rahul['number']} "):
        assert found(q) == {rahul["number"]}, q
    # Customer name: any part, any case.
    assert found("PRIYA") == {priya["number"]}
    assert found("raman") == {priya["number"]}
    assert found("ya ram") == {priya["number"]}
    assert found(tag.upper()) == {priya["number"], rahul["number"], anna["number"]}
    # Phone: the digits as typed in any format.
    assert found("98450") == {priya["number"]}
    assert found("98450 12345") == {priya["number"]}
    assert found("+91-98450-12345") == {priya["number"]}
    # E-mail, any case.
    assert found(f"priya.r.{tag}@example.com") == {priya["number"]}
    assert found("EXAMPLE.ORG") == {rahul["number"]}
    # SKU, any part.
    assert found("tshirt-red") == {priya["number"], anna["number"]}
    assert found(f"MUG-BLUE-{tag}") == {rahul["number"]}
    # LIKE wildcards are taken literally.
    assert found("%") == set() and found("_") == set()
    assert found("nobody-ordered-this") == set()


def test_search_by_a_whole_sku_or_e_mail_matches_it_as_written(orders_db: Any) -> None:
    """A whole SKU or e-mail address is looked up as one word of the search index (issue #10); what it matches
    stays "contains this text": separators must match exactly, the domain counts, and an address's digits are
    not taken for a phone number."""
    start = window()
    tag = marker()
    span = {"placed_from": start.isoformat(), "placed_to": (start + timedelta(days=30)).isoformat(), "limit": 200}

    def place(day: int, customer: dict[str, Any], skus: list[str]) -> int:
        items = [{"sku": sku, "name": "Item", "quantity": 1, "unit_price": "10.00"} for sku in skus]
        cmd = order_cmd(tag, customer=customer, items=items, placed_at=(start + timedelta(days=day)).isoformat())
        return int(place_order(orders_db, cmd, CUSTOMER, None)["number"])

    a = place(1, {"name": "Lukas Novak", "phone": "+49 30 5551234", "email": f"Lukas.Novak.{tag}@example.com"},
              [f"MUG-NAVY-XS-{tag}"])
    b = place(2, {"name": "Max Novak", "email": f"max.lukas.novak.{tag}@example.com"},
              [f"TOTE-NAVY-XS-{tag}", f"MUG-RED-M-{tag}"])
    c = place(3, {"name": "Anna Berg", "email": f"anna.{tag}5551234@example.com"}, [f"MUG-NAVY-XL-{tag}"])

    def found(q: str) -> set[int]:
        return set(ids(list_orders(orders_db, {**span, "q": q})))

    assert found(f"mug-navy-xs-{tag}") == {a}
    assert found(f"NAVY-XS-{tag}") == {a, b}
    assert found("mug-navy-x") == {a, c}
    # The separators are part of what is searched for: nothing here says "navy xs" or "navyqxs".
    assert found("navy xs") == set() and found("navyqxs") == set() and found("navy.xs") == set()
    # A whole address, in any case, and any address that contains it; the domain must match too.
    assert found(f"lukas.novak.{tag}@example.com") == {a, b}
    assert found(f"LUKAS.NOVAK.{tag}@EXAMPLE.COM") == {a, b}
    assert found(f"lukas.novak.{tag}@example.org") == set()
    # An address's digits are not a phone number (they matched Lukas' phone before); a phone's are.
    assert found(f"anna.{tag}5551234@example.com") == {c}
    assert found("+49 30 5551234") == {a}
    assert found("5551234") == {a, c}


def test_sort_by_placed_at_and_by_paid_at_with_unpaid_last(orders_db: Any, svc: OrdersService) -> None:
    start = window()
    tag = marker()
    span = {"placed_from": start.isoformat(), "placed_to": (start + timedelta(days=30)).isoformat(), "limit": 200}
    numbers = []
    for day in (5, 1, 9, 3, 7, 2):  # placed out of order on purpose
        cmd = order_cmd(tag, payment_method="card", placed_at=(start + timedelta(days=day)).isoformat())
        numbers.append((day, place_order(orders_db, cmd, CUSTOMER, None)))
    by_date = [o["number"] for _, o in sorted(numbers, key=lambda x: x[0])]
    assert ids(list_orders(orders_db, {**span, "sort": "placed_at", "direction": "asc"})) == by_date
    assert ids(list_orders(orders_db, {**span, "sort": "placed_at", "direction": "desc"})) == by_date[::-1]
    assert ids(list_orders(orders_db, span)) == by_date[::-1]  # newest first by default

    # The money arrives in this order (each payment later than the one before); two orders stay unpaid.
    pay_order = [numbers[3][1], numbers[0][1], numbers[5][1], numbers[2][1]]
    for o in pay_order:
        svc.set_payment_method(o["id"], {"method": "card", "paid": True}, CUSTOMER)
    paid = [o["number"] for o in pay_order]
    unpaid = sorted(o["number"] for _, o in numbers if o["number"] not in paid)
    asc = list_orders(orders_db, {**span, "sort": "paid_at", "direction": "asc"})
    desc = list_orders(orders_db, {**span, "sort": "paid_at", "direction": "desc"})
    assert ids(asc) == paid + unpaid
    assert ids(desc) == paid[::-1] + unpaid[::-1]
    assert [o["paid_at"] is None for o in desc["items"]] == [False] * 4 + [True] * 2
    assert [o["paid_at"] is None for o in asc["items"]] == [False] * 4 + [True] * 2


def test_cursor_pagination_walks_every_order_exactly_once(orders_db: Any, svc: OrdersService) -> None:
    start = window()
    tag = marker()
    span = {"placed_from": start.isoformat(), "placed_to": (start + timedelta(days=30)).isoformat()}
    placed = []
    for i in range(23):
        # Ties: three orders share each placed_at (an import from a marketplace does this).
        at = start + timedelta(days=1 + (i * 7) % 8, hours=10)
        placed.append(place_order(orders_db, order_cmd(tag, placed_at=at.isoformat()), CUSTOMER, None))
    for o in placed[::3]:  # some paid, so the paid_at walk crosses from paid to unpaid
        svc.set_payment_method(o["id"], {"method": "card", "paid": True}, CUSTOMER)
    full = {o["number"]: get_order(orders_db, o["id"]) for o in placed}
    assert len({o["placed_at"] for o in full.values()}) == 8  # ties on placed_at exist

    def key_placed(n: int) -> tuple[datetime, int]:
        return datetime.fromisoformat(full[n]["placed_at"]), n

    by_placed = sorted(full, key=key_placed)
    paid_first = sorted((n for n in full if full[n]["paid_at"]), key=lambda n: (full[n]["paid_at"], n))
    unpaid = sorted(n for n in full if not full[n]["paid_at"])
    expected = {
        ("placed_at", "asc"): by_placed,
        ("placed_at", "desc"): by_placed[::-1],
        ("paid_at", "asc"): paid_first + unpaid,
        ("paid_at", "desc"): paid_first[::-1] + unpaid[::-1],
    }
    for (sort, direction), want in expected.items():
        for limit in (1, 2, 4, 5, 23, 50):
            got, pages = walk(orders_db, {**span, "sort": sort, "direction": direction, "limit": limit})
            assert len(got) == len(set(got)), (sort, direction, limit, "duplicates")
            assert got == want, (sort, direction, limit)
            assert pages == max(1, -(-len(want) // limit)), (sort, direction, limit)

    # A filter holds across pages.
    got, _ = walk(orders_db, {**span, "q": tag, "stage": ["placed"], "limit": 3})
    assert got == by_placed[::-1]


def test_several_stages_or_channels_list_as_one_list_in_every_sort(orders_db: Any, svc: OrdersService) -> None:
    """Several stages (or channels) are read one index walk per value and merged (issue #10): the pages must be
    exactly those of one list, in every sort and page size, across ties and from paid to unpaid."""
    start = window()
    tag = marker()
    span = {"placed_from": start.isoformat(), "placed_to": (start + timedelta(days=30)).isoformat(), "q": tag}
    channels = ["web", "whatsapp", "pos"]
    stages = [None, "confirmed", "cancelled"]
    placed = []
    for i in range(18):
        at = start + timedelta(days=1 + (i * 5) % 6, hours=10)  # three orders share each placed_at
        cmd = order_cmd(tag, channel=channels[i % 3], payment_method="card", placed_at=at.isoformat())
        o = place_order(orders_db, cmd, CUSTOMER, None)
        if i % 4 == 0:
            svc.set_payment_method(o["id"], {"method": "card", "paid": True}, CUSTOMER)
        if stages[(i // 3) % 3]:
            svc.transition(o["id"], {"to": stages[(i // 3) % 3]}, ASHA)
        placed.append(o["id"])
    full = {o["number"]: o for o in (get_order(orders_db, oid) for oid in placed)}
    assert {o["stage"] for o in full.values()} >= {"placed", "cancelled"}

    def expected(sort: str, direction: str, keep: Any) -> list[int]:
        chosen = [n for n, o in full.items() if keep(o)]
        if sort == "placed_at":
            got = sorted(chosen, key=lambda n: (datetime.fromisoformat(full[n]["placed_at"]), n))
            return got[::-1] if direction == "desc" else got
        paid = sorted((n for n in chosen if full[n]["paid_at"]), key=lambda n: (full[n]["paid_at"], n))
        unpaid = sorted(n for n in chosen if not full[n]["paid_at"])
        return paid[::-1] + unpaid[::-1] if direction == "desc" else paid + unpaid

    filters: list[tuple[dict[str, Any], Any]] = [
        ({"stage": ["placed", "confirmed", "cancelled"]}, lambda o: True),
        ({"stage": ["cancelled", "placed"]}, lambda o: o["stage"] in ("cancelled", "placed")),
        ({"channel": ["web", "pos"]}, lambda o: o["channel"] in ("web", "pos")),
        ({"stage": ["placed", "confirmed"], "channel": ["whatsapp", "pos"]},
         lambda o: o["stage"] in ("placed", "confirmed") and o["channel"] in ("whatsapp", "pos")),
        ({"stage": ["confirmed"], "channel": ["web", "whatsapp"]},
         lambda o: o["stage"] == "confirmed" and o["channel"] in ("web", "whatsapp")),
    ]
    for query, keep in filters:
        for sort, direction in (("placed_at", "asc"), ("placed_at", "desc"), ("paid_at", "asc"), ("paid_at", "desc")):
            want = expected(sort, direction, keep)
            assert want, query
            for limit in (1, 4, 50):
                got, pages = walk(orders_db, {**span, **query, "sort": sort, "direction": direction, "limit": limit})
                assert got == want, (query, sort, direction, limit)
                assert pages == max(1, -(-len(want) // limit)), (query, sort, direction, limit)


def paid_after(db: Any, order_id: str, delay: timedelta) -> None:
    """Test set-up only: the order was paid ``delay`` after it was placed (column and document, as the payment
    projection writes them)."""
    with db.transaction() as tx:
        tx.execute(
            "UPDATE orders SET paid_at = placed_at + %(d)s, "
            "doc = jsonb_set(doc, '{paid_at}', to_jsonb(to_char((placed_at + %(d)s) AT TIME ZONE 'UTC', "
            "'YYYY-MM-DD\"T\"HH24:MI:SS\"+00:00\"'))) WHERE id = %(id)s",
            {"d": delay, "id": order_id},
        )


def expected_by_paid(full: dict[int, dict[str, Any]], direction: str) -> list[int]:
    paid = sorted((n for n in full if full[n]["paid_at"]),
                  key=lambda n: (datetime.fromisoformat(full[n]["paid_at"]), n))
    unpaid = sorted(n for n in full if not full[n]["paid_at"])
    return paid[::-1] + unpaid[::-1] if direction == "desc" else paid + unpaid


def test_placed_before_a_date_newest_payment_first_includes_old_orders_paid_late(orders_db: Any) -> None:
    """"Placed before" sorted by payment date reads the last two weeks before the date and bounds the rest by it
    (issue #10): an older order paid late must still come first, in every page size, and orders placed after
    the date never appear."""
    start = window()
    tag = marker()
    date = start + timedelta(days=30)
    delays: dict[int, timedelta | None] = {  # days before the date it was placed -> paid how long after
        10: timedelta(hours=1), 8: timedelta(hours=1), 6: timedelta(hours=1), 4: timedelta(hours=1),
        2: timedelta(hours=1), 3: None,  # near the date; one unpaid
        20: timedelta(hours=1), 25: timedelta(hours=2), 26: None,  # older, paid at once or not at all
        28: timedelta(days=27),  # older, paid a day before the date: first of all
        22: timedelta(days=17),  # older, paid five days before the date: among the near ones
    }
    full: dict[int, dict[str, Any]] = {}
    number_of: dict[int, int] = {}
    for days, delay in delays.items():
        at = date - timedelta(days=days, minutes=days)
        o = place_order(orders_db, order_cmd(tag, payment_method="card", placed_at=at.isoformat()), CUSTOMER, None)
        if delay is not None:
            paid_after(orders_db, o["id"], delay)
        full[o["number"]] = get_order(orders_db, o["id"])
        number_of[days] = o["number"]
    later = place_order(orders_db, order_cmd(tag, placed_at=(date + timedelta(hours=1)).isoformat()), CUSTOMER, None)
    paid_after(orders_db, later["id"], timedelta(hours=1))
    assert sum(1 for o in full.values() if o["paid_at"]) == 9

    want = expected_by_paid(full, "desc")
    assert want[0] == number_of[28]  # placed four weeks before the date, paid a day before it
    assert want.index(number_of[22]) == 3  # paid between the orders placed six and four days before the date
    for limit in (1, 2, 3, 4, 5, 50):
        got, pages = walk(orders_db, {"placed_to": date.isoformat(), "q": tag, "sort": "paid_at", "direction": "desc",
                                      "limit": limit})
        assert got == want, limit
        assert pages == max(1, -(-len(want) // limit)), limit
    # The other direction and a bounded range list the same orders the same way.
    got, _ = walk(orders_db, {"placed_to": date.isoformat(), "q": tag, "sort": "paid_at", "direction": "asc",
                              "limit": 2})
    assert got == expected_by_paid(full, "asc")
    got, _ = walk(orders_db, {"placed_from": start.isoformat(), "placed_to": date.isoformat(), "q": tag,
                              "sort": "paid_at", "direction": "desc", "limit": 3})
    assert got == want


def forge(value: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).decode()


def test_a_cursor_only_works_with_the_sort_it_came_from(orders_db: Any) -> None:
    start = window()
    tag = marker()
    span = {"placed_from": start.isoformat(), "placed_to": (start + timedelta(days=30)).isoformat(), "limit": 2}
    for day in range(5):
        place_order(orders_db, order_cmd(tag, placed_at=(start + timedelta(days=day)).isoformat()), CUSTOMER, None)
    by_date = list_orders(orders_db, {**span, "sort": "placed_at"})["next_cursor"]
    by_paid = list_orders(orders_db, {**span, "sort": "paid_at"})["next_cursor"]
    asc = list_orders(orders_db, {**span, "sort": "placed_at", "direction": "asc"})["next_cursor"]
    assert by_date and by_paid and asc
    bad_uses: list[tuple[str, dict[str, Any]]] = [
        (by_date, {"sort": "paid_at"}),
        (by_paid, {"sort": "placed_at"}),
        (asc, {"sort": "placed_at", "direction": "desc"}),
        (by_date, {"sort": "placed_at", "direction": "asc"}),
        ("not-a-cursor", {}),
        (forge(["placed_at desc", "yesterday-ish", 1001]), {"sort": "placed_at"}),
        (forge(["placed_at desc", "2001-01-01 00:00:00+00", "abc"]), {"sort": "placed_at"}),
        (forge({"sort": "placed_at desc"}), {"sort": "placed_at"}),
        (by_date[:-3], {"sort": "placed_at"}),
    ]
    for cursor, query in bad_uses:
        with pytest.raises(InvalidRequest) as err:
            list_orders(orders_db, {**span, **query, "cursor": cursor})
        assert [e["field"] for e in err.value.extra["errors"]] == ["cursor"], (cursor, query)


# ---------------------------------------------------------------------------------- 5. abandonment
# Last in the module: the real timer below abandons every stale placed order in the session database.


def backdate(db: Any, order_id: str, seconds: float) -> None:
    """Test set-up only: pretend the order entered its stage ``seconds`` ago."""
    at = (datetime.now(UTC) - timedelta(seconds=seconds)).isoformat()
    with db.transaction() as tx:
        tx.execute(
            "UPDATE orders SET doc = jsonb_set(doc, '{stage_changed_at}', to_jsonb(%s::text)) WHERE id = %s",
            (at, order_id),
        )


def test_the_abandonment_timer_abandons_only_placed_orders_missing_address_or_payment(
    orders_db: Any, svc: OrdersService
) -> None:
    tag = marker()

    def place(**kw: Any) -> str:
        return str(place_order(orders_db, order_cmd(tag, **kw), CUSTOMER, None)["id"])

    no_address = place()
    no_address_cod = place(payment_method="cash_on_delivery")
    address_cod = place(shipping_address=ADDRESS, payment_method="cash_on_delivery")  # waits for the note only
    address_card_unpaid = place(shipping_address=ADDRESS, payment_method="card")
    address_card_paid = place(shipping_address=ADDRESS, payment_method="card")
    svc.set_payment_method(address_card_paid, {"method": "card", "paid": True}, CUSTOMER)
    confirmed = place(shipping_address=ADDRESS, payment_method="cash_on_delivery", customer_note="hi")
    held = place()
    svc.transition(held, {"to": "on_hold"}, ASHA)
    recent = place()  # placed just now: not yet
    for oid in (no_address, no_address_cod, address_cod, address_card_unpaid, address_card_paid, confirmed, held):
        backdate(orders_db, oid, 2 * 3600)
    untouched = {oid: snapshot(orders_db, oid)
                 for oid in (address_cod, address_card_paid, confirmed, held, recent)}

    assert abandon_stale_orders(orders_db, abandon_after_seconds=3600) == 3
    for oid in (no_address, no_address_cod, address_card_unpaid):
        order = get_order(orders_db, oid)
        assert order["stage"] == "abandoned", oid
        last = order["history"][-1]
        assert last["actor"]["name"] == "Abandonment timer" and last["actor"]["type"] == "system"
        assert (last["from_stage"], last["to_stage"]) == ("placed", "abandoned")
        assert outbox(orders_db, oid)[-1]["event_type"] == "order.stage_changed.v1"
        assert order["allowed_transitions"] == ["archived"]
    for oid, before in untouched.items():
        assert snapshot(orders_db, oid) == before, oid
    assert get_order(orders_db, confirmed)["stage"] == "confirmed"
    # Running again finds nothing more: each order is abandoned once.
    assert abandon_stale_orders(orders_db, abandon_after_seconds=3600) == 0
    assert [h["to_stage"] for h in history(orders_db, no_address)].count("abandoned") == 1


def test_the_real_service_abandons_an_order_left_without_an_address(
    migrated: dict[str, str], orders_db: Any, logs: Any
) -> None:
    env = {**migrated, "OMS_ABANDON_AFTER_SECONDS": "1", "OMS_ABANDON_CHECK_INTERVAL_SECONDS": "0.5"}
    tag = marker()
    with service_process("orders", env, logs):
        left = place_order(orders_db, order_cmd(tag), CUSTOMER, None)
        finished = place_order(
            orders_db,
            order_cmd(tag, shipping_address=ADDRESS, payment_method="cash_on_delivery", customer_note="thanks"),
            CUSTOMER,
            None,
        )
        ready = place_order(
            orders_db, order_cmd(tag, shipping_address=ADDRESS, payment_method="bank_transfer"), CUSTOMER, None
        )
        abandoned = wait_for(
            lambda: (o := get_order(orders_db, left["id"]))["stage"] == "abandoned" and o,
            timeout=20,
            what="the timer to abandon the order",
        )
        # The relay of the running service publishes the event it wrote.
        wait_for(
            lambda: all_published(orders_db, left["id"]), timeout=20, what="the abandonment event to be published"
        )
    last = abandoned["history"][-1]
    assert last["actor"]["name"] == "Abandonment timer"
    assert last["reason"] == "no address or payment in time"
    assert get_order(orders_db, finished["id"])["stage"] == "confirmed"
    assert get_order(orders_db, ready["id"])["stage"] == "placed"  # address + bank transfer: only the note missing


def all_published(db: Any, order_id: str) -> bool:
    with db.transaction() as tx:
        rows = tx.execute(
            "SELECT event_type, published_at FROM outbox WHERE subject = %s ORDER BY sequence", (order_id,)
        ).fetchall()
    return bool(rows) and rows[-1]["event_type"] == "order.stage_changed.v1" and all(r["published_at"] for r in rows)



# ------------------------------------------------------------------------------------------------------
# Currencies: ISO 4217 minor units from shared.money, unknown codes refused naming the field
# ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("currency", ["ABC", "XAU"])
def test_an_unknown_currency_is_refused_naming_the_field_and_places_nothing(orders_db: Any, currency: str) -> None:
    tag = marker()
    with pytest.raises(InvalidRequest) as info:
        place_order(orders_db, order_cmd(tag, currency=currency), CUSTOMER)
    assert info.value.status == 422
    assert [e["field"] for e in info.value.extra["errors"]] == ["currency"]
    assert list_orders(orders_db, {"q": tag})["items"] == []


@pytest.mark.parametrize(
    ("currency", "price", "shipping", "total"),
    [("TND", "10.005", "1.5", "21.510"), ("JPY", "1500", "300", "3300"), ("KRW", "12000", "0", "24000")],
)
def test_orders_in_three_and_zero_decimal_currencies_are_exact_everywhere(
    orders_db: Any, svc: OrdersService, currency: str, price: str, shipping: str, total: str
) -> None:
    tag = marker()
    items = [{"sku": f"SKU-{tag}", "name": "Tea", "quantity": 2, "unit_price": price}]
    placed = place_order(orders_db, order_cmd(tag, currency=currency, items=items, shipping=shipping), CUSTOMER)
    assert placed["currency"] == currency and placed["totals"]["total"] == total
    assert svc.get_order(placed["id"])["totals"] == placed["totals"]
    assert svc.get_order(placed["id"])["items"] == placed["items"]
    listed = list_orders(orders_db, {"q": tag})["items"]
    assert [o["totals"]["total"] for o in listed] == [total]


# ------------------------------------------------------------------------------------------------------
# What orders does with the payments service's events: one handler per event model
# ------------------------------------------------------------------------------------------------------


def payment_envelope(order: dict[str, Any], data: Any, sequence: int) -> Envelope:
    return Envelope(
        source="payments",
        type=data.event_type,
        subject=order["id"],
        sequence=sequence,
        correlationid=order["id"],
        causationid="test",
        data=data.model_dump(mode="json"),
    )


def test_payment_events_are_handled_by_the_table_and_others_are_ignored(orders_db: Any, svc: OrdersService) -> None:
    assert set(PAYMENT_EVENT_HANDLERS) == {
        pev.PaymentStatusChanged, pev.PaymentLedgerViolation, pev.RefundCompleted, pev.RefundPaidOut, pev.PaymentVoided
    }  # fmt: skip
    tag = marker()
    order = place_order(orders_db, order_cmd(tag), CUSTOMER)
    base = {"order_id": order["id"], "number": order["number"], "at": datetime.now(UTC)}
    link = pev.PaymentLinkCreated(**base, payment_id="p1", link_id="l1", url="https://pay", amount="29.90",
                                  currency="EUR")  # fmt: skip
    with orders_db.transaction() as tx:
        apply_payment_event(tx, payment_envelope(order, link, 1))
    assert svc.get_order(order["id"]) == order, "an event orders has no handler for changes nothing"

    refund = pev.RefundCompleted(**base, reference="R-1", amount="5.00", currency="EUR", reason="damaged")
    with orders_db.transaction() as tx:
        apply_payment_event(tx, payment_envelope(order, refund, 2))
    after = svc.get_order(order["id"])
    assert after["version"] == order["version"] + 1
    entry = after["history"][-1]
    assert (entry["action"], entry["reason"], entry["actor"]["id"]) == ("refund_completed", "damaged", "payments")
    assert entry["data"]["amount"] == "5.00" and entry["data"]["version"] == after["version"]

    status = pev.PaymentStatusChanged(**base, status="paid", captured="29.90", refunded="0", balance_due="0",
                                      overpaid="0", paid_at=datetime.now(UTC), currency="EUR")  # fmt: skip
    with orders_db.transaction() as tx:
        apply_payment_event(tx, payment_envelope(order, status, 3))
    projected = svc.get_order(order["id"])
    assert projected["payment_status"] == "paid" and projected["paid_at"] is not None
    assert projected["version"] == after["version"], "a projection is not a change of the order"
