"""Returned units and the refund they call for (issue #11): fulfillment reports units the customer sent back
(``fulfillment.return_recorded.v1``); payments remember them per order line and offer the ones not yet refunded
in the refund preview (``from_returns``: refund exactly those).

Pure: the returned units come from the store, the refunded ones from the ledger.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from services.payments.domain.ledger import Ledger, PaymentOrder


@dataclass(frozen=True)
class ReturnedLine:
    """One order line's returns: units ordered, returned, refunded (for any reason) and returned but not yet
    refunded (``returned - refunded``, never below 0)."""

    line_id: str
    sku: str
    ordered: int
    returned: int
    refunded: int

    @property
    def returned_not_refunded(self) -> int:
        return max(0, self.returned - self.refunded)


def returned_lines(order: PaymentOrder, ledger: Ledger, returned: Mapping[str, int]) -> list[ReturnedLine]:
    """Every line with units returned, in the order's line order."""
    refunded = ledger.refunded_lines()
    return [
        ReturnedLine(line.line_id, line.sku, line.quantity, returned[line.line_id],
                     refunded[line.line_id].quantity if line.line_id in refunded else 0)
        for line in order.lines
        if returned.get(line.line_id, 0) > 0
    ]


def refund_from_returns(order: PaymentOrder, ledger: Ledger, returned: Mapping[str, int]) -> dict[str, int]:
    """The refund's units per line: every returned unit not refunded yet."""
    return {r.line_id: r.returned_not_refunded for r in returned_lines(order, ledger, returned)
            if r.returned_not_refunded > 0}
