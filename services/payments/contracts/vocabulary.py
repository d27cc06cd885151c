"""The words payments and its clients share: payment status, payment methods, capture method and stage.

They live in the contract (not in the domain) because the gateway, the orders service and the CLI speak
them too; the domain builds on them. Order stages are the orders service's words, taken from its contract
(``Stage``), never copied as strings.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Literal, get_args

from services.orders.contracts.schemas import Stage


class PaymentStatus(StrEnum):
    """Payment dimension of an order, as shown to merchants (computed from the ledger amounts)."""

    UNPAID = "unpaid"
    IN_PROGRESS = "in_progress"
    PARTIALLY_PAID = "partially_paid"
    PAID = "paid"
    PARTIALLY_REFUNDED = "partially_refunded"
    REFUNDED = "refunded"


class PaymentMethod(StrEnum):
    """How the customer pays. Manual methods leave the order unpaid until staff record money received."""

    CASH_ON_DELIVERY = "cash_on_delivery"
    BANK_TRANSFER = "bank_transfer"
    POS_ON_DELIVERY = "pos_on_delivery"
    CARD = "card"


ManualMethod = Literal["cash_on_delivery", "bank_transfer", "pos_on_delivery"]
"""A method where staff record the money by hand (no provider involved)."""

MANUAL_METHODS: frozenset[PaymentMethod] = frozenset(PaymentMethod(m) for m in get_args(ManualMethod))

CaptureMethod = Literal["automatic", "manual"]
"""Card links: take the money when the customer pays, or only authorize it and capture it later."""

CaptureStage = Literal[Stage.approved, Stage.processed, Stage.shipped, Stage.delivered]
"""The fulfilment stages, in the order they come, at which authorized card money may be captured."""

CAPTURE_STAGES: tuple[Stage, ...] = get_args(CaptureStage)
