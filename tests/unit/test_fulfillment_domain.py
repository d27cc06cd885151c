"""The fulfillment domain without servers: every row of FULFILLMENT_RULES, the partial cases, quantities per
line, what may be fulfilled or returned (and why not, in the merchant's words), shipment moves, allocation."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from services.fulfillment import domain
from services.fulfillment.contracts.vocabulary import (
    FULFILLMENT_RULES,
    FulfillmentStatus,
    ShipmentKind,
    ShipmentStatus,
    ShippingPoint,
)
from services.orders.contracts.schemas import Stage

pytestmark = pytest.mark.unit

F = FulfillmentStatus
S = ShipmentStatus
NOW = datetime(2026, 1, 1, tzinfo=UTC)


def order(*quantities: int, stage: Stage = Stage.approved, **kw: object) -> domain.FulfillmentOrder:
    lines = tuple(domain.OrderLine(str(i + 1), f"SKU{i + 1}", f"Item {i + 1}", q, Decimal("10.00"),
                                   Decimal("10.00") * q) for i, q in enumerate(quantities))
    return domain.FulfillmentOrder(order_id="o1", number=1001, test=False, stage=stage, currency="EUR", lines=lines,
                                   **kw)  # type: ignore[arg-type]


def ship(o: domain.FulfillmentOrder, status: S, *units: tuple[str, int],
         point: ShippingPoint = ShippingPoint.local, kind: ShipmentKind = ShipmentKind.manual) -> domain.Shipment:
    rank = o.next_rank()
    s = domain.Shipment(id=f"s{rank}", order_id=o.order_id, rank=rank, number=f"1001-S{rank}", kind=kind,
                        shipping_point=point, status=status, location="main",
                        lines=[domain.ShipmentLine(lid, f"SKU{lid}", q) for lid, q in units],
                        created_at=NOW, updated_at=NOW)
    o.shipments.append(s)
    return s


def give_back(o: domain.FulfillmentOrder, *units: tuple[str, int]) -> None:
    o.returns.append(domain.OrderReturn(id=f"r{len(o.returns) + 1}", lines=tuple(
        domain.ReturnLine(lid, f"SKU{lid}", q, False, "main") for lid, q in units), reason=None, actor={}, at=NOW))


# ------------------------------------------------------------------------------------ the rules table


def facts(**kw: object) -> domain.Facts:
    base = dict(ordered=4, handed_over=0, delivered=0, returned=0, packed=False, pickup_only=False,
                order_cancelled=False)
    base.update(kw)
    return domain.Facts(**base)  # type: ignore[arg-type]


ROW_EXAMPLES: list[tuple[F, domain.Facts]] = [
    (F.canceled, facts(order_cancelled=True)),
    (F.returned, facts(handed_over=4, delivered=4, returned=4)),
    (F.partially_returned, facts(handed_over=4, delivered=4, returned=1)),
    (F.picked_up, facts(handed_over=4, delivered=4, pickup_only=True)),
    (F.delivered, facts(handed_over=4, delivered=4)),
    (F.fulfilled, facts(handed_over=4, delivered=2)),
    (F.partially_fulfilled, facts(handed_over=1)),
    (F.dispatched, facts(packed=True)),
    (F.unfulfilled, facts()),
]


def test_every_row_of_the_rules_table_has_an_example_that_it_decides() -> None:
    assert [status for status, _ in ROW_EXAMPLES] == [r.status for r in FULFILLMENT_RULES]
    for (status, f), rule in zip(ROW_EXAMPLES, FULFILLMENT_RULES, strict=True):
        assert domain.rule_holds(rule, f), status
        assert domain.evaluate(f) == (status, rule)


@pytest.mark.parametrize(("expected", "f"), [
    # a cancelled order with something already handed over is not "canceled": the parcel left
    (F.partially_fulfilled, facts(order_cancelled=True, handed_over=2)),
    (F.fulfilled, facts(order_cancelled=True, handed_over=4)),
    # some delivered, the rest on the way: fulfilled (not delivered)
    (F.fulfilled, facts(handed_over=4, delivered=3)),
    # some delivered, some not handed over yet
    (F.partially_fulfilled, facts(handed_over=2, delivered=2)),
    # packed and partly handed over: the handed-over rule comes first
    (F.partially_fulfilled, facts(handed_over=2, packed=True)),
    # all delivered, only part collected in store: delivered, not picked up
    (F.delivered, facts(handed_over=4, delivered=4, pickup_only=False)),
    # returns win over everything after them
    (F.partially_returned, facts(handed_over=2, delivered=1, returned=1)),
    (F.returned, facts(order_cancelled=False, handed_over=4, delivered=4, returned=4, pickup_only=True)),
])
def test_partial_cases(expected: F, f: domain.Facts) -> None:
    assert domain.evaluate(f)[0] is expected


def test_levels() -> None:
    assert [domain.level(n, 3) for n in (0, 1, 2, 3)] == ["none", "some", "some", "all"]


# ------------------------------------------------------------------------------------ the order's counts


def test_split_shipments_count_per_line_and_give_the_status() -> None:
    o = order(3, 1)
    assert o.computed_status() is F.unfulfilled
    ship(o, S.awaiting_shipment, ("1", 2))
    assert o.computed_status() is F.dispatched
    o.shipments[0].status = S.shipped
    assert o.computed_status() is F.partially_fulfilled
    ship(o, S.in_transit, ("1", 1), ("2", 1))
    assert o.computed_status() is F.fulfilled
    c1 = o.counts_of("1")
    assert (c1.ordered, c1.handed_over, c1.unfulfilled, c1.delivered) == (3, 3, 0, 0)
    o.shipments[0].status = S.delivered
    assert o.computed_status() is F.fulfilled
    o.shipments[1].status = S.delivered
    assert o.computed_status() is F.delivered


def test_a_failed_delivery_makes_its_units_unfulfilled_again_and_a_reshipment_fulfils_them() -> None:
    o = order(2)
    ship(o, S.delivered, ("1", 1))
    failed = ship(o, S.in_transit, ("1", 1))
    assert o.computed_status() is F.fulfilled
    failed.status = S.delivery_failed
    assert o.computed_status() is F.partially_fulfilled
    assert o.counts_of("1").unfulfilled == 1
    assert o.check_fulfill([]) == [domain.ShipmentLine("1", "SKU1", 1)]
    ship(o, S.delivered, ("1", 1))
    assert o.computed_status() is F.delivered
    assert o.counts_of("1").returnable == 2


def test_pickup_shipments_end_picked_up() -> None:
    o = order(1)
    ship(o, S.delivered, ("1", 1), point=ShippingPoint.pickup)
    assert o.computed_status() is F.picked_up


def test_a_cancelled_order_with_nothing_sent_is_canceled_and_marked_packed_is_dispatched() -> None:
    o = order(2, packed=True)
    assert o.computed_status() is F.dispatched
    o.stage = Stage.cancelled
    assert o.computed_status() is F.canceled


def test_returns_partial_and_complete() -> None:
    o = order(2, 1)
    ship(o, S.delivered, ("1", 2), ("2", 1))
    give_back(o, ("1", 1))
    assert o.computed_status() is F.partially_returned
    give_back(o, ("1", 1), ("2", 1))
    assert o.computed_status() is F.returned


def test_refresh_status_answers_the_previous_status_only_on_a_change() -> None:
    o = order(1)
    assert o.refresh_status() is None
    ship(o, S.awaiting_shipment, ("1", 1))
    assert o.refresh_status() is F.unfulfilled
    assert o.status is F.dispatched
    assert o.refresh_status() is None


# ------------------------------------------------------------------------------------ fulfilling allowed


@pytest.mark.parametrize(("stage", "words"), [
    (Stage.placed, "approve it before fulfilling"),
    (Stage.confirmed, "approve it before fulfilling"),
    (Stage.on_hold, "on hold"),
    (Stage.cancelled, "will not be fulfilled"),
    (Stage.rejected, "will not be fulfilled"),
    (Stage.abandoned, "will not be fulfilled"),
    (Stage.archived, "archived"),
])
def test_fulfilling_is_refused_outside_the_fulfillable_stages_with_the_reason(stage: Stage, words: str) -> None:
    o = order(1, stage=stage)
    assert words in (o.why_not_fulfill() or "")
    with pytest.raises(domain.Refused) as exc:
        o.check_fulfill([("1", 1)])
    assert exc.value.conflict and exc.value.field == "order_stage"


@pytest.mark.parametrize("stage", [Stage.approved, Stage.processed, Stage.shipped, Stage.delivered])
def test_fulfilling_is_allowed_from_approved(stage: Stage) -> None:
    assert order(1, stage=stage).can_fulfill


def test_out_of_stock_orders_cannot_be_fulfilled_until_reserved() -> None:
    o = order(1, reservation="out_of_stock")
    assert "out of stock" in (o.why_not_fulfill() or "")


def test_never_more_than_what_remains_unfulfilled_per_line() -> None:
    o = order(3, 1)
    ship(o, S.awaiting_shipment, ("1", 2))
    with pytest.raises(domain.Refused) as exc:
        o.check_fulfill([("1", 1), ("SKU1", 1)])  # the same line twice, by id and by SKU
    assert exc.value.field == "lines[0].quantity" and not exc.value.conflict
    assert o.check_fulfill([("SKU1", 1)]) == [domain.ShipmentLine("1", "SKU1", 1)]
    ship(o, S.shipped, ("1", 1), ("2", 1))
    assert "already in a shipment" in (o.why_not_fulfill() or "")


def test_lines_are_named_by_id_or_unique_sku() -> None:
    o = order(1, 1)
    assert o.line("2").sku == "SKU2"
    assert o.line("SKU1").line_id == "1"
    with pytest.raises(domain.Refused) as exc:
        o.line("NOPE")
    assert exc.value.code == "unknown_line"
    twin = domain.FulfillmentOrder(order_id="o", number=1, test=False, stage=Stage.approved, currency="EUR", lines=(
        domain.OrderLine("1", "A", "a", 1, Decimal(1), Decimal(1)),
        domain.OrderLine("2", "A", "a", 1, Decimal(1), Decimal(1))))
    with pytest.raises(domain.Refused) as exc:
        twin.line("A")
    assert exc.value.code == "ambiguous_line"


def test_only_delivered_units_not_yet_returned_can_come_back() -> None:
    o = order(3)
    ship(o, S.delivered, ("1", 1))
    ship(o, S.canceled, ("1", 1))
    ship(o, S.delivery_failed, ("1", 1))
    assert o.check_return([("1", 1, True, "main")]) == [domain.ReturnLine("1", "SKU1", 1, True, "main")]
    with pytest.raises(domain.Refused) as exc:
        o.check_return([("1", 2, False, "main")])
    assert exc.value.code == "more_than_returnable"
    give_back(o, ("1", 1))
    with pytest.raises(domain.Refused):
        o.check_return([("1", 1, False, "main")])


# ------------------------------------------------------------------------------------ shipment moves


def test_shipments_move_only_forward_and_late_updates_do_not_apply() -> None:
    o = order(1)
    s = ship(o, S.delivered, ("1", 1))
    assert not domain.tracking_applies(S.delivered, S.in_transit)
    assert not domain.tracking_applies(S.in_transit, S.in_transit)  # a duplicate
    assert domain.tracking_applies(S.shipped, S.delivered)  # skipping ahead
    with pytest.raises(domain.Refused) as exc:
        domain.check_move(s, S.in_transit)
    assert exc.value.field == "status"
    with pytest.raises(domain.Refused):
        domain.check_cancel(s)


def test_carrier_shipments_refuse_manual_edits_naming_the_field() -> None:
    o = order(1)
    s = ship(o, S.awaiting_shipment, ("1", 1), kind=ShipmentKind.carrier)
    with pytest.raises(domain.Refused) as exc:
        domain.check_manual_edit(s, "tracking_number")
    assert exc.value.field == "tracking_number" and exc.value.conflict


def test_out_for_delivery_cannot_be_cancelled() -> None:
    o = order(1)
    with pytest.raises(domain.Refused):
        domain.check_cancel(ship(o, S.out_for_delivery, ("1", 1)))
    domain.check_cancel(ship(o, S.in_transit, ("1", 1)))


# ------------------------------------------------------------------------------------ stock


def test_allocation_takes_main_first_then_other_locations_by_name() -> None:
    plan = domain.allocate([domain.Need("1", "A", 5)], {("A", "b-shop"): 2, ("A", "a-store"): 2, ("A", "main"): 2})
    assert plan.ok
    assert [(a.location, a.quantity) for a in plan.allocations] == [("main", 2), ("a-store", 2), ("b-shop", 1)]


def test_allocation_is_all_or_nothing_and_names_every_short_line() -> None:
    plan = domain.allocate([domain.Need("1", "A", 1), domain.Need("2", "B", 3)], {("A", "main"): 5, ("B", "main"): 2})
    assert not plan.ok and plan.allocations == ()
    assert plan.shortages == (domain.Shortage("2", "B", 3, 2),)


def test_two_lines_of_one_sku_never_count_a_unit_twice() -> None:
    plan = domain.allocate([domain.Need("1", "A", 1), domain.Need("2", "A", 1)], {("A", "main"): 1})
    assert not plan.ok and plan.shortages == (domain.Shortage("2", "A", 1, 0),)


def test_consumption_takes_the_lines_reservations_ship_from_location_first() -> None:
    taken = domain.consume({("1", "main"): 2, ("1", "east"): 1, ("2", "main"): 1}, [("1", "A", 2)], "east")
    assert taken == [("1", "A", "east", 1), ("1", "A", "main", 1)]
    assert domain.consume({}, [("1", "A", 2)], "main") == []  # nothing reserved (untracked): nothing taken


def test_drift_lists_levels_whose_reserved_differs_from_the_reservations() -> None:
    assert domain.drift({("A", "main"): 3, ("B", "main"): 1}, {("A", "main"): 2, ("B", "main"): 1}) == [
        ("A", "main", 3, 2)]
    assert domain.drift({("A", "main"): 0}, {("A", "x"): 1}) == [("A", "x", 0, 1)]
