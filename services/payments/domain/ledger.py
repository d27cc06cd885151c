"""The money rules of an order's payments: statuses from amounts, the ledger, refunds. Pure functions and
immutable values.

Nothing here does I/O: no database, no AMQP, no HTTP, no clock. The service layer loads an order and its
ledger, calls these functions, and persists what they return. Keeping the money rules pure means they can
be tested exhaustively (including property tests) and that the same rules run in previews and in commits,
so a refund preview shown to staff is exactly what will be refunded.

Rules that shape everything below:

* Money is ``Decimal`` with an ISO 4217 currency code. Floats are rejected everywhere with ``TypeError``,
  because ``0.1 + 0.2 != 0.3`` is not an acceptable property for a refund.
* Amounts are exact in the currency's minor unit (2 decimals by default, JPY 0, KWD/BHD/OMR 3). Input with
  more precision is *rejected*, not rounded: silently rounding a typed-in refund would move money nobody
  asked to move. Rounding only happens where the rules below define it (allocations).
* The payment status is never stored on its own: it is computed from the ledger amounts with
  :data:`STATUS_TABLE`, so it cannot disagree with the money.
* The ledger records facts (money that moved). An entry that breaks an invariant is still a fact, so it is
  recorded *and* reported as a :class:`Violation`; the service puts the order on hold. Nothing inconsistent
  is accepted silently.

Statuses: ``unpaid``, ``in_progress``, ``partially_paid``, ``paid``, ``partially_refunded``, ``refunded``.
No ``failed`` or ``voided`` status is needed: a declined card or a voided authorization moves no money,
so the order is simply still ``unpaid`` (or ``partially_paid``) and the customer may pay again; the
attempt itself stays visible in the ledger as a ``failed`` / ``voided`` entry.
"""

from __future__ import annotations

import enum
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal, localcontext
from typing import Any

from services.payments.contracts.vocabulary import MANUAL_METHODS, PaymentMethod, PaymentStatus
from shared.errors import describe, field_error
from shared.money import (
    ZERO,
    MoneyError,
    allocate_proportionally,
    normalize_currency,
    parse_amount,
    quantize,
    to_decimal,
)

# ---------------------------------------------------------------------------------------------------------
# Statuses
# ---------------------------------------------------------------------------------------------------------


class CaptureLevel(str, enum.Enum):
    """How much of the order total has been received (captured or recorded manually)."""

    NONE = "none"  # nothing received and something is due
    PARTIAL = "partial"  # 0 < received < total
    FULL = "full"  # received >= total (over-payment included; see overpaid_amount)


class RefundLevel(str, enum.Enum):
    """How much of what was received has been given back."""

    NONE = "none"  # nothing refunded
    EXCESS_ONLY = "excess_only"  # only an over-payment was returned: the order is still fully paid
    PARTIAL = "partial"  # some of the order's value was returned
    FULL = "full"  # everything received was returned


#: Which status follows from the amounts: (capture level, refund level, a payment is in progress) -> status.
#: Kept as data so that the whole rule set can be read (and tested) at a glance. Combinations not listed
#: cannot happen (nothing can be refunded before something is received; only an over-paid order can have
#: an "excess only" refund). A payment in progress only matters while money is still due: once the order
#: is paid, a further authorization would only be an over-payment, and once refunds started, the refund
#: status is what staff act on.
STATUS_TABLE: Mapping[tuple[CaptureLevel, RefundLevel, bool], PaymentStatus] = {
    (CaptureLevel.NONE, RefundLevel.NONE, False): PaymentStatus.UNPAID,
    (CaptureLevel.NONE, RefundLevel.NONE, True): PaymentStatus.IN_PROGRESS,
    (CaptureLevel.PARTIAL, RefundLevel.NONE, False): PaymentStatus.PARTIALLY_PAID,
    # The rest is on its way (e.g. a second card payment awaiting capture): do not chase the customer.
    (CaptureLevel.PARTIAL, RefundLevel.NONE, True): PaymentStatus.IN_PROGRESS,
    (CaptureLevel.PARTIAL, RefundLevel.PARTIAL, False): PaymentStatus.PARTIALLY_REFUNDED,
    (CaptureLevel.PARTIAL, RefundLevel.PARTIAL, True): PaymentStatus.PARTIALLY_REFUNDED,
    (CaptureLevel.PARTIAL, RefundLevel.FULL, False): PaymentStatus.REFUNDED,
    (CaptureLevel.PARTIAL, RefundLevel.FULL, True): PaymentStatus.REFUNDED,
    (CaptureLevel.FULL, RefundLevel.NONE, False): PaymentStatus.PAID,
    (CaptureLevel.FULL, RefundLevel.NONE, True): PaymentStatus.PAID,
    # Returning a double payment is not a refund of the order: goods are still paid for in full.
    (CaptureLevel.FULL, RefundLevel.EXCESS_ONLY, False): PaymentStatus.PAID,
    (CaptureLevel.FULL, RefundLevel.EXCESS_ONLY, True): PaymentStatus.PAID,
    (CaptureLevel.FULL, RefundLevel.PARTIAL, False): PaymentStatus.PARTIALLY_REFUNDED,
    (CaptureLevel.FULL, RefundLevel.PARTIAL, True): PaymentStatus.PARTIALLY_REFUNDED,
    (CaptureLevel.FULL, RefundLevel.FULL, False): PaymentStatus.REFUNDED,
    (CaptureLevel.FULL, RefundLevel.FULL, True): PaymentStatus.REFUNDED,
}


def _non_negative(value: object, name: str) -> Decimal:
    amount = to_decimal(value, field=name)
    if amount < 0:
        raise MoneyError(f"{name} must not be negative, got {amount}")
    return amount


def capture_level(order_total: Decimal, captured: Decimal) -> CaptureLevel:
    """Bucket the received amount against the total. A zero-total order counts as fully paid."""
    total = _non_negative(order_total, "order_total")
    got = _non_negative(captured, "captured")
    if got >= total:
        return CaptureLevel.FULL
    if got == ZERO:
        return CaptureLevel.NONE
    return CaptureLevel.PARTIAL


def refund_level(order_total: Decimal, captured: Decimal, refunded: Decimal) -> RefundLevel:
    """Bucket the refunded amount; ``refunded > captured`` is a broken ledger and raises."""
    total = _non_negative(order_total, "order_total")
    got = _non_negative(captured, "captured")
    back = _non_negative(refunded, "refunded")
    if back > got:
        raise MoneyError(f"refunded {back} exceeds captured {got}: the ledger is inconsistent")
    if back == ZERO:
        return RefundLevel.NONE
    if back == got:
        return RefundLevel.FULL
    if got - back >= total:
        return RefundLevel.EXCESS_ONLY
    return RefundLevel.PARTIAL


def compute_status(
    order_total: Decimal, captured: Decimal, refunded: Decimal, in_progress: bool = False
) -> PaymentStatus:
    """The order's payment status, derived from money only (see :data:`STATUS_TABLE`).

    ``captured`` is all money received (card captures and manual receipts), ``refunded`` all money given
    back, ``in_progress`` whether a payment is authorized/awaiting the provider but not captured yet.
    """
    key = (
        capture_level(order_total, captured),
        refund_level(order_total, captured, refunded),
        bool(in_progress),
    )
    return STATUS_TABLE[key]


def overpaid_amount(order_total: Decimal, captured: Decimal, refunded: Decimal = ZERO) -> Decimal:
    """Money held beyond the order total (e.g. a customer paid twice); zero when not over-paid."""
    total = _non_negative(order_total, "order_total")
    net = _non_negative(captured, "captured") - _non_negative(refunded, "refunded")
    return max(ZERO, net - total)


# ---------------------------------------------------------------------------------------------------------
# Payment methods
# ---------------------------------------------------------------------------------------------------------


def is_manual(method: PaymentMethod | str) -> bool:
    """True when no provider is involved: money is recorded by staff (``manual_received`` entries)."""
    return PaymentMethod(method) in MANUAL_METHODS


# ---------------------------------------------------------------------------------------------------------
# Order as seen by payments
# ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class OrderLine:
    """One order line: ``quantity`` units at ``unit_price``, minus a line ``discount``, plus line ``tax``.

    ``discount`` and ``tax`` are totals for the line (not per unit), in the order currency.
    """

    line_id: str
    sku: str
    quantity: int
    unit_price: Decimal
    discount: Decimal = ZERO
    tax: Decimal = ZERO
    name: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        if isinstance(self.quantity, bool) or not isinstance(self.quantity, int) or self.quantity < 0:
            raise MoneyError(f"line {self.line_id}: quantity must be a non-negative int")
        for name in ("unit_price", "discount", "tax"):
            object.__setattr__(self, name, _non_negative(getattr(self, name), f"line {self.line_id} {name}"))

    @property
    def net(self) -> Decimal:
        """Unit price x quantity minus the line discount: the weight for order-level allocations."""
        return self.unit_price * self.quantity - self.discount


def line_totals(
    lines: Sequence[OrderLine],
    currency: str,
    order_discount: Decimal = ZERO,
    order_tax: Decimal = ZERO,
) -> dict[str, Decimal]:
    """What the customer pays for each line, with order-level discount and tax allocated.

    Order-level ``order_discount`` and ``order_tax`` are spread over the lines proportionally to each
    line's :attr:`OrderLine.net` with :func:`allocate_proportionally`, so the line totals always add up
    to the order's goods total exactly, to the minor unit.
    """
    nets = [parse_amount(quantize(line.net, currency), currency) for line in lines]
    discounts = allocate_proportionally(_non_negative(order_discount, "order_discount"), nets, currency)
    taxes = allocate_proportionally(_non_negative(order_tax, "order_tax"), nets, currency)
    result: dict[str, Decimal] = {}
    for line, net, disc, tax in zip(lines, nets, discounts, taxes, strict=True):
        if line.line_id in result:
            raise MoneyError(f"duplicate line id {line.line_id!r}")
        total = parse_amount(net - disc + line.tax + tax, currency, field=f"line {line.line_id} total")
        if total < 0:
            raise MoneyError(f"line {line.line_id}: discounts exceed the line amount")
        result[line.line_id] = total
    return result


@dataclass(frozen=True)
class PaymentOrder:
    """The slice of an order that payments needs. ``total``, when given, is checked against the parts."""

    order_id: str
    currency: str
    lines: tuple[OrderLine, ...]
    shipping: Decimal = ZERO
    discount: Decimal = ZERO
    tax: Decimal = ZERO
    total: Decimal | None = None

    def __post_init__(self) -> None:
        currency = normalize_currency(self.currency)
        object.__setattr__(self, "currency", currency)
        object.__setattr__(self, "lines", tuple(self.lines))
        object.__setattr__(self, "shipping", parse_amount(self.shipping, currency, field="shipping"))
        if self.shipping < 0:
            raise MoneyError("shipping must not be negative")
        if self.total is not None:
            object.__setattr__(self, "total", parse_amount(self.total, currency, field="total"))

    def line_totals(self) -> dict[str, Decimal]:
        return line_totals(self.lines, self.currency, self.discount, self.tax)

    @property
    def computed_total(self) -> Decimal:
        """Sum of line totals plus shipping: the amount the payments side expects to receive."""
        return sum(self.line_totals().values(), ZERO) + self.shipping

    @property
    def amount_due(self) -> Decimal:
        return self.total if self.total is not None else self.computed_total

    def preview_refund(self, ledger: Ledger, request: RefundRequest) -> RefundPreview:
        return preview_refund(
            self.lines, self.shipping, ledger, request, order_discount=self.discount, order_tax=self.tax
        )


# ---------------------------------------------------------------------------------------------------------
# Ledger
# ---------------------------------------------------------------------------------------------------------


class EntryKind(str, enum.Enum):
    """Kinds of money movement. Only captured/manual_received bring money in, refunded/manual_refund
    give it back; authorized/voided/failed are recorded for audit and for the ``in_progress`` status."""

    AUTHORIZED = "authorized"
    CAPTURED = "captured"
    REFUNDED = "refunded"
    VOIDED = "voided"
    FAILED = "failed"
    MANUAL_RECEIVED = "manual_received"
    MANUAL_REFUND = "manual_refund"


MONEY_IN: frozenset[EntryKind] = frozenset({EntryKind.CAPTURED, EntryKind.MANUAL_RECEIVED})
MONEY_OUT: frozenset[EntryKind] = frozenset({EntryKind.REFUNDED, EntryKind.MANUAL_REFUND})


@dataclass(frozen=True)
class LineAllocation:
    """Part of an entry attributed to one order line: units and money (used by refunds and captures)."""

    quantity: int
    amount: Decimal

    def __post_init__(self) -> None:
        if isinstance(self.quantity, bool) or not isinstance(self.quantity, int) or self.quantity < 0:
            raise MoneyError("allocation quantity must be a non-negative int")
        object.__setattr__(self, "amount", _non_negative(self.amount, "allocation amount"))


@dataclass(frozen=True)
class LedgerEntry:
    """One money movement. ``(kind, payment_id, reference)`` identifies it, which makes recording
    idempotent: a duplicated or late provider webhook maps to the same key and changes nothing.

    ``lines``/``shipping``/``adjustment_*`` are the breakdown of a refund (or an itemised capture); all
    entries sharing a refund ``reference`` together must add up to it.
    """

    kind: EntryKind
    amount: Decimal
    currency: str
    payment_id: str
    reference: str
    at: datetime
    lines: Mapping[str, LineAllocation] = field(default_factory=dict)
    shipping: Decimal = ZERO
    adjustment_refund: Decimal = ZERO
    adjustment_fee: Decimal = ZERO
    method: PaymentMethod | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "kind", EntryKind(self.kind))
        currency = normalize_currency(self.currency)
        object.__setattr__(self, "currency", currency)
        amount = parse_amount(self.amount, currency)
        if amount <= 0:
            raise MoneyError(f"{self.kind.value} entry amount must be positive, got {amount}")
        object.__setattr__(self, "amount", amount)
        if not self.payment_id or not self.reference:
            raise MoneyError("ledger entries need a payment_id and a reference")
        lines = dict(self.lines)
        for line_id, alloc in lines.items():
            if not isinstance(alloc, LineAllocation):
                raise TypeError(f"line {line_id}: allocation must be a LineAllocation")
            parse_amount(alloc.amount, currency, field=f"lines.{line_id}")
        object.__setattr__(self, "lines", lines)
        for name in ("shipping", "adjustment_refund", "adjustment_fee"):
            value = parse_amount(getattr(self, name), currency, field=name)
            if value < 0:
                raise MoneyError(f"{name} must not be negative")
            object.__setattr__(self, name, value)
        if self.method is not None:
            object.__setattr__(self, "method", PaymentMethod(self.method))

    @property
    def key(self) -> tuple[EntryKind, str, str]:
        return (self.kind, self.payment_id, self.reference)

    @property
    def has_breakdown(self) -> bool:
        return bool(self.lines) or any(
            v != ZERO for v in (self.shipping, self.adjustment_refund, self.adjustment_fee)
        )


@dataclass(frozen=True)
class Violation:
    """A broken ledger invariant. ``field``/``reason`` match the ``errors`` items of an InvalidRequest."""

    code: str
    reason: str
    field: str = "ledger"
    payment_id: str | None = None
    line_id: str | None = None

    def as_error(self) -> dict[str, str]:
        return {"field": self.field, "reason": self.reason, "code": self.code}


@dataclass(frozen=True)
class LedgerSummary:
    """Totals staff see on the order page. ``captured``/``refunded`` include manual movements."""

    currency: str
    authorized: Decimal
    captured: Decimal
    refunded: Decimal
    voided: Decimal
    failed: Decimal
    pending: Decimal  # authorized, not yet captured or voided: drives ``in_progress``
    net_paid: Decimal
    balance_due: Decimal
    overpaid: Decimal
    status: PaymentStatus

    def as_json(self) -> dict[str, str]:
        # Every figure in the currency's minor unit ("0.00", not "0"): sums of nothing start at 0.
        out = {
            k: str(quantize(getattr(self, k), self.currency))
            for k in (
                "authorized",
                "captured",
                "refunded",
                "voided",
                "failed",
                "pending",
                "net_paid",
                "balance_due",
                "overpaid",
            )
        }
        out["currency"] = self.currency
        out["status"] = self.status.value
        return out


@dataclass(frozen=True)
class LedgerChange:
    """Result of :meth:`Ledger.record`: the new ledger, whether the entry was a duplicate, violations."""

    ledger: Ledger
    duplicate: bool
    violations: list[Violation]


@dataclass(frozen=True)
class Ledger:
    """Per-order, append-only list of money movements in one currency. Immutable: changes return a copy."""

    order_id: str
    currency: str
    entries: tuple[LedgerEntry, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "currency", normalize_currency(self.currency))
        object.__setattr__(self, "entries", tuple(self.entries))

    # -- changes ---------------------------------------------------------------------------------------

    def find(self, key: tuple[EntryKind, str, str]) -> LedgerEntry | None:
        for entry in self.entries:
            if entry.key == key:
                return entry
        return None

    def append(self, entry: LedgerEntry) -> Ledger:
        """Add an entry; an identical entry with the same key is a no-op (duplicate webhook)."""
        existing = self.find(entry.key)
        if existing is not None:
            if existing == entry or _same_movement(existing, entry):
                return self
            raise MoneyError(f"entry {entry.key} conflicts with the recorded one")
        return replace(self, entries=(*self.entries, entry))

    def record(self, entry: LedgerEntry, order: PaymentOrder) -> LedgerChange:
        """Append ``entry`` and check every invariant; the one call the service makes on each change.

        A conflicting duplicate (same key, different amount) is not appended (the first fact stands) and
        is reported. Any other violation is reported with the entry recorded: the money did move, and the
        order must go on hold rather than pretend it did not.
        """
        existing = self.find(entry.key)
        if existing is not None:
            if existing == entry or _same_movement(existing, entry):
                return LedgerChange(self, True, self.check_invariants(order))
            conflict = Violation(
                "conflicting_duplicate",
                f"{entry.kind.value} {entry.reference} for payment {entry.payment_id} was already recorded "
                f"with {existing.amount} {existing.currency}, now reported as {entry.amount} {entry.currency}",
                payment_id=entry.payment_id,
            )
            return LedgerChange(self, False, [conflict, *self.check_invariants(order)])
        new = replace(self, entries=(*self.entries, entry))
        return LedgerChange(new, False, new.check_invariants(order))

    def record_all(self, entries: Sequence[LedgerEntry], order: PaymentOrder) -> LedgerChange:
        """Record several entries as one change (a refund split over payments), checking once at the end.

        A refund drawing on two payments is one decision: checking after the first half would report a
        breakdown mismatch that the second half resolves.
        """
        ledger = self
        problems: list[Violation] = []
        all_duplicates = bool(entries)
        for entry in entries:
            existing = ledger.find(entry.key)
            if existing is not None:
                if not (existing == entry or _same_movement(existing, entry)):
                    problems.extend(
                        v for v in ledger.record(entry, order).violations if v.code == "conflicting_duplicate"
                    )
                    all_duplicates = False
                continue
            all_duplicates = False
            ledger = replace(ledger, entries=(*ledger.entries, entry))
        return LedgerChange(ledger, all_duplicates, [*problems, *ledger.check_invariants(order)])

    # -- totals ----------------------------------------------------------------------------------------

    def _sum(self, kinds: Iterable[EntryKind], payment_id: str | None = None) -> Decimal:
        ks = frozenset(kinds)
        total = sum(
            (
                e.amount
                for e in self.entries
                if e.kind in ks and e.currency == self.currency and payment_id in (None, e.payment_id)
            ),
            ZERO,
        )
        return quantize(total, self.currency)

    @property
    def captured(self) -> Decimal:
        return self._sum(MONEY_IN)

    @property
    def refunded(self) -> Decimal:
        return self._sum(MONEY_OUT)

    @property
    def net_captured(self) -> Decimal:
        """What can still be refunded in total."""
        return self.captured - self.refunded

    def payment_ids(self) -> list[str]:
        seen: dict[str, None] = {}
        for e in self.entries:
            seen.setdefault(e.payment_id, None)
        return list(seen)

    def pending(self) -> Decimal:
        """Authorized card money neither captured nor voided yet (per payment, never negative)."""
        return sum((self.uncaptured(pid) for pid in self.payment_ids()), ZERO)

    def uncaptured(self, payment_id: str) -> Decimal:
        """What is still authorized on one card payment: neither captured nor voided (never negative)."""
        rest = self._sum([EntryKind.AUTHORIZED], payment_id) - self._sum(
            [EntryKind.CAPTURED, EntryKind.VOIDED], payment_id
        )
        return max(ZERO, rest)

    def open_authorizations(self) -> list[tuple[str, Decimal]]:
        """``(payment_id, uncaptured)`` of every card payment with authorized money left, oldest first."""
        return [(pid, rest) for pid in self.payment_ids() if (rest := self.uncaptured(pid)) > 0]

    def capture_entries(
        self, payment_id: str, amount: Decimal, at: datetime, *, authorized: Decimal | None = None
    ) -> list[LedgerEntry]:
        """The entries of capturing ``amount`` of a payment: the capture, and the release of what is left
        of the authorization (a provider frees it on a partial capture). ``authorized`` is the total
        authorized when the caller knows it better than the ledger (a webhook that carries both)."""
        left = (authorized if authorized is not None else self._sum([EntryKind.AUTHORIZED], payment_id)) - amount
        entries = [
            LedgerEntry(kind=EntryKind.CAPTURED, amount=amount, currency=self.currency, payment_id=payment_id,
                        reference="capture", at=at, method=PaymentMethod.CARD)
        ]
        if left > 0:
            entries.append(
                LedgerEntry(kind=EntryKind.VOIDED, amount=left, currency=self.currency, payment_id=payment_id,
                            reference="capture-release", at=at)
            )
        return entries

    def refundable_by_payment(self) -> list[tuple[str, Decimal, bool]]:
        """``(payment_id, refundable, is_card)`` in the order refunds should use them.

        Card payments first (the provider returns the money without staff handling cash), newest first
        within each group (the latest payment is the one most likely to be disputed or duplicated).
        """
        rows: list[tuple[bool, datetime, int, str, Decimal]] = []
        for index, pid in enumerate(self.payment_ids()):
            ins = [e for e in self.entries if e.payment_id == pid and e.kind in MONEY_IN]
            if not ins:
                continue
            refundable = self._sum(MONEY_IN, pid) - self._sum(MONEY_OUT, pid)
            if refundable <= 0:
                continue
            is_card = any(e.kind is EntryKind.CAPTURED for e in ins)
            rows.append((is_card, max(e.at for e in ins), index, pid, refundable))
        rows.sort(key=lambda r: (not r[0], -r[1].timestamp(), -r[2]))
        return [(pid, amount, is_card) for is_card, _at, _i, pid, amount in rows]

    def refunded_lines(self) -> dict[str, LineAllocation]:
        """Units and money already refunded per order line."""
        qty: dict[str, int] = defaultdict(int)
        money: dict[str, Decimal] = defaultdict(lambda: ZERO)
        for e in self.entries:
            if e.kind in MONEY_OUT:
                for line_id, alloc in e.lines.items():
                    qty[line_id] += alloc.quantity
                    money[line_id] += alloc.amount
        return {k: LineAllocation(qty[k], money[k]) for k in qty}

    def refunded_shipping(self) -> Decimal:
        return sum((e.shipping for e in self.entries if e.kind in MONEY_OUT), ZERO)

    def refund_group(self, reference: str) -> list[LedgerEntry]:
        return [e for e in self.entries if e.kind in MONEY_OUT and e.reference == reference]

    def summary(self, order_total: Decimal, *, in_progress: bool = False) -> LedgerSummary:
        """Totals and the computed status. ``in_progress`` lets the service add a payment it knows is
        waiting at the provider (e.g. 3-D Secure) before any money entry exists."""
        total = parse_amount(order_total, self.currency, field="order_total")
        captured, refunded, pending = self.captured, self.refunded, self.pending()
        net = captured - refunded
        status = compute_status(total, captured, min(refunded, captured), in_progress or pending > 0)
        return LedgerSummary(
            currency=self.currency,
            authorized=self._sum([EntryKind.AUTHORIZED]),
            captured=captured,
            refunded=refunded,
            voided=self._sum([EntryKind.VOIDED]),
            failed=self._sum([EntryKind.FAILED]),
            pending=pending,
            net_paid=net,
            balance_due=max(ZERO, total - net),
            overpaid=overpaid_amount(total, captured, min(refunded, captured)),
            status=status,
        )

    # -- invariants ------------------------------------------------------------------------------------

    def check_invariants(self, order: PaymentOrder) -> list[Violation]:
        """Every rule the money must obey; an empty list means the ledger is consistent with the order.

        * one currency: the order's, on every entry;
        * total refunded <= total received; per payment, refunded <= received and captured <= authorized
          - voided; voided <= authorized - captured;
        * per line: refunded units <= ordered units, refunded money <= the line total and <= what was
          captured for that line when captures were itemised; shipping refunded <= shipping charged;
        * a refund's breakdown (lines + shipping + adjustment refund - fee) equals its amount;
        * the order's declared total equals the sum of its parts.
        """
        out: list[Violation] = []
        if order.currency != self.currency:
            out.append(
                Violation(
                    "currency_mismatch",
                    f"ledger is in {self.currency} but the order is in {order.currency}",
                    field="currency",
                )
            )
        for e in self.entries:
            if e.currency != self.currency:
                out.append(
                    Violation(
                        "currency_mismatch",
                        f"{e.kind.value} {e.reference} is in {e.currency}, the ledger in {self.currency}",
                        field="currency",
                        payment_id=e.payment_id,
                    )
                )
        if self.refunded > self.captured:
            out.append(
                Violation(
                    "refunded_exceeds_captured",
                    f"refunded {self.refunded} exceeds captured {self.captured} {self.currency}",
                    field="refunded",
                )
            )
        for pid in self.payment_ids():
            out.extend(self._payment_violations(pid))
        try:
            totals = order.line_totals()
        except MoneyError as exc:
            out.append(Violation("order_inconsistent", str(exc), field="lines"))
            return out
        if order.total is not None and order.total != order.computed_total:
            out.append(
                Violation(
                    "order_total_mismatch",
                    f"order total {order.total} differs from lines + shipping {order.computed_total}",
                    field="total",
                )
            )
        out.extend(self._line_violations(order, totals))
        out.extend(self._breakdown_violations())
        return out

    def _payment_violations(self, pid: str) -> list[Violation]:
        out: list[Violation] = []
        authorized = self._sum([EntryKind.AUTHORIZED], pid)
        captured = self._sum([EntryKind.CAPTURED], pid)
        voided = self._sum([EntryKind.VOIDED], pid)
        received = self._sum(MONEY_IN, pid)
        refunded = self._sum([EntryKind.REFUNDED], pid)
        if captured > 0 and captured > authorized - voided:
            out.append(
                Violation(
                    "captured_exceeds_authorized",
                    f"payment {pid}: captured {captured} exceeds authorized {authorized} - voided {voided}",
                    field="captured",
                    payment_id=pid,
                )
            )
        if voided > 0 and voided > authorized - captured:
            out.append(
                Violation(
                    "voided_exceeds_authorized",
                    f"payment {pid}: voided {voided} exceeds authorized {authorized} - captured {captured}",
                    field="voided",
                    payment_id=pid,
                )
            )
        if refunded > received:
            out.append(
                Violation(
                    "refunded_exceeds_captured",
                    f"payment {pid}: refunded {refunded} exceeds captured {received}",
                    field="refunded",
                    payment_id=pid,
                )
            )
        return out

    def _line_violations(self, order: PaymentOrder, totals: Mapping[str, Decimal]) -> list[Violation]:
        out: list[Violation] = []
        by_id = {line.line_id: line for line in order.lines}
        captured_lines: dict[str, Decimal] = defaultdict(lambda: ZERO)
        for e in self.entries:
            if e.kind in MONEY_IN:
                for line_id, alloc in e.lines.items():
                    captured_lines[line_id] += alloc.amount
        for line_id, done in self.refunded_lines().items():
            line = by_id.get(line_id)
            if line is None:
                out.append(
                    Violation(
                        "unknown_line",
                        f"refund for line {line_id}, which is not on the order",
                        field=f"lines.{line_id}",
                        line_id=line_id,
                    )
                )
                continue
            if done.quantity > line.quantity:
                out.append(
                    Violation(
                        "line_quantity_exceeded",
                        f"line {line_id}: {done.quantity} units refunded of {line.quantity} ordered",
                        field=f"lines.{line_id}",
                        line_id=line_id,
                    )
                )
            if done.amount > totals[line_id]:
                out.append(
                    Violation(
                        "line_amount_exceeded",
                        f"line {line_id}: refunded {done.amount} exceeds the line total {totals[line_id]}",
                        field=f"lines.{line_id}",
                        line_id=line_id,
                    )
                )
            if line_id in captured_lines and done.amount > captured_lines[line_id]:
                out.append(
                    Violation(
                        "line_refunded_exceeds_captured",
                        f"line {line_id}: refunded {done.amount} exceeds captured {captured_lines[line_id]}",
                        field=f"lines.{line_id}",
                        line_id=line_id,
                    )
                )
        shipped = self.refunded_shipping()
        if shipped > order.shipping:
            out.append(
                Violation(
                    "shipping_refund_exceeded",
                    f"shipping refunded {shipped} exceeds shipping charged {order.shipping}",
                    field="shipping",
                )
            )
        return out

    def _breakdown_violations(self) -> list[Violation]:
        out: list[Violation] = []
        groups: dict[str, list[LedgerEntry]] = defaultdict(list)
        for e in self.entries:
            if e.kind in MONEY_OUT:
                groups[e.reference].append(e)
        for reference, entries in groups.items():
            if not any(e.has_breakdown for e in entries):
                continue  # a bare refund (e.g. made in the provider's dashboard): counts in totals only
            amount = sum((e.amount for e in entries), ZERO)
            parts = sum(
                (
                    sum((a.amount for a in e.lines.values()), ZERO)
                    + e.shipping
                    + e.adjustment_refund
                    - e.adjustment_fee
                    for e in entries
                ),
                ZERO,
            )
            if parts != amount:
                out.append(
                    Violation(
                        "refund_breakdown_mismatch",
                        f"refund {reference}: amount {amount} but lines + shipping + adjustments = {parts}",
                        field="refunded",
                    )
                )
        return out


def _same_movement(a: LedgerEntry, b: LedgerEntry) -> bool:
    """Duplicates may differ in timestamp (late webhook): same money is the same movement."""
    return (a.kind, a.amount, a.currency, a.payment_id, a.reference, dict(a.lines)) == (
        b.kind,
        b.amount,
        b.currency,
        b.payment_id,
        b.reference,
        dict(b.lines),
    )


# ---------------------------------------------------------------------------------------------------------
# Refunds
# ---------------------------------------------------------------------------------------------------------


def money_error_code(exc: Exception) -> str:
    """The ``code`` of an ``errors`` entry for an amount ``shared.money`` refused."""
    text = str(exc)
    if "more decimals" in text:
        return "too_many_decimals"
    if "not a decimal" in text or "not a finite" in text or "not accepted for money" in text:
        return "not_a_decimal"
    if "currency" in text:
        return "unknown_currency"
    return "invalid_amount"


class RefundRejected(ValueError):
    """A refund request that breaks a rule; ``errors`` are ``shared.errors.field_error`` entries for the API.

    Kept independent of ``shared.errors`` so this module stays pure; :meth:`as_invalid_request` gives the
    service layer the RPC-serializable error the gateway maps to a 422 problem.
    """

    def __init__(self, detail: str, errors: list[dict[str, str]]) -> None:
        super().__init__(detail)
        self.detail = detail
        self.errors = errors

    def as_invalid_request(self) -> Exception:
        from shared.errors import InvalidRequest

        return InvalidRequest(self.detail, errors=self.errors)


@dataclass(frozen=True)
class RefundRequest:
    """What staff enter in the refund dialog: units returned per line (by line id or SKU), shipping to
    refund, an extra goodwill amount, and a fee to keep (e.g. restocking). ``reference`` makes it
    idempotent: repeating a request with the same reference refunds once."""

    lines: Mapping[str, int] = field(default_factory=dict)
    shipping: Decimal = ZERO
    adjustment_refund: Decimal = ZERO
    adjustment_fee: Decimal = ZERO
    reference: str | None = None


@dataclass(frozen=True)
class RefundLinePreview:
    line_id: str
    sku: str
    quantity: int
    amount: Decimal
    remaining_quantity: int  # units still refundable after this refund


@dataclass(frozen=True)
class PaymentAllocation:
    """Which payment gives back how much; card payments go through the provider, others by hand."""

    payment_id: str
    amount: Decimal
    via_provider: bool


@dataclass(frozen=True)
class RefundPreview:
    """Exactly what would be refunded, shown before committing. ``errors`` empty means it may proceed."""

    currency: str
    lines: tuple[RefundLinePreview, ...]
    shipping: Decimal
    adjustment_refund: Decimal
    adjustment_fee: Decimal
    total: Decimal
    refundable_before: Decimal
    status_after: PaymentStatus | None
    allocations: tuple[PaymentAllocation, ...]
    errors: tuple[dict[str, str], ...] = ()
    already_applied: bool = False
    reference: str | None = None

    @property
    def ok(self) -> bool:
        return not self.errors

    def raise_for_errors(self) -> None:
        if self.errors:
            raise RefundRejected(f"refund rejected: {describe(self.errors)}", list(self.errors))

    def to_entries(self, reference: str, at: datetime) -> list[LedgerEntry]:
        """Ledger entries for this refund, one per payment it draws on; the first carries the breakdown.

        Raises :class:`RefundRejected` if the preview had errors, so an invalid refund cannot be committed.
        """
        self.raise_for_errors()
        if self.reference is not None and self.reference != reference:
            raise RefundRejected(
                "refund reference differs from the previewed one",
                [field_error("reference", "differs from the previewed request", "reference_mismatch")],
            )
        entries: list[LedgerEntry] = []
        for i, alloc in enumerate(self.allocations):
            first = i == 0
            entries.append(
                LedgerEntry(
                    kind=EntryKind.REFUNDED if alloc.via_provider else EntryKind.MANUAL_REFUND,
                    amount=alloc.amount,
                    currency=self.currency,
                    payment_id=alloc.payment_id,
                    reference=reference,
                    at=at,
                    lines={
                        ln.line_id: LineAllocation(ln.quantity, ln.amount) for ln in self.lines if first
                    },
                    shipping=self.shipping if first else ZERO,
                    adjustment_refund=self.adjustment_refund if first else ZERO,
                    adjustment_fee=self.adjustment_fee if first else ZERO,
                )
            )
        return entries


def refund_amount_for_units(line_total: Decimal, ordered: int, units_after: int, currency: str) -> Decimal:
    """Cumulative refund for the first ``units_after`` of ``ordered`` units of a line.

    Rounding rule: ``cum(k) = round_half_up(line_total * k / ordered)`` to the minor unit. A refund of
    ``q`` units when ``r`` were already refunded (for ``a`` money) is ``cum(r + q) - a``. Because
    ``cum(ordered) == line_total``, returning every unit, in any number of steps, refunds exactly the line
    total; each step is within one minor unit of the exact pro-rata share.
    """
    if ordered <= 0:
        return ZERO
    with localcontext() as ctx:
        ctx.prec = 60
        exact = line_total * Decimal(units_after) / Decimal(ordered)
    return quantize(exact, currency, ROUND_HALF_UP)


def _resolve_line(key: str, lines: Sequence[OrderLine]) -> tuple[OrderLine | None, str | None]:
    for line in lines:
        if line.line_id == key:
            return line, None
    by_sku = [line for line in lines if line.sku == key]
    if len(by_sku) == 1:
        return by_sku[0], None
    if len(by_sku) > 1:
        return None, f"SKU {key} is on several lines; use the line id"
    return None, "no such line or SKU on the order"


def _request_amount(value: object, currency: str, name: str, errors: list[dict[str, str]]) -> Decimal:
    try:
        amount = parse_amount(value, currency, field=name)
    except TypeError:
        errors.append(field_error(name, f"{type(value).__name__} is not accepted, send a decimal string",
                                  "not_a_decimal_string"))
        return ZERO
    except MoneyError as exc:
        errors.append(field_error(name, str(exc).split(": ", 1)[-1], money_error_code(exc)))
        return ZERO
    if amount < 0:
        errors.append(field_error(name, "must not be negative", "negative"))
        return ZERO
    return amount


def preview_refund(
    order_lines: Sequence[OrderLine],
    order_shipping: Decimal,
    ledger: Ledger,
    request: RefundRequest,
    *,
    order_discount: Decimal = ZERO,
    order_tax: Decimal = ZERO,
) -> RefundPreview:
    """Compute a refund exactly, or say precisely why it cannot be made.

    Total = sum of line amounts (see :func:`refund_amount_for_units`) + ``shipping`` +
    ``adjustment_refund`` - ``adjustment_fee``. Errors (field + reason) are returned, not raised, so the
    preview can show all of them at once: a quantity above what is still refundable on a line, shipping
    above shipping charged minus shipping already refunded, a total above net captured, a negative or
    zero total, floats or sub-minor-unit amounts, an idempotency reference reused for another refund.
    """
    currency = ledger.currency
    errors: list[dict[str, str]] = []
    totals = line_totals(order_lines, currency, order_discount, order_tax)
    order_total = sum(totals.values(), ZERO) + parse_amount(order_shipping, currency, field="shipping")
    done_lines = ledger.refunded_lines()

    previews: list[RefundLinePreview] = []
    requested: dict[str, int] = {}
    for key, qty in request.lines.items():
        fld = f"lines.{key}"
        if isinstance(qty, bool) or not isinstance(qty, int):
            errors.append(field_error(fld, f"quantity must be a whole number, got {qty!r}", "not_a_whole_number"))
            continue
        if qty < 0:
            errors.append(field_error(fld, "quantity must not be negative", "negative"))
            continue
        line, problem = _resolve_line(key, order_lines)
        if line is None:
            code = "ambiguous_sku" if problem and "several" in problem else "unknown_line"
            errors.append(field_error(fld, problem or "unknown line", code))
            continue
        if line.line_id in requested:
            errors.append(field_error(fld, f"line {line.line_id} is listed twice (id and SKU)", "duplicate_line"))
            continue
        if qty == 0:
            continue
        requested[line.line_id] = qty
        done = done_lines.get(line.line_id, LineAllocation(0, ZERO))
        remaining = line.quantity - done.quantity
        if qty > remaining:
            errors.append(
                field_error(
                    fld,
                    f"quantity {qty} exceeds the {remaining} still refundable "
                    f"({line.quantity} ordered, {done.quantity} already refunded)",
                    "exceeds_refundable",
                )
            )
            continue
        cumulative = refund_amount_for_units(totals[line.line_id], line.quantity, done.quantity + qty, currency)
        amount = max(ZERO, cumulative - done.amount)
        previews.append(RefundLinePreview(line.line_id, line.sku, qty, amount, remaining - qty))

    shipping = _request_amount(request.shipping, currency, "shipping", errors)
    shipping_left = parse_amount(order_shipping, currency, field="shipping") - ledger.refunded_shipping()
    if shipping > shipping_left:
        errors.append(
            field_error(
                "shipping",
                f"{shipping} exceeds the shipping still refundable ({shipping_left} {currency})",
                "exceeds_refundable",
            )
        )
    adj_refund = _request_amount(request.adjustment_refund, currency, "adjustment_refund", errors)
    adj_fee = _request_amount(request.adjustment_fee, currency, "adjustment_fee", errors)

    total = sum((p.amount for p in previews), ZERO) + shipping + adj_refund - adj_fee
    refundable = ledger.net_captured

    if request.reference is not None:
        replay = _replay(
            ledger, request.reference, requested, (shipping, adj_refund, adj_fee), order_lines, order_total
        )
        if replay is not None:
            return replay
        if ledger.refund_group(request.reference):
            errors.append(field_error("reference", "already used for a different refund", "reference_reused"))

    if total < 0:
        errors.append(field_error("adjustment_fee", f"the fee exceeds the refund by {-total} {currency}",
                                  "fee_exceeds_refund"))
    elif total == 0 and not errors:
        errors.append(field_error("total", "nothing to refund", "nothing_to_refund"))
    if total > refundable:
        errors.append(
            field_error(
                "total",
                f"{total} exceeds what can still be refunded ({refundable} {currency}: "
                f"captured {ledger.captured} - refunded {ledger.refunded})",
                "exceeds_refundable",
            )
        )

    allocations: list[PaymentAllocation] = []
    status_after: PaymentStatus | None = None
    if not errors:
        left = total
        for pid, available, via_provider in ledger.refundable_by_payment():
            if left <= 0:
                break
            take = min(left, available)
            allocations.append(PaymentAllocation(pid, take, via_provider))
            left -= take
        status_after = compute_status(order_total, ledger.captured, ledger.refunded + total, False)

    return RefundPreview(
        currency=currency,
        lines=tuple(previews),
        shipping=shipping,
        adjustment_refund=adj_refund,
        adjustment_fee=adj_fee,
        total=total,
        refundable_before=refundable,
        status_after=status_after,
        allocations=tuple(allocations),
        errors=tuple(errors),
        reference=request.reference,
    )


def _replay(
    ledger: Ledger,
    reference: str,
    requested: Mapping[str, int],
    amounts: tuple[Decimal, Decimal, Decimal],
    order_lines: Sequence[OrderLine],
    order_total: Decimal,
) -> RefundPreview | None:
    """The recorded refund if ``reference`` was already applied with the same request (idempotency).

    Returning the recorded amounts (not recomputing them) matters: a retried request after a crash must
    not refund a second time, nor show a different amount than the one that went out.
    """
    group = ledger.refund_group(reference)
    if not group:
        return None
    rec_lines = {k: v.quantity for e in group for k, v in e.lines.items()}
    shipping = sum((e.shipping for e in group), ZERO)
    adj_refund = sum((e.adjustment_refund for e in group), ZERO)
    adj_fee = sum((e.adjustment_fee for e in group), ZERO)
    if (rec_lines, (shipping, adj_refund, adj_fee)) != (dict(requested), amounts):
        return None
    by_id = {line.line_id: line for line in order_lines}
    done = ledger.refunded_lines()
    lines = tuple(
        RefundLinePreview(
            k,
            by_id[k].sku if k in by_id else k,
            v.quantity,
            v.amount,
            (by_id[k].quantity if k in by_id else 0) - done.get(k, LineAllocation(0, ZERO)).quantity,
        )
        for e in group
        for k, v in e.lines.items()
    )
    total = sum((e.amount for e in group), ZERO)
    return RefundPreview(
        currency=ledger.currency,
        lines=lines,
        shipping=shipping,
        adjustment_refund=adj_refund,
        adjustment_fee=adj_fee,
        total=total,
        refundable_before=ledger.net_captured + total,
        status_after=compute_status(order_total, ledger.captured, min(ledger.refunded, ledger.captured)),
        allocations=tuple(
            PaymentAllocation(e.payment_id, e.amount, e.kind is EntryKind.REFUNDED) for e in group
        ),
        already_applied=True,
        reference=reference,
    )


def errors_as_dicts(violations: Iterable[Violation]) -> list[dict[str, Any]]:
    """Violations in the ``errors`` shape of an InvalidRequest / problem document."""
    return [v.as_error() for v in violations]
