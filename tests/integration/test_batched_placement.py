"""A batch of placements (what the gateway sends as ``orders.place_orders``), written set-based against a real
Postgres: a bad order fails alone, idempotency keys replay inside a batch, every order gets its own number,
history and one ``order.placed.v1`` at sequence 1, and the batch costs the same statements whatever its size.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal
from typing import Any

import psycopg
import pytest

from services.orders import store
from services.orders.usecases.placement import place_orders
from shared.db import Database
from tests.integration.test_orders_service import ADDRESS, CUSTOMER, history, marker, order_cmd, outbox

pytestmark = pytest.mark.integration


def req(cmd: dict[str, Any], key: str | None = None, actor: dict[str, Any] = CUSTOMER) -> dict[str, Any]:
    return {"command": cmd, "actor": actor, "idempotency_key": key}


def count(db: Database, sql: str, *params: Any) -> int:
    with db.transaction() as tx:
        row = tx.execute(sql, params).fetchone()
    assert row is not None
    return int(next(iter(row.values())))


class CountingDatabase:
    """The orders database, counting the statements every transaction sends."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.statements: list[str] = []

    @contextmanager
    def transaction(self) -> Iterator[Any]:
        with self.db.transaction() as tx:
            outer = self

            class Spy:
                def execute(self, query: Any, params: Any = None) -> Any:
                    outer.statements.append(str(query)[:40])
                    return tx.execute(query, params)

                def __getattr__(self, name: str) -> Any:
                    return getattr(tx, name)

            yield Spy()


def test_a_bad_order_in_a_batch_fails_alone_and_the_others_are_placed(orders_db: Database) -> None:
    tag = marker()
    invalid = order_cmd(tag)
    invalid["items"][0]["quantity"] = 0  # the contract refuses it
    refused = order_cmd(tag, currency="XYZ")  # the domain refuses it
    too_big_discount = order_cmd(tag, discount="999.00")
    batch = [req(order_cmd(tag)), req(invalid), req(order_cmd(tag)), req(refused), req(too_big_discount),
             req(order_cmd(tag))]

    answers = place_orders(orders_db, batch)

    assert [("result" in a, "error" in a) for a in answers] == [
        (True, False), (False, True), (True, False), (False, True), (False, True), (True, False)
    ]
    assert answers[1]["error"]["exc_type"] == "InvalidRequest"
    assert "items[0].quantity" in answers[1]["error"]["value"]
    assert answers[3]["error"]["exc_type"] == "InvalidRequest"
    assert answers[4]["error"]["exc_type"] == "InvalidRequest"
    placed = [answers[i]["result"] for i in (0, 2, 5)]
    assert count(orders_db, "SELECT count(*) FROM orders WHERE customer_email = %s", f"{tag}@example.com") == 3
    for detail in placed:
        assert [e["event_type"] for e in outbox(orders_db, detail["id"])] == ["order.placed.v1"]


def test_each_order_of_a_batch_gets_its_number_history_and_events_in_sequence(orders_db: Database) -> None:
    tag = marker()
    complete = order_cmd(tag, shipping_address=ADDRESS, payment_method="cash_on_delivery",
                         customer_note="Leave it at the door")  # confirms itself: two events
    batch = [req(order_cmd(tag)) for _ in range(5)] + [req(complete)]

    answers = place_orders(orders_db, batch)

    details = [a["result"] for a in answers]
    numbers = [d["number"] for d in details]
    assert len(set(numbers)) == 6 and numbers == sorted(numbers)
    assert [d["display_number"] for d in details] == [f"#{n}" for n in numbers]
    for detail in details[:5]:
        events = outbox(orders_db, detail["id"])
        assert [(e["event_type"], e["sequence"], e["payload"]["sequence"]) for e in events] == [
            ("order.placed.v1", 1, 1)
        ]
        assert events[0]["payload"]["data"]["number"] == detail["number"]
        assert events[0]["correlation_id"] == detail["id"]
        assert [(h["seq"], h["action"]) for h in history(orders_db, detail["id"])] == [(1, "placed")]
        assert detail["stage"] == "placed" and [h["seq"] for h in detail["history"]] == [1]
    last = details[5]
    assert last["stage"] == "confirmed"
    assert [(e["event_type"], e["sequence"]) for e in outbox(orders_db, last["id"])] == [
        ("order.placed.v1", 1), ("order.stage_changed.v1", 2)
    ]
    assert [h["action"] for h in history(orders_db, last["id"])] == ["placed", "stage_changed"]
    with orders_db.transaction() as tx:
        rows = {str(r["id"]): r for r in tx.execute(
            "SELECT id, number, stage, total, doc FROM orders WHERE id = ANY(%s::uuid[])",
            ([d["id"] for d in details],),
        ).fetchall()}
    for detail in details:
        stored = rows[detail["id"]]
        assert (stored["number"], stored["stage"], stored["total"]) == (
            detail["number"], detail["stage"], Decimal(detail["totals"]["total"])
        )
        assert stored["doc"]["number"] == detail["number"]


def test_idempotency_keys_replay_inside_a_batch_and_against_earlier_orders(orders_db: Database) -> None:
    tag = marker()
    key_before, key_twice, key_other_body = (f"{tag}-{n}" for n in ("before", "twice", "other"))
    first = place_orders(orders_db, [req(order_cmd(tag), key_before), req(order_cmd(tag), key_other_body)])
    earlier, other = first[0]["result"], first[1]["result"]

    answers = place_orders(orders_db, [
        req(order_cmd(tag), key_before),  # a retry of an order placed by an earlier batch
        req(order_cmd(tag), key_twice),  # the same request twice in one batch
        req(order_cmd(tag), key_twice),
        req(order_cmd(tag, shipping="9.90"), key_other_body),  # the key of another body: refused
        req(order_cmd(tag), key_before, actor={**CUSTOMER, "id": "another-customer"}),  # keys are per actor
    ])

    assert answers[0]["result"]["id"] == earlier["id"]
    assert answers[1]["result"]["id"] == answers[2]["result"]["id"]
    assert answers[2]["result"]["number"] == answers[1]["result"]["number"]
    assert answers[3]["error"]["exc_type"] == "IdempotencyMismatch"
    assert other["display_number"] in answers[3]["error"]["value"]
    assert answers[4]["result"]["id"] not in {earlier["id"], answers[1]["result"]["id"]}
    # Two orders from the first batch, then one for key_twice and one for the other actor: no duplicates.
    assert count(orders_db, "SELECT count(*) FROM orders WHERE customer_email = %s", f"{tag}@example.com") == 4
    assert len(outbox(orders_db, answers[1]["result"]["id"])) == 1


def test_a_batch_is_written_with_the_same_statements_whatever_its_size(orders_db: Database) -> None:
    tag = marker()
    sizes = {}
    for size in (2, 20):
        spy = CountingDatabase(orders_db)
        answers = place_orders(spy, [req(order_cmd(tag), f"{tag}-{size}-{i}") for i in range(size)])  # type: ignore[arg-type]
        assert all("result" in a for a in answers)
        sizes[size] = spy.statements
    assert len(sizes[2]) == len(sizes[20]) <= 4, sizes[20]


def test_a_batch_whose_set_based_write_fails_is_placed_one_by_one(
    orders_db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    tag = marker()

    def fail(*_args: Any) -> None:
        raise psycopg.errors.UniqueViolation("a key raced in from another request")

    monkeypatch.setattr(store, "insert_many", fail)
    invalid = order_cmd(tag, currency="XYZ")
    answers = place_orders(orders_db, [req(order_cmd(tag), f"{tag}-a"), req(invalid), req(order_cmd(tag))])

    assert ["result" in a for a in answers] == [True, False, True]
    assert count(orders_db, "SELECT count(*) FROM orders WHERE customer_email = %s", f"{tag}@example.com") == 2
    replay = place_orders(orders_db, [req(order_cmd(tag), f"{tag}-a")])
    assert replay[0]["result"]["id"] == answers[0]["result"]["id"]


def test_the_gateways_trusted_call_answers_the_same_order_as_json_text(orders_db: Database) -> None:
    tag = marker()
    from services.orders.contracts.schemas import PlaceOrder

    dumped = PlaceOrder.model_validate(order_cmd(tag, shipping_address=ADDRESS)).model_dump(mode="json")
    invalid = order_cmd(tag, currency="XYZ")
    answers = place_orders(orders_db, [req(dumped, f"{tag}-k"), req(invalid)], validated=True, as_json=True)

    assert set(answers[0]) == {"result_json", "id"}
    detail = json.loads(answers[0]["result_json"])
    assert detail["id"] == answers[0]["id"] == str(uuid.UUID(detail["id"]))
    assert detail["shipping_address"]["city"] == ADDRESS["city"]
    assert answers[1]["error"]["exc_type"] == "InvalidRequest"
    replay = place_orders(orders_db, [req(dumped, f"{tag}-k")], validated=True, as_json=True)
    assert json.loads(replay[0]["result_json"]) == detail
