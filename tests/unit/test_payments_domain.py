"""Money rules of the payments service: statuses, ledger invariants, refund arithmetic."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal as D

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from services.payments.domain import (
    STATUS_TABLE,
    CaptureLevel,
    EntryKind,
    Ledger,
    LedgerEntry,
    LineAllocation,
    OrderLine,
    PaymentMethod,
    PaymentOrder,
    PaymentStatus,
    RefundLevel,
    RefundRejected,
    RefundRequest,
    capture_level,
    compute_status,
    is_manual,
    overpaid_amount,
    preview_refund,
    refund_level,
)
from shared.errors import field_error
from shared.money import Money, MoneyError, allocate_proportionally, minor_unit, parse_amount, quantize, to_decimal

pytestmark = pytest.mark.unit

T0 = datetime(2025, 1, 1, tzinfo=UTC)


def order(**kw: object) -> PaymentOrder:
    """3 shirts at 10.00 and a mug at 5.00, 1.00 order discount, 2.00 order tax, 4.99 shipping."""
    defaults: dict[str, object] = dict(
        order_id="o-1",
        currency="EUR",
        lines=(OrderLine("l1", "SHIRT", 3, D("10.00")), OrderLine("l2", "MUG", 1, D("5.00"))),
        shipping=D("4.99"),
        discount=D("1.00"),
        tax=D("2.00"),
    )
    defaults.update(kw)
    return PaymentOrder(**defaults)  # type: ignore[arg-type]


def entry(kind: EntryKind, amount: str, payment_id: str = "p1", ref: str | None = None, **kw: object) -> LedgerEntry:
    return LedgerEntry(
        kind=kind,
        amount=D(amount),
        currency=kw.pop("currency", "EUR"),  # type: ignore[arg-type]
        payment_id=payment_id,
        reference=ref or f"{kind.value}-{payment_id}-{amount}",
        at=kw.pop("at", T0),  # type: ignore[arg-type]
        **kw,  # type: ignore[arg-type]
    )


def paid_by_card(o: PaymentOrder, amount: D | None = None, payment_id: str = "p1") -> Ledger:
    amt = str(amount if amount is not None else o.computed_total)
    ledger = Ledger(o.order_id, o.currency)
    cur = o.currency
    for kind in (EntryKind.AUTHORIZED, EntryKind.CAPTURED):
        e = entry(kind, amt, payment_id, currency=cur)
        change = ledger.record(e, o)
        assert change.violations == []
        ledger = change.ledger
    return ledger


def apply(ledger: Ledger, o: PaymentOrder, req: RefundRequest, ref: str) -> tuple[Ledger, D]:
    preview = o.preview_refund(ledger, req)
    preview.raise_for_errors()
    change = ledger.record_all(preview.to_entries(ref, T0), o)
    assert change.violations == [], change.violations
    return change.ledger, preview.total


# ----------------------------------------------------------------------------------------------- money


def test_minor_units_follow_the_currency() -> None:
    assert (minor_unit("EUR"), minor_unit("jpy"), minor_unit("KWD"), minor_unit("BHD"), minor_unit("OMR")) == (
        2,
        0,
        3,
        3,
        3,
    )
    assert quantize(D("1.005"), "EUR") == D("1.01")
    assert quantize(D("1.5"), "JPY") == D("2")
    assert str(parse_amount("12.5", "EUR")) == "12.50"
    assert str(parse_amount("1.250", "KWD")) == "1.250"


@pytest.mark.parametrize(("value", "currency"), [("1.005", "EUR"), ("100.5", "JPY"), ("0.0001", "KWD")])
def test_amounts_finer_than_the_minor_unit_are_rejected_not_rounded(value: str, currency: str) -> None:
    with pytest.raises(MoneyError, match="more decimals"):
        parse_amount(value, currency)


def test_money_arithmetic_refuses_mixed_currencies() -> None:
    assert Money.of("10.10", "EUR") + Money.of("0.90", "EUR") == Money.of("11", "EUR")
    assert Money.of("1", "eur").as_json() == {"amount": "1.00", "currency": "EUR"}
    with pytest.raises(MoneyError):
        Money.of("1", "EUR") + Money.of("1", "USD")
    with pytest.raises(MoneyError):
        Money.of("1", "EURO")


@given(st.floats(allow_nan=True, allow_infinity=True))
def test_no_float_is_ever_accepted_as_money(value: float) -> None:
    with pytest.raises(TypeError):
        to_decimal(value)
    with pytest.raises(TypeError):
        Money(value, "EUR")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        compute_status(value, D(0), D(0))  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        OrderLine("l", "s", 1, value)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        LedgerEntry(EntryKind.CAPTURED, value, "EUR", "p", "r", T0)  # type: ignore[arg-type]
    o = order()
    for name in ("shipping", "adjustment_refund", "adjustment_fee"):
        preview = o.preview_refund(paid_by_card(o), RefundRequest(**{name: value}))  # type: ignore[arg-type]
        assert not preview.ok
        expected = field_error(name, "float is not accepted, send a decimal string", "not_a_decimal_string")
        assert expected in preview.errors
        with pytest.raises(RefundRejected):
            preview.to_entries("r", T0)


@given(
    st.decimals(min_value=-10000, max_value=10000, places=2),
    st.lists(st.decimals(min_value=0, max_value=1000, places=3), min_size=1, max_size=8),
)
def test_allocation_always_sums_exactly_and_stays_within_a_cent(amount: D, weights: list[D]) -> None:
    parts = allocate_proportionally(amount, weights, "EUR")
    assert sum(parts, D(0)) == amount
    total_w = sum(weights, D(0))
    if total_w:
        for part, w in zip(parts, weights, strict=True):
            assert abs(part - amount * w / total_w) < D("0.01")


# --------------------------------------------------------------------------------------------- status


@pytest.mark.parametrize(
    ("total", "captured", "refunded", "in_progress", "expected"),
    [
        ("100", "0", "0", False, PaymentStatus.UNPAID),  # cash on delivery, nothing received yet
        ("100", "0", "0", True, PaymentStatus.IN_PROGRESS),  # card authorized, not captured
        ("100", "40", "0", False, PaymentStatus.PARTIALLY_PAID),  # part of a bank transfer arrived
        ("100", "40", "0", True, PaymentStatus.IN_PROGRESS),  # the rest is being processed
        ("100", "100", "0", False, PaymentStatus.PAID),
        ("100", "130", "0", False, PaymentStatus.PAID),  # over-paid is still paid (overpaid shows it)
        ("100", "130", "30", False, PaymentStatus.PAID),  # giving back the excess is not an order refund
        ("100", "100", "25", False, PaymentStatus.PARTIALLY_REFUNDED),
        ("100", "100", "100", False, PaymentStatus.REFUNDED),
        ("100", "40", "40", False, PaymentStatus.REFUNDED),
        ("100", "40", "10", False, PaymentStatus.PARTIALLY_REFUNDED),
        ("0", "0", "0", False, PaymentStatus.PAID),  # a free order owes nothing
    ],
)
def test_status_follows_from_the_amounts(
    total: str, captured: str, refunded: str, in_progress: bool, expected: PaymentStatus
) -> None:
    assert compute_status(D(total), D(captured), D(refunded), in_progress) is expected


def test_overpayment_is_visible() -> None:
    assert overpaid_amount(D("100"), D("130")) == D("30")
    assert overpaid_amount(D("100"), D("130"), D("30")) == D("0")
    assert overpaid_amount(D("100"), D("60")) == D("0")


def test_refunding_more_than_captured_is_not_a_status() -> None:
    with pytest.raises(MoneyError, match="exceeds captured"):
        compute_status(D("100"), D("50"), D("60"))


@given(
    st.decimals(min_value=0, max_value=1000, places=2),
    st.decimals(min_value=0, max_value=2000, places=2),
    st.data(),
    st.booleans(),
)
def test_status_table_covers_every_reachable_amount(total: D, captured: D, data: st.DataObject, busy: bool) -> None:
    refunded = data.draw(st.decimals(min_value=0, max_value=captured, places=2))
    key = (capture_level(total, captured), refund_level(total, captured, refunded), busy)
    assert key in STATUS_TABLE
    status = compute_status(total, captured, refunded, busy)
    if refunded == 0 and captured >= total:
        assert status is PaymentStatus.PAID
    if refunded > 0 and refunded == captured:
        assert status is PaymentStatus.REFUNDED


def test_status_table_lists_only_possible_combinations() -> None:
    assert all(
        not (cap is CaptureLevel.NONE and ref is not RefundLevel.NONE)
        and not (ref is RefundLevel.EXCESS_ONLY and cap is not CaptureLevel.FULL)
        for cap, ref, _ in STATUS_TABLE
    )
    assert set(STATUS_TABLE.values()) == set(PaymentStatus)


def test_manual_methods_are_the_offline_ones() -> None:
    assert [m.value for m in PaymentMethod if is_manual(m)] == ["cash_on_delivery", "bank_transfer", "pos_on_delivery"]
    assert not is_manual("card")


# --------------------------------------------------------------------------------------------- ledger


def test_line_totals_carry_the_order_discount_and_tax_and_add_up() -> None:
    o = order()
    # discount 1.00 -> 0.86 / 0.14 and tax 2.00 -> 1.71 / 0.29 (largest remainder gets the last cent)
    assert o.line_totals() == {"l1": D("30.85"), "l2": D("5.15")}
    assert sum(o.line_totals().values(), D(0)) == D("36.00")  # 35 - 1 + 2
    assert o.computed_total == D("40.99")


def test_manual_payments_in_parts_move_from_unpaid_to_paid() -> None:
    o = order()
    ledger = Ledger("o-1", "EUR")
    assert ledger.summary(o.computed_total).status is PaymentStatus.UNPAID
    ledger = ledger.record(entry(EntryKind.MANUAL_RECEIVED, "20.00", "cod", "receipt-1"), o).ledger
    s = ledger.summary(o.computed_total)
    assert (s.status, s.balance_due, s.net_paid) == (PaymentStatus.PARTIALLY_PAID, D("20.99"), D("20.00"))
    ledger = ledger.record(entry(EntryKind.MANUAL_RECEIVED, "25.00", "cod", "receipt-2"), o).ledger
    s = ledger.summary(o.computed_total)
    assert (s.status, s.balance_due, s.overpaid) == (PaymentStatus.PAID, D("0.00"), D("4.01"))


def test_authorized_card_payment_is_in_progress_until_captured_and_unpaid_after_void() -> None:
    o = order()
    ledger = Ledger("o-1", "EUR").record(entry(EntryKind.AUTHORIZED, "40.99"), o).ledger
    assert ledger.summary(o.computed_total).status is PaymentStatus.IN_PROGRESS
    voided = ledger.record(entry(EntryKind.VOIDED, "40.99"), o)
    assert voided.violations == []
    assert voided.ledger.summary(o.computed_total).status is PaymentStatus.UNPAID
    failed = Ledger("o-1", "EUR").record(entry(EntryKind.FAILED, "40.99", "p2"), o).ledger
    assert failed.summary(o.computed_total).status is PaymentStatus.UNPAID
    assert failed.summary(o.computed_total).failed == D("40.99")


def test_a_partial_capture_takes_part_of_the_authorization_and_releases_the_rest() -> None:
    o = order()
    ledger = Ledger("o-1", "EUR").record(entry(EntryKind.AUTHORIZED, "40.99"), o).ledger
    ledger = ledger.record(entry(EntryKind.AUTHORIZED, "5.00", "p2"), o).ledger
    assert ledger.open_authorizations() == [("p1", D("40.99")), ("p2", D("5.00"))]
    entries = ledger.capture_entries("p1", D("30.00"), T0)
    assert [(e.kind, e.amount, e.reference) for e in entries] == [
        (EntryKind.CAPTURED, D("30.00"), "capture"), (EntryKind.VOIDED, D("10.99"), "capture-release")]
    change = ledger.record_all(entries, o)
    assert change.violations == []
    assert change.ledger.uncaptured("p1") == 0 and change.ledger.open_authorizations() == [("p2", D("5.00"))]
    s = change.ledger.summary(o.computed_total)
    assert s.status is PaymentStatus.IN_PROGRESS and s.pending == D("5.00") and s.captured == D("30.00")
    # The provider's own report of the same capture (it knows the authorized total) is the same movement.
    again = change.ledger.record_all(change.ledger.capture_entries("p1", D("30.00"), T0, authorized=D("40.99")), o)
    assert again.duplicate and again.ledger == change.ledger
    whole = change.ledger.record_all(change.ledger.capture_entries("p2", D("5.00"), T0), o).ledger
    assert whole.summary(o.computed_total).status is PaymentStatus.PARTIALLY_PAID and whole.pending() == 0


def test_duplicate_webhook_does_not_count_money_twice() -> None:
    o = order()
    ledger = paid_by_card(o)
    late = entry(EntryKind.CAPTURED, "40.99", at=T0 + timedelta(minutes=3))
    change = ledger.record(late, o)
    assert change.duplicate and change.ledger.captured == D("40.99") and change.violations == []


def test_conflicting_duplicate_is_reported_and_not_applied() -> None:
    o = order()
    ledger = paid_by_card(o)
    change = ledger.record(entry(EntryKind.CAPTURED, "50.00", ref="captured-p1-40.99"), o)
    assert [v.code for v in change.violations] == ["conflicting_duplicate"]
    assert change.ledger.captured == D("40.99")


def test_refund_beyond_captured_is_recorded_but_reported() -> None:
    o = order()
    ledger = paid_by_card(o, D("10.00"))
    change = ledger.record(entry(EntryKind.REFUNDED, "15.00", ref="dashboard-refund"), o)
    codes = {v.code for v in change.violations}
    assert "refunded_exceeds_captured" in codes
    assert change.ledger.refunded == D("15.00")  # the money did leave: keep the fact, hold the order


def test_capture_without_authorization_and_foreign_currency_are_violations() -> None:
    o = order()
    change = Ledger("o-1", "EUR").record(entry(EntryKind.CAPTURED, "10.00"), o)
    assert [v.code for v in change.violations] == ["captured_exceeds_authorized"]
    change = Ledger("o-1", "EUR").record(entry(EntryKind.MANUAL_RECEIVED, "10.00", currency="USD"), o)
    assert [v.code for v in change.violations] == ["currency_mismatch"]
    assert change.ledger.captured == D("0.00")  # USD is not counted as EUR
    assert [v.code for v in Ledger("o-1", "USD").check_invariants(o)] == ["currency_mismatch"]


def test_per_line_and_shipping_invariants() -> None:
    o = order()
    ledger = paid_by_card(o)
    bad = entry(
        EntryKind.REFUNDED,
        "45.00",
        ref="r-bad",
        lines={"l2": LineAllocation(2, D("40.00"))},
        shipping=D("5.00"),
    )
    codes = {v.code for v in ledger.record(bad, o).violations}
    assert {"line_quantity_exceeded", "line_amount_exceeded", "shipping_refund_exceeded"} <= codes
    mismatch = entry(EntryKind.REFUNDED, "9.00", ref="r-sum", lines={"l1": LineAllocation(1, D("10.00"))})
    assert [v.code for v in ledger.record(mismatch, o).violations] == ["refund_breakdown_mismatch"]
    itemised = Ledger("o-1", "EUR")
    for e in (
        entry(EntryKind.MANUAL_RECEIVED, "5.14", "cash", "r1", lines={"l2": LineAllocation(1, D("5.14"))}),
        entry(EntryKind.MANUAL_REFUND, "10.00", "cash", "r2", lines={"l1": LineAllocation(1, D("10.00"))}),
    ):
        change = itemised.record(e, o)
        itemised = change.ledger
    assert "line_refunded_exceeds_captured" not in {v.code for v in change.violations}
    assert "refunded_exceeds_captured" in {v.code for v in change.violations}


def test_declared_order_total_must_match_its_parts() -> None:
    o = order(total=D("41.00"))
    assert [v.code for v in Ledger("o-1", "EUR").check_invariants(o)] == ["order_total_mismatch"]
    assert Ledger("o-1", "EUR").check_invariants(order(total=D("40.99"))) == []


# -------------------------------------------------------------------------------------------- refunds


def test_refund_preview_is_exact_and_names_what_is_refunded() -> None:
    o = order()
    ledger = paid_by_card(o)
    totals = o.line_totals()
    preview = o.preview_refund(
        ledger,
        RefundRequest(
            {"SHIRT": 1}, shipping=D("4.99"), adjustment_refund=D("2.00"), adjustment_fee=D("1.50")
        ),
    )
    assert preview.ok
    line_amount = quantize(totals["l1"] / 3, "EUR")
    assert [(ln.line_id, ln.quantity, ln.amount, ln.remaining_quantity) for ln in preview.lines] == [
        ("l1", 1, line_amount, 2)
    ]
    assert preview.total == line_amount + D("4.99") + D("2.00") - D("1.50")
    assert preview.status_after is PaymentStatus.PARTIALLY_REFUNDED
    assert [(a.payment_id, a.amount, a.via_provider) for a in preview.allocations] == [("p1", preview.total, True)]


def test_refunding_everything_gives_status_refunded_and_exact_totals() -> None:
    o = order()
    ledger = paid_by_card(o)
    ledger, first = apply(ledger, o, RefundRequest({"l1": 1}), "r1")
    ledger, second = apply(ledger, o, RefundRequest({"l1": 1}), "r2")
    ledger, third = apply(ledger, o, RefundRequest({"l1": 1, "l2": 1}, shipping=D("4.99")), "r3")
    assert first + second + third == D("40.99")
    assert ledger.refunded_lines()["l1"].amount == o.line_totals()["l1"]
    assert ledger.summary(o.computed_total).status is PaymentStatus.REFUNDED
    nothing_left = o.preview_refund(ledger, RefundRequest({"l2": 1}, adjustment_refund=D("0.01")))
    fields = {e["field"] for e in nothing_left.errors}
    assert fields == {"lines.l2", "total"}


def test_refund_errors_name_the_field_and_the_reason() -> None:
    o = order()
    ledger = paid_by_card(o)
    preview = o.preview_refund(ledger, RefundRequest({"SHIRT": 4, "NOPE": 1, "l2": -1}, shipping=D("5.00")))
    errors = {e["field"]: e["reason"] for e in preview.errors}
    codes = {e["field"]: e["code"] for e in preview.errors}
    assert codes == {"lines.SHIRT": "exceeds_refundable", "lines.NOPE": "unknown_line", "lines.l2": "negative",
                     "shipping": "exceeds_refundable"}
    assert errors["lines.SHIRT"] == "quantity 4 exceeds the 3 still refundable (3 ordered, 0 already refunded)"
    assert errors["lines.NOPE"] == "no such line or SKU on the order"
    assert errors["lines.l2"] == "quantity must not be negative"
    assert errors["shipping"] == "5.00 exceeds the shipping still refundable (4.99 EUR)"
    with pytest.raises(RefundRejected) as info:
        preview.to_entries("r", T0)
    assert field_error("shipping", "5.00 exceeds the shipping still refundable (4.99 EUR)", "exceeds_refundable") in (
        info.value.errors
    )


def test_refund_cannot_exceed_what_was_actually_paid() -> None:
    o = order()
    ledger = paid_by_card(o, D("10.00"))  # only a deposit was paid
    preview = o.preview_refund(ledger, RefundRequest({"l1": 1}))
    assert preview.total > D("10.00")
    assert [e["field"] for e in preview.errors] == ["total"]
    assert "exceeds what can still be refunded (10.00 EUR" in preview.errors[0]["reason"]


def test_fee_larger_than_refund_and_empty_refund_are_rejected() -> None:
    o = order()
    ledger = paid_by_card(o)
    assert [e["field"] for e in o.preview_refund(ledger, RefundRequest({"l2": 1}, adjustment_fee=D("6"))).errors] == [
        "adjustment_fee"
    ]
    assert [e["field"] for e in o.preview_refund(ledger, RefundRequest()).errors] == ["total"]
    assert [e["field"] for e in o.preview_refund(ledger, RefundRequest(shipping=D("0.001"))).errors] == ["shipping"]


def test_ambiguous_sku_must_use_the_line_id() -> None:
    o = order(lines=(OrderLine("a", "SKU", 1, D("5")), OrderLine("b", "SKU", 1, D("5"))), discount=D(0), tax=D(0))
    preview = o.preview_refund(paid_by_card(o), RefundRequest({"SKU": 1}))
    reason = "SKU SKU is on several lines; use the line id"
    assert preview.errors == (field_error("lines.SKU", reason, "ambiguous_sku"),)
    assert o.preview_refund(paid_by_card(o), RefundRequest({"b": 1})).total == D("5.00")


def test_repeating_a_refund_with_the_same_reference_refunds_once() -> None:
    o = order()
    ledger = paid_by_card(o)
    req = RefundRequest({"l2": 1}, reference="rf-1")
    ledger, amount = apply(ledger, o, req, "rf-1")
    again = o.preview_refund(ledger, req)
    assert again.already_applied and again.ok and again.total == amount
    change = ledger.record_all(again.to_entries("rf-1", T0 + timedelta(hours=1)), o)
    assert change.duplicate and change.violations == []
    ledger = change.ledger
    assert ledger.refunded == amount
    other = o.preview_refund(ledger, RefundRequest({"l1": 1}, reference="rf-1"))
    assert field_error("reference", "already used for a different refund", "reference_reused") in other.errors


def test_refund_goes_back_to_card_payments_before_cash() -> None:
    o = order()
    ledger = Ledger("o-1", "EUR")
    for e in (
        entry(EntryKind.MANUAL_RECEIVED, "20.00", "cash", "receipt"),
        entry(EntryKind.AUTHORIZED, "20.99", "card"),
        entry(EntryKind.CAPTURED, "20.99", "card"),
    ):
        ledger = ledger.record(e, o).ledger
    preview = o.preview_refund(ledger, RefundRequest({"l1": 3}))
    assert [(a.payment_id, a.via_provider) for a in preview.allocations] == [("card", True), ("cash", False)]
    assert preview.allocations[0].amount == D("20.99")
    entries = preview.to_entries("r", T0)
    assert [e.kind for e in entries] == [EntryKind.REFUNDED, EntryKind.MANUAL_REFUND]
    change = ledger.record_all(entries, o)
    assert change.violations == []
    assert change.ledger.summary(o.computed_total).status is PaymentStatus.PARTIALLY_REFUNDED
    assert change.ledger.refundable_by_payment() == [("cash", D("10.14"), False)]


def test_preview_function_matches_the_order_shortcut() -> None:
    o = order()
    ledger = paid_by_card(o)
    req = RefundRequest({"l1": 2})
    direct = preview_refund(o.lines, o.shipping, ledger, req, order_discount=o.discount, order_tax=o.tax)
    assert direct == o.preview_refund(ledger, req)


# ------------------------------------------------------------------------------------ property tests

prices = st.decimals(min_value=D("0.01"), max_value=D("999.99"), places=2)


@st.composite
def orders(draw: st.DrawFn) -> PaymentOrder:
    currency = draw(st.sampled_from(["EUR", "JPY", "KWD"]))
    places = minor_unit(currency)
    n = draw(st.integers(1, 4))
    lines = []
    for i in range(n):
        qty = draw(st.integers(1, 7))
        unit = quantize(draw(prices), currency)
        assume(unit > 0)
        disc = quantize(draw(st.decimals(min_value=0, max_value=unit * qty, places=places)), currency)
        tax = quantize(draw(st.decimals(min_value=0, max_value=50, places=places)), currency)
        lines.append(OrderLine(f"l{i}", f"S{i}", qty, unit, disc, tax))
    nets = sum((ln.net for ln in lines), D(0))
    order_disc = quantize(draw(st.decimals(min_value=0, max_value=nets, places=places)), currency)
    order_tax = quantize(draw(st.decimals(min_value=0, max_value=100, places=places)), currency)
    shipping = quantize(draw(st.decimals(min_value=0, max_value=30, places=places)), currency)
    try:
        o = PaymentOrder("o", currency, tuple(lines), shipping, order_disc, order_tax)
        o.line_totals()
    except MoneyError:
        assume(False)
    return o


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
@given(orders(), st.data())
def test_refunding_every_line_in_any_steps_sums_exactly_to_what_was_paid(o: PaymentOrder, data: st.DataObject) -> None:
    assume(o.computed_total > 0)
    ledger = paid_by_card(o)
    remaining = {ln.line_id: ln.quantity for ln in o.lines}
    pending: dict[str, int] = {}  # units whose pro-rata share rounds to 0 so far: refunded with the next
    refunded_total = D(0)
    step = 0
    shipping_left = o.shipping
    while any(remaining.values()):
        line_id = data.draw(st.sampled_from(sorted(k for k, v in remaining.items() if v)), label="line")
        qty = data.draw(st.integers(1, remaining[line_id]), label="qty")
        remaining[line_id] -= qty
        pending[line_id] = pending.get(line_id, 0) + qty
        ship = data.draw(st.sampled_from([D(0), shipping_left]), label="shipping")
        req = RefundRequest(dict(pending), shipping=ship)
        if o.preview_refund(ledger, req).total == 0:
            continue
        ledger, amount = apply(ledger, o, req, f"r{step}")
        step += 1
        refunded_total += amount
        shipping_left -= ship
        pending = {}
    last = RefundRequest(pending, shipping=shipping_left)
    if (pending or shipping_left) and o.preview_refund(ledger, last).total > 0:
        ledger, amount = apply(ledger, o, last, "r-last")
        refunded_total += amount
    assert refunded_total == o.computed_total == ledger.captured
    for line_id, total in o.line_totals().items():
        done = ledger.refunded_lines().get(line_id)
        assert (done.amount if done else D(0)) == total
    assert ledger.summary(o.computed_total).status is PaymentStatus.REFUNDED
    assert ledger.check_invariants(o) == []


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
@given(orders(), st.data())
def test_accepted_refunds_never_exceed_captured(o: PaymentOrder, data: st.DataObject) -> None:
    paid = quantize(
        data.draw(st.decimals(min_value=0, max_value=o.computed_total, places=3), label="paid"), o.currency
    )
    assume(paid > 0)
    ledger = paid_by_card(o, paid)
    for step in range(data.draw(st.integers(1, 6), label="steps")):
        lines = {ln.line_id: data.draw(st.integers(0, ln.quantity + 1)) for ln in o.lines}
        amt = st.decimals(min_value=0, max_value=20, places=minor_unit(o.currency))
        req = RefundRequest(
            {k: q for k, q in lines.items() if q},
            shipping=data.draw(st.sampled_from([D(0), o.shipping, o.shipping + 1])),
            adjustment_refund=data.draw(amt),
            adjustment_fee=data.draw(amt),
        )
        before = ledger.refunded
        preview = o.preview_refund(ledger, req)
        if not preview.ok:
            with pytest.raises(RefundRejected):
                preview.to_entries(f"r{step}", T0)
            continue
        assert D(0) < preview.total <= ledger.captured - before
        ledger, _ = apply(ledger, o, req, f"r{step}")
        assert ledger.refunded == before + preview.total
        assert ledger.refunded <= ledger.captured
        assert ledger.refunded_shipping() <= o.shipping
        for ln in o.lines:
            done = ledger.refunded_lines().get(ln.line_id)
            assert done is None or done.quantity <= ln.quantity
    assert ledger.check_invariants(o) == []
