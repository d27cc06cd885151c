"""The payments Nameko service: entrypoints only, each forwarding to its use case (``services.payments.usecases``).

Payments keep each order's ledger and compute its payment status; they record manual payments, create card
payment links, capture, refund, take provider webhooks, and react to the order's events. They publish
``payment.*`` and ``refund.*`` events and subscribe to the ``order.*`` types they act on, and to fulfillment's
returns (for the refund preview), in batches.
"""

from __future__ import annotations

from typing import Any

from nameko.rpc import rpc

from services.payments import usecases
from services.payments.dependencies import ProviderDependency
from services.payments.provider import PaymentProvider
from shared.consumer import subscribe
from shared.db import Database
from shared.envelope import Envelope
from shared.errors import DomainError
from shared.nameko_ext import DatabaseProvider, OutboxRelayProvider

SERVICE = "payments"
EVENT_BATCH_SIZE = 100
EVENT_BATCH_WAIT = 0.005  # seconds; a batch goes when full or this long after its first event


class PaymentsService:
    """Payments: ledger, status, manual receipts, card links, refunds, provider webhooks."""

    name = SERVICE
    db: Database = DatabaseProvider(SERVICE)  # type: ignore[assignment]
    relay = OutboxRelayProvider(SERVICE)
    provider: PaymentProvider = ProviderDependency()  # type: ignore[assignment]

    @subscribe("orders", usecases.ORDER_EVENT_TYPES, batch_size=EVENT_BATCH_SIZE, batch_wait=EVENT_BATCH_WAIT)
    def on_order_events(self, batch: list[tuple[Envelope, Any]]) -> None:
        usecases.handle_order_events(self.db, self.provider, [env for env, _data in batch])

    @subscribe(
        "fulfillment", usecases.FULFILLMENT_EVENT_TYPES, batch_size=EVENT_BATCH_SIZE, batch_wait=EVENT_BATCH_WAIT
    )
    def on_fulfillment_events(self, batch: list[tuple[Envelope, Any]]) -> None:
        usecases.handle_fulfillment_events(self.db, [env for env, _data in batch])

    @rpc(expected_exceptions=DomainError)
    def summary(self, order_id: str) -> dict[str, Any]:
        return usecases.summary(self.db, order_id)

    @rpc(expected_exceptions=DomainError)
    def record_manual_payment(self, order_id: str, command: Any, actor: Any) -> dict[str, Any]:
        return usecases.record_manual_payment(self.db, order_id, command, actor)

    @rpc(expected_exceptions=DomainError)
    def create_payment_link(self, order_id: str, actor: Any, command: Any = None) -> dict[str, Any]:
        return usecases.create_payment_link(self.db, self.provider, order_id, actor, command)

    @rpc(expected_exceptions=DomainError)
    def capture_payment(self, order_id: str, command: Any, actor: Any) -> dict[str, Any]:
        return usecases.capture_payment(self.db, self.provider, order_id, command, actor)

    @rpc(expected_exceptions=DomainError)
    def refund_preview(self, order_id: str, command: Any) -> dict[str, Any]:
        return usecases.refund_preview(self.db, order_id, command)

    @rpc(expected_exceptions=DomainError)
    def refund(self, order_id: str, command: Any, actor: Any, idempotency_key: str | None = None) -> dict[str, Any]:
        return usecases.refund(self.db, self.provider, order_id, command, actor, idempotency_key)

    @rpc(expected_exceptions=DomainError)
    def manual_refunds(self, pending: bool = True, limit: int = 100) -> dict[str, Any]:
        return usecases.manual_refunds(self.db, pending, limit)

    @rpc(expected_exceptions=DomainError)
    def mark_refund_paid_out(self, order_id: str, command: Any, actor: Any) -> dict[str, Any]:
        return usecases.mark_refund_paid_out(self.db, order_id, command, actor)

    @rpc(expected_exceptions=DomainError)
    def handle_webhook(self, body: str, headers: dict[str, str]) -> dict[str, Any]:
        return usecases.handle_webhook(self.db, self.provider, body, headers)
