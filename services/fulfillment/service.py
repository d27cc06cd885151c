"""The fulfillment Nameko service: entrypoints only, each forwarding to its use case
(``services.fulfillment.usecases``); the RPC methods are exactly those listed in ``contracts/schemas.py``.

Fulfillment keeps stock and reservations, shipments and their tracking, returns and documents, computes each
order's fulfillment status, and publishes ``fulfillment.*`` events. It subscribes to the ``order.*`` types of
its handler table, in batches.
"""

from __future__ import annotations

from typing import Any

from nameko.rpc import rpc

from services.fulfillment import usecases
from services.fulfillment.carrier import CarrierProvider
from services.fulfillment.dependencies import CarrierDependency
from shared.consumer import subscribe
from shared.db import Database
from shared.envelope import Envelope
from shared.errors import DomainError
from shared.nameko_ext import DatabaseProvider, OutboxRelayProvider

SERVICE = "fulfillment"
EVENT_BATCH_SIZE = 100
EVENT_BATCH_WAIT = 0.005  # seconds; a batch goes when full or this long after its first event


class FulfillmentService:
    """Fulfillment: stock, shipments, carriers and labels, tracking, returns, documents."""

    name = SERVICE
    db: Database = DatabaseProvider(SERVICE)  # type: ignore[assignment]
    relay = OutboxRelayProvider(SERVICE)
    carrier: CarrierProvider = CarrierDependency()  # type: ignore[assignment]

    @subscribe("orders", usecases.ORDER_EVENT_TYPES, batch_size=EVENT_BATCH_SIZE, batch_wait=EVENT_BATCH_WAIT)
    def on_order_events(self, batch: list[tuple[Envelope, Any]]) -> None:
        usecases.handle_order_events(self.db, self.carrier, [env for env, _data in batch])

    @rpc(expected_exceptions=DomainError)
    def get_fulfillment(self, order_id: str) -> dict[str, Any]:
        return usecases.get_fulfillment(self.db, order_id)

    @rpc(expected_exceptions=DomainError)
    def mark_packed(self, order_id: str, actor: Any) -> dict[str, Any]:
        return usecases.mark_packed(self.db, order_id, actor)

    @rpc(expected_exceptions=DomainError)
    def create_shipment(self, order_id: str, command: Any, actor: Any) -> dict[str, Any]:
        return usecases.create_shipment(self.db, order_id, command, actor)

    @rpc(expected_exceptions=DomainError)
    def carrier_rates(self, order_id: str, command: Any) -> dict[str, Any]:
        return usecases.carrier_rates(self.db, self.carrier, order_id, command)

    @rpc(expected_exceptions=DomainError)
    def buy_label(self, order_id: str, command: Any, actor: Any, idempotency_key: str | None = None) -> dict[str, Any]:
        return usecases.buy_label(self.db, self.carrier, order_id, command, actor, idempotency_key)

    @rpc(expected_exceptions=DomainError)
    def get_shipment(self, shipment_id: str) -> dict[str, Any]:
        return usecases.get_shipment(self.db, shipment_id)

    @rpc(expected_exceptions=DomainError)
    def edit_shipment(self, shipment_id: str, command: Any, actor: Any) -> dict[str, Any]:
        return usecases.edit_shipment(self.db, shipment_id, command, actor)

    @rpc(expected_exceptions=DomainError)
    def mark_delivered(self, shipment_id: str, command: Any, actor: Any) -> dict[str, Any]:
        return usecases.mark_delivered(self.db, shipment_id, command, actor)

    @rpc(expected_exceptions=DomainError)
    def cancel_shipment(self, shipment_id: str, command: Any, actor: Any) -> dict[str, Any]:
        return usecases.cancel_shipment(self.db, self.carrier, shipment_id, command, actor)

    @rpc(expected_exceptions=DomainError)
    def shipment_label(self, shipment_id: str) -> dict[str, Any]:
        return usecases.shipment_label(self.db, self.carrier, shipment_id)

    @rpc(expected_exceptions=DomainError)
    def record_return(self, order_id: str, command: Any, actor: Any) -> dict[str, Any]:
        return usecases.record_return(self.db, order_id, command, actor)

    @rpc(expected_exceptions=DomainError)
    def retry_reservation(self, order_id: str, actor: Any) -> dict[str, Any]:
        return usecases.retry_reservation(self.db, order_id, actor)

    @rpc(expected_exceptions=DomainError)
    def list_stock(self, sku: str | None = None, location: str | None = None, low: bool = False, limit: int = 100,
                   after: str | None = None) -> dict[str, Any]:
        return usecases.list_stock(self.db, sku, location, low, limit, after)

    @rpc(expected_exceptions=DomainError)
    def set_stock(self, sku: str, command: Any, actor: Any) -> dict[str, Any]:
        return usecases.set_stock(self.db, sku, command, actor)

    @rpc(expected_exceptions=DomainError)
    def adjust_stock(self, sku: str, command: Any, actor: Any) -> dict[str, Any]:
        return usecases.adjust_stock(self.db, sku, command, actor)

    @rpc(expected_exceptions=DomainError)
    def stock_movements(self, sku: str, limit: int = 100) -> dict[str, Any]:
        return usecases.stock_movements(self.db, sku, limit)

    @rpc(expected_exceptions=DomainError)
    def reconcile_stock(self, fix: bool = False) -> dict[str, Any]:
        return usecases.reconcile_stock(self.db, fix)

    @rpc(expected_exceptions=DomainError)
    def render_document(self, kind: str, ref: str, fmt: str = "html") -> dict[str, Any]:
        return usecases.render_document(self.db, kind, ref, fmt)

    @rpc(expected_exceptions=DomainError)
    def render_packing_slips(self, order_ids: list[str], fmt: str = "pdf") -> dict[str, Any]:
        return usecases.render_packing_slips(self.db, order_ids, fmt)

    @rpc(expected_exceptions=DomainError)
    def handle_carrier_webhook(self, body: str, headers: dict[str, str]) -> dict[str, Any]:
        return usecases.handle_carrier_webhook(self.db, self.carrier, body, headers)
