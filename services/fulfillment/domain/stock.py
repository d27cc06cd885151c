"""Stock allocation: which locations an order's stock-tracked units are reserved at, all or nothing.

Pure: it reads the levels the store locked (``available`` per SKU per location) and answers a plan; the store
applies the plan with conditional updates (``on_hand - reserved >= q``) so the database has the last word.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from services.fulfillment.contracts.schemas import DEFAULT_LOCATION


@dataclass(frozen=True)
class Need:
    """Units of one order line to reserve."""

    line_id: str
    sku: str
    quantity: int


@dataclass(frozen=True)
class Allocation:
    line_id: str
    sku: str
    location: str
    quantity: int


@dataclass(frozen=True)
class Shortage:
    line_id: str
    sku: str
    requested: int
    available: int


@dataclass(frozen=True)
class Plan:
    """Either every tracked unit is allocated (``shortages`` empty) or nothing is (``allocations`` empty)."""

    allocations: tuple[Allocation, ...]
    shortages: tuple[Shortage, ...]

    @property
    def ok(self) -> bool:
        return not self.shortages


def location_order(locations: Sequence[str]) -> list[str]:
    """Where units are taken from first: ``main``, then the other locations by name."""
    return sorted(set(locations), key=lambda name: (name != DEFAULT_LOCATION, name))


def allocate(needs: Sequence[Need], available: Mapping[tuple[str, str], int]) -> Plan:
    """Reserve every need greedily by location (``main`` first), all or nothing.

    ``available`` maps (sku, location) to the units not yet reserved. Two lines of the same SKU draw from the
    same levels, so the plan never counts a unit twice. Needs of SKUs with no level at all are untracked and
    must not be passed here.
    """
    left = {k: max(0, v) for k, v in available.items()}
    allocations: list[Allocation] = []
    shortages: list[Shortage] = []
    for need in needs:
        locations = location_order([loc for (sku, loc) in left if sku == need.sku])
        total = sum(left[(need.sku, loc)] for loc in locations)
        if total < need.quantity:
            shortages.append(Shortage(need.line_id, need.sku, need.quantity, total))
            continue
        wanted = need.quantity
        for loc in locations:
            take = min(wanted, left[(need.sku, loc)])
            if take:
                allocations.append(Allocation(need.line_id, need.sku, loc, take))
                left[(need.sku, loc)] -= take
                wanted -= take
            if not wanted:
                break
    if shortages:
        return Plan((), tuple(shortages))
    return Plan(tuple(allocations), ())


def drift(recorded: Mapping[tuple[str, str], int], reservations: Mapping[tuple[str, str], int]
          ) -> list[tuple[str, str, int, int]]:
    """Reconciliation: (sku, location, recorded reserved, sum of reservations) where the two differ."""
    keys = sorted(set(recorded) | set(reservations))
    return [(sku, loc, recorded.get((sku, loc), 0), reservations.get((sku, loc), 0)) for sku, loc in keys
            if recorded.get((sku, loc), 0) != reservations.get((sku, loc), 0)]


def consume(reservations: Mapping[tuple[str, str], int], lines: Sequence[tuple[str, str, int]], ship_from: str
            ) -> list[tuple[str, str, str, int]]:
    """What a hand-over takes out of stock: for each (line id, sku, units) of the shipment, the order's units
    reserved for that line, from the ship-from location first, then ``main``, then by name. Units that were
    never reserved (an untracked SKU, or stock counted after the order was placed) take nothing.

    ``reservations`` maps (line id, location) to units reserved. Answers (line id, sku, location, units)."""
    left = dict(reservations)
    out: list[tuple[str, str, str, int]] = []
    for line_id, sku, units in lines:
        locations = [loc for (lid, loc) in left if lid == line_id]
        ordered = sorted(set(locations), key=lambda loc: (loc != ship_from, loc != DEFAULT_LOCATION, loc))
        wanted = units
        for loc in ordered:
            take = min(wanted, left[(line_id, loc)])
            if take > 0:
                out.append((line_id, sku, loc, take))
                left[(line_id, loc)] -= take
                wanted -= take
            if not wanted:
                break
    return out
