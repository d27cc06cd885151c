"""An order as fulfillment knows it: its lines, shipments and returns, the quantities per line that follow, the
fulfillment status those quantities give (``FULFILLMENT_RULES``), and what staff may do now.

Pure Python: the store loads an :class:`FulfillmentOrder`, the use cases ask it questions and record what was
decided, the store saves it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from services.fulfillment.contracts.vocabulary import (
    FULFILLMENT_RULES,
    HANDED_OVER,
    SHIPMENT_RANK,
    SHIPMENT_TRANSITIONS,
    FulfillmentRule,
    FulfillmentStatus,
    Level,
    ShipmentKind,
    ShipmentStatus,
    ShippingPoint,
)
from services.orders.contracts.schemas import Stage

S = ShipmentStatus

CLOSED_STAGES: frozenset[Stage] = frozenset({Stage.cancelled, Stage.rejected, Stage.abandoned})
"""The order will never be fulfilled: reservations go back, open shipments are cancelled."""

FULFILLABLE_STAGES: frozenset[Stage] = frozenset({Stage.approved, Stage.processed, Stage.shipped, Stage.delivered})
"""Stages in which units may be packed and shipped (shipped/delivered: re-shipping after a failed delivery)."""

PACKABLE_STAGES: frozenset[Stage] = frozenset({Stage.approved, Stage.processed})


class Refused(Exception):
    """A rule says no. ``field`` names what the request got wrong; ``code`` is a stable slug; ``conflict``: the
    state of the order forbids it (409), otherwise the request itself is wrong (422)."""

    def __init__(self, message: str, *, field: str | None = None, code: str = "refused",
                 conflict: bool = True) -> None:
        super().__init__(message)
        self.field = field
        self.code = code
        self.conflict = conflict


@dataclass(frozen=True)
class OrderLine:
    line_id: str  # "1", "2", ... the position in the order as placed
    sku: str
    name: str
    quantity: int
    unit_price: Decimal
    line_total: Decimal


@dataclass
class ShipmentLine:
    line_id: str
    sku: str
    quantity: int


@dataclass(frozen=True)
class Consumed:
    """Units a handed-over shipment took from stock at a location (put back if the parcel comes back)."""

    line_id: str
    sku: str
    location: str
    quantity: int


@dataclass
class Shipment:
    id: str
    order_id: str
    rank: int
    number: str
    kind: ShipmentKind
    shipping_point: ShippingPoint
    status: ShipmentStatus
    location: str
    lines: list[ShipmentLine]
    created_at: datetime
    updated_at: datetime
    carrier: str | None = None
    service: str | None = None
    tracking_number: str | None = None
    tracking_url: str | None = None
    expected_delivery: date | None = None
    label_id: str | None = None
    label_cost: Decimal | None = None
    label_currency: str | None = None
    consumed: list[Consumed] = field(default_factory=list)

    @property
    def units(self) -> int:
        return sum(ln.quantity for ln in self.lines)

    @property
    def handed_over(self) -> bool:
        return self.status in HANDED_OVER

    def allowed_moves(self) -> list[ShipmentStatus]:
        return [s for s in ShipmentStatus if s in SHIPMENT_TRANSITIONS[self.status]]


@dataclass(frozen=True)
class ReturnLine:
    line_id: str
    sku: str
    quantity: int
    restock: bool
    location: str


@dataclass(frozen=True)
class OrderReturn:
    id: str
    lines: tuple[ReturnLine, ...]
    reason: str | None
    actor: dict[str, Any]
    at: datetime


@dataclass(frozen=True)
class LineCounts:
    line: OrderLine
    in_open_shipments: int
    handed_over: int
    delivered: int
    returned: int

    @property
    def ordered(self) -> int:
        return self.line.quantity

    @property
    def unfulfilled(self) -> int:
        return max(0, self.ordered - self.in_open_shipments - self.handed_over)

    @property
    def returnable(self) -> int:
        return max(0, self.delivered - self.returned)


@dataclass(frozen=True)
class Facts:
    """What ``FULFILLMENT_RULES`` look at, for the whole order."""

    ordered: int
    handed_over: int
    delivered: int
    returned: int
    packed: bool
    pickup_only: bool
    order_cancelled: bool


def level(count: int, total: int) -> Level:
    if count <= 0:
        return "none"
    if count >= total:
        return "all"
    return "some"


def rule_holds(rule: FulfillmentRule, f: Facts) -> bool:
    checks: list[tuple[Any, Any]] = [
        (rule.order_cancelled, f.order_cancelled),
        (rule.packed, f.packed),
        (rule.pickup_only, f.pickup_only),
    ]
    if any(want is not None and want != have for want, have in checks):
        return False
    levels = ((rule.returned, f.returned), (rule.delivered, f.delivered), (rule.handed_over, f.handed_over))
    return all(want == "any" or want == level(count, f.ordered) for want, count in levels)


def evaluate(f: Facts) -> tuple[FulfillmentStatus, FulfillmentRule]:
    """The first row of ``FULFILLMENT_RULES`` that holds (the last always does)."""
    for rule in FULFILLMENT_RULES:
        if rule_holds(rule, f):
            return rule.status, rule
    raise AssertionError("the last fulfillment rule always holds")  # pragma: no cover - _check_tables


@dataclass
class FulfillmentOrder:
    """The aggregate: one order's fulfillment."""

    order_id: str
    number: int
    test: bool
    stage: Stage
    currency: str
    lines: tuple[OrderLine, ...]
    status: FulfillmentStatus = FulfillmentStatus.unfulfilled
    packed: bool = False
    reservation: str = "not_tracked"  # reserved | out_of_stock | released | consumed | not_tracked
    shipments: list[Shipment] = field(default_factory=list)
    returns: list[OrderReturn] = field(default_factory=list)
    reserved: dict[str, int] = field(default_factory=dict)  # line id -> units reserved now
    tracked_skus: frozenset[str] = frozenset()

    # ----------------------------------------------------------------------------------- quantities
    def line(self, ref: str) -> OrderLine:
        """A line by id ("2") or by SKU (when the SKU is on one line only)."""
        ref = ref.strip()
        for ln in self.lines:
            if ln.line_id == ref:
                return ln
        by_sku = [ln for ln in self.lines if ln.sku == ref]
        if len(by_sku) == 1:
            return by_sku[0]
        if by_sku:
            raise Refused(f"SKU {ref} is on several lines of order #{self.number}: name the line id "
                          f"({', '.join(ln.line_id for ln in by_sku)}).", field="line", code="ambiguous_line",
                          conflict=False)
        raise Refused(f"Order #{self.number} has no line {ref!r} (lines: "
                      f"{', '.join(f'{ln.line_id}={ln.sku}' for ln in self.lines)}).", field="line",
                      code="unknown_line", conflict=False)

    def counts(self) -> list[LineCounts]:
        out = []
        for ln in self.lines:
            open_, handed, delivered = 0, 0, 0
            for s in self.shipments:
                q = sum(sl.quantity for sl in s.lines if sl.line_id == ln.line_id)
                if s.status is S.awaiting_shipment:
                    open_ += q
                if s.status in HANDED_OVER:
                    handed += q
                if s.status is S.delivered:
                    delivered += q
            returned = sum(rl.quantity for r in self.returns for rl in r.lines if rl.line_id == ln.line_id)
            out.append(LineCounts(ln, open_, handed, delivered, returned))
        return out

    def counts_of(self, line_id: str) -> LineCounts:
        return next(c for c in self.counts() if c.line.line_id == line_id)

    def facts(self) -> Facts:
        counts = self.counts()
        delivered = sum(c.delivered for c in counts)
        pickup_delivered = sum(
            sl.quantity for s in self.shipments if s.status is S.delivered
            and s.shipping_point is ShippingPoint.pickup for sl in s.lines)
        return Facts(
            ordered=sum(c.ordered for c in counts),
            handed_over=sum(c.handed_over for c in counts),
            delivered=delivered,
            returned=sum(c.returned for c in counts),
            packed=self.packed or any(s.status is S.awaiting_shipment for s in self.shipments),
            pickup_only=delivered > 0 and pickup_delivered == delivered,
            order_cancelled=self.stage in CLOSED_STAGES,
        )

    def computed_status(self) -> FulfillmentStatus:
        return evaluate(self.facts())[0]

    def refresh_status(self) -> FulfillmentStatus | None:
        """Recompute; the previous status if it changed (the caller announces it), else None."""
        new = self.computed_status()
        if new is self.status:
            return None
        previous, self.status = self.status, new
        return previous

    # ----------------------------------------------------------------------------------- what is allowed
    def why_not_fulfill(self) -> str | None:
        """Why no shipment may be created now, in the merchant's words; None when it may."""
        n, stage = self.number, self.stage
        if stage in CLOSED_STAGES:
            return f"Order #{n} is {stage.value}: it will not be fulfilled."
        if stage is Stage.on_hold:
            return f"Order #{n} is on hold: resume it before fulfilling."
        if stage not in FULFILLABLE_STAGES:
            if stage is Stage.archived:
                return f"Order #{n} is archived."
            if stage is Stage.returned:
                return f"Order #{n} was returned."
            return f"Order #{n} is {stage.value}: approve it before fulfilling."
        if self.reservation == "out_of_stock":
            return f"Order #{n} is out of stock: restock, then retry the reservation."
        if not any(c.unfulfilled for c in self.counts()):
            return f"Every unit of order #{n} is already in a shipment."
        return None

    @property
    def can_fulfill(self) -> bool:
        return self.why_not_fulfill() is None

    def check_fulfill(self, wanted: Sequence[tuple[str, int]]) -> list[ShipmentLine]:
        """The shipment lines for ``wanted`` ((line ref, units); empty: every unit still unfulfilled), or
        Refused: not allowed now, an unknown line, or more units than remain unfulfilled on a line."""
        why = self.why_not_fulfill()
        if why is not None:
            raise Refused(why, field="order_stage" if self.stage not in FULFILLABLE_STAGES else "lines",
                          code="cannot_fulfill")
        counts = {c.line.line_id: c for c in self.counts()}
        if not wanted:
            return [ShipmentLine(c.line.line_id, c.line.sku, c.unfulfilled) for c in counts.values() if c.unfulfilled]
        asked: dict[str, int] = {}
        for ref, quantity in wanted:
            ln = self.line(ref)
            asked[ln.line_id] = asked.get(ln.line_id, 0) + quantity
        out = []
        for i, (line_id, quantity) in enumerate(asked.items()):
            c = counts[line_id]
            if quantity > c.unfulfilled:
                raise Refused(f"Line {line_id} ({c.line.sku}) of order #{self.number} has {c.unfulfilled} unit(s) "
                              f"left to fulfill; {quantity} asked.", field=f"lines[{i}].quantity",
                              code="more_than_unfulfilled", conflict=False)
            out.append(ShipmentLine(line_id, c.line.sku, quantity))
        return out

    def check_return(self, wanted: Sequence[tuple[str, int, bool, str]]) -> list[ReturnLine]:
        """Return lines for ``wanted`` ((line ref, units, restock, location)): only units delivered and not yet
        returned may come back."""
        counts = {c.line.line_id: c for c in self.counts()}
        out: list[ReturnLine] = []
        asked: dict[str, int] = {}
        for i, (ref, quantity, restock, location) in enumerate(wanted):
            ln = self.line(ref)
            asked[ln.line_id] = asked.get(ln.line_id, 0) + quantity
            c = counts[ln.line_id]
            if asked[ln.line_id] > c.returnable:
                raise Refused(f"Line {ln.line_id} ({ln.sku}) of order #{self.number} has {c.returnable} delivered "
                              f"unit(s) not yet returned; {asked[ln.line_id]} asked.",
                              field=f"lines[{i}].quantity", code="more_than_returnable", conflict=False)
            out.append(ReturnLine(ln.line_id, ln.sku, quantity, restock, location))
        return out

    def shipment(self, shipment_id: str) -> Shipment:
        return next(s for s in self.shipments if s.id == shipment_id)

    def next_rank(self) -> int:
        return max((s.rank for s in self.shipments), default=0) + 1


def is_forward(current: ShipmentStatus, new: ShipmentStatus) -> bool:
    """Whether a shipment at ``current`` may move to ``new`` (forward only, per ``SHIPMENT_TRANSITIONS``)."""
    return new in SHIPMENT_TRANSITIONS[current]


def tracking_applies(current: ShipmentStatus, new: ShipmentStatus) -> bool:
    """A carrier's update moves the shipment only forward; a late or duplicated one (rank not higher, or not a
    transition) is recorded and changes nothing."""
    return SHIPMENT_RANK[new] > SHIPMENT_RANK[current] and is_forward(current, new)


def check_manual_edit(s: Shipment, field_name: str) -> None:
    """Carrier shipments move only by the carrier's tracking: staff may not edit them or move them by hand."""
    if s.kind is ShipmentKind.carrier:
        raise Refused(f"Shipment {s.number} was bought from a carrier: only the carrier's tracking changes it "
                      f"({field_name} cannot be edited).", field=field_name, code="carrier_shipment")


def check_move(s: Shipment, new: ShipmentStatus, field_name: str = "status") -> None:
    if new is s.status:
        return
    if not is_forward(s.status, new):
        allowed = ", ".join(m.value for m in s.allowed_moves()) or "none"
        raise Refused(f"Shipment {s.number} is {s.status.value}; it cannot move to {new.value} (allowed: "
                      f"{allowed}).", field=field_name, code="illegal_shipment_move")


def check_cancel(s: Shipment) -> None:
    if not is_forward(s.status, S.canceled):
        raise Refused(f"Shipment {s.number} is {s.status.value}: it can no longer be cancelled.", field="status",
                      code="not_cancellable")



def line_units(lines: Iterable[ShipmentLine | ReturnLine]) -> dict[str, int]:
    out: dict[str, int] = {}
    for ln in lines:
        out[ln.line_id] = out.get(ln.line_id, 0) + ln.quantity
    return out
