"""The payments contract: RPC/HTTP request bodies and response views (money as decimal strings).

The use cases build every answer with these models and return ``model_dump(mode="json")``, so the shape a
client gets is the one published here (and in the OpenAPI document), never a hand-built dict.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from services.orders.contracts.schemas import Stage
from services.payments.contracts.vocabulary import (
    CaptureMethod,
    ManualMethod,
    PaymentMethod,
    PaymentStatus,
)
from shared.money import Amount, MoneyValue

Reference = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]


class _Command(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class _View(BaseModel):
    model_config = ConfigDict(extra="ignore")


class RecordManualPayment(_Command):
    """Staff record money received by hand (cash, bank transfer, POS), in full or in part.

    ``reference`` (the receipt or transfer reference) makes it idempotent: the same reference twice
    records the money once. ``method`` defaults to the order's payment method."""

    amount: Amount
    method: ManualMethod | None = None
    reference: Reference | None = None


class CreatePaymentLink(_Command):
    """Options of a card payment link. ``capture_method`` defaults to ``OMS_PAYMENT_CAPTURE``: ``automatic``
    takes the money when the customer pays; ``manual`` only authorizes it, to be captured later (by staff,
    or automatically when the order reaches ``OMS_PAYMENT_CAPTURE_STAGE``)."""

    capture_method: CaptureMethod | None = None


class CapturePayment(_Command):
    """Capture authorized card money. Without ``payment_id``, every open authorization of the order;
    without ``amount``, all of it (a smaller amount captures that much and releases the rest)."""

    payment_id: Reference | None = None
    amount: Amount | None = None


class RefundCommand(_Command):
    """A refund: units per line (line id or SKU), shipping, an extra amount, minus a fee kept.

    ``from_returns: true`` refunds the units the customer returned (reported by fulfillment) and that were not
    refunded yet, instead of ``lines`` (give one or the other)."""

    lines: dict[str, Annotated[int, Field(ge=0, le=1_000_000)]] = Field(default_factory=dict)
    from_returns: bool = Field(
        default=False, description="Refund every returned unit not refunded yet (instead of `lines`)."
    )
    shipping: Amount = Decimal(0)
    adjustment_refund: Amount = Decimal(0)
    adjustment_fee: Amount = Decimal(0)
    reference: Reference | None = None
    reason: Annotated[str, StringConstraints(max_length=500)] | None = None


class MarkRefundPaidOut(_Command):
    """Staff confirm they paid out a manual refund (handed back the cash, sent the transfer). ``reference``
    is the refund's, as the payment summary and the worklist show it."""

    reference: Reference
    note: Annotated[str, StringConstraints(strip_whitespace=True, max_length=500)] | None = None


class ManualRefundView(_View):
    """A refund of money taken by hand: staff pay it out, then mark it paid out."""

    order_id: UUID
    number: int
    test: bool = False
    reference: str
    amount: MoneyValue
    currency: str
    at: datetime
    methods: str | None = None
    paid_out_at: datetime | None = None
    paid_out_by: dict[str, Any] | None = None
    note: str | None = None


class ManualRefundList(_View):
    items: list[ManualRefundView]


class PaymentView(_View):
    id: str
    method: PaymentMethod
    status: str
    amount: MoneyValue
    provider_ref: str | None = None
    link_id: str | None = None
    link_url: str | None = None
    created_at: datetime


class LedgerEntryView(_View):
    kind: str
    amount: MoneyValue
    currency: str
    payment_id: str
    reference: str
    at: datetime
    manual_action_required: bool = False
    detail: dict[str, Any] = Field(default_factory=dict)


class ReturnedLineView(_View):
    """Units of a line the customer sent back (as fulfillment recorded them) and how many are still to refund."""

    line_id: str
    sku: str
    ordered: int
    returned: int
    refunded: int
    returned_not_refunded: int


class PaymentSummary(_View):
    """The payment side of an order: computed status, totals, attempts and every money movement."""

    order_id: UUID
    number: int
    currency: str
    total: MoneyValue
    payment_method: PaymentMethod | None = None
    stage: Stage
    status: PaymentStatus
    paid_at: datetime | None = None
    on_hold_reason: str | None = None
    authorized: MoneyValue
    captured: MoneyValue
    refunded: MoneyValue
    pending: MoneyValue
    net_paid: MoneyValue
    balance_due: MoneyValue
    overpaid: MoneyValue
    payments: list[PaymentView] = Field(default_factory=list)
    ledger: list[LedgerEntryView] = Field(default_factory=list)
    returns: list[ReturnedLineView] = Field(default_factory=list)
    duplicate: bool = False


class PaymentLinkView(_View):
    order_id: UUID
    payment_id: str
    link_id: str
    url: str
    amount: MoneyValue
    currency: str
    status: str
    capture_method: CaptureMethod = "automatic"


class RefundLineView(_View):
    line_id: str
    sku: str
    quantity: int
    amount: MoneyValue
    remaining_quantity: int


class AllocationView(_View):
    payment_id: str
    amount: MoneyValue
    via_provider: bool


class RefundPreviewView(_View):
    """Exactly what a refund would give back; ``ok`` false lists every reason in ``errors``."""

    order_id: UUID
    currency: str
    ok: bool
    lines: list[RefundLineView] = Field(default_factory=list)
    shipping: MoneyValue
    adjustment_refund: MoneyValue
    adjustment_fee: MoneyValue
    total: MoneyValue
    refundable_before: MoneyValue
    status_after: PaymentStatus | None = None
    allocations: list[AllocationView] = Field(default_factory=list)
    errors: list[dict[str, str]] = Field(default_factory=list)
    already_applied: bool = False
    reference: str | None = None
    manual: bool = False
    returns: list[ReturnedLineView] = Field(default_factory=list)
    """The order's returned units per line (``returned_not_refunded``: what ``from_returns`` refunds): before the
    refund in a preview, after it in a refund's answer."""


class WebhookAck(_View):
    received: bool = True
    duplicate: bool = False
    event_type: str | None = None
