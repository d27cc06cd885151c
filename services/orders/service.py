"""The orders Nameko service: entrypoints only, each forwarding to its use case (``services.orders.usecases``).

Orders keep each order's stage, customer, address, payment method and notes, its history and the order list;
they place orders, move them through the stage machine and abandon the ones left incomplete. They publish
``order.*`` events and subscribe to the ``payment.*``, ``refund.*`` and ``fulfillment.*`` types they act on, in
batches (the stage follows the fulfillment status).
"""

from __future__ import annotations

from typing import Any

from nameko.rpc import rpc
from nameko.timer import timer

from services.orders import usecases
from services.orders.settings import get_settings
from shared.consumer import subscribe
from shared.db import Database
from shared.envelope import Envelope
from shared.errors import DomainError
from shared.nameko_ext import DatabaseProvider, OutboxRelayProvider

SERVICE = "orders"
EVENT_BATCH_SIZE = 100
EVENT_BATCH_WAIT = 0.005  # seconds; a batch goes when full or this long after its first event


class OrdersService:
    """Orders: the order stage machine, notes, search. Publishes ``order.*`` events."""

    name = SERVICE
    db: Database = DatabaseProvider(SERVICE)  # type: ignore[assignment]
    relay = OutboxRelayProvider(SERVICE)

    @rpc(expected_exceptions=DomainError)
    def place_order(self, command: Any, actor: Any, idempotency_key: str | None = None) -> dict[str, Any]:
        return usecases.place_order(self.db, command, actor, idempotency_key)

    @rpc(expected_exceptions=DomainError)
    def place_orders(
        self, requests: list[dict[str, Any]], validated: bool = False, as_json: bool = False
    ) -> list[dict[str, Any]]:
        return usecases.place_orders(self.db, requests, validated=validated, as_json=as_json)

    @rpc(expected_exceptions=DomainError)
    def get_order(self, ref: str) -> dict[str, Any]:
        return usecases.get_order(self.db, ref)

    @rpc(expected_exceptions=DomainError)
    def list_orders(self, query: Any = None) -> dict[str, Any]:
        return usecases.list_orders(self.db, query)

    @rpc(expected_exceptions=DomainError)
    def count_orders(self, query: Any = None) -> dict[str, Any]:
        return usecases.count_orders(self.db, query)

    @rpc(expected_exceptions=DomainError)
    def transition(self, ref: str, command: Any, actor: Any) -> dict[str, Any]:
        return usecases.transition(self.db, ref, command, actor)

    @rpc(expected_exceptions=DomainError)
    def set_address(self, ref: str, command: Any, actor: Any) -> dict[str, Any]:
        return usecases.set_address(self.db, ref, command, actor)

    @rpc(expected_exceptions=DomainError)
    def set_payment_method(self, ref: str, command: Any, actor: Any) -> dict[str, Any]:
        return usecases.set_payment_method(self.db, ref, command, actor)

    @rpc(expected_exceptions=DomainError)
    def set_customer_note(self, ref: str, command: Any, actor: Any) -> dict[str, Any]:
        return usecases.set_customer_note(self.db, ref, command, actor)

    @rpc(expected_exceptions=DomainError)
    def change_customer(self, ref: str, command: Any, actor: Any) -> dict[str, Any]:
        return usecases.change_customer(self.db, ref, command, actor)

    @rpc(expected_exceptions=DomainError)
    def add_note(self, ref: str, command: Any, actor: Any) -> dict[str, Any]:
        return usecases.add_note(self.db, ref, command, actor)

    @rpc(expected_exceptions=DomainError)
    def edit_note(self, ref: str, note_id: str, command: Any, actor: Any) -> dict[str, Any]:
        return usecases.edit_note(self.db, ref, note_id, command, actor)

    @rpc(expected_exceptions=DomainError)
    def delete_note(self, ref: str, note_id: str, actor: Any) -> dict[str, Any]:
        return usecases.delete_note(self.db, ref, note_id, actor)

    @rpc
    def status_machine(self) -> dict[str, Any]:
        return usecases.status_machine()

    @subscribe("payments", usecases.PAYMENT_EVENT_TYPES, batch_size=EVENT_BATCH_SIZE, batch_wait=EVENT_BATCH_WAIT)
    def on_payment_events(self, batch: list[tuple[Envelope, Any]]) -> None:
        usecases.handle_payment_events(self.db, [env for env, _data in batch])

    @subscribe(
        "fulfillment", usecases.FULFILLMENT_EVENT_TYPES, batch_size=EVENT_BATCH_SIZE, batch_wait=EVENT_BATCH_WAIT
    )
    def on_fulfillment_events(self, batch: list[tuple[Envelope, Any]]) -> None:
        usecases.handle_fulfillment_events(self.db, [env for env, _data in batch])

    @timer(interval=get_settings().abandon_check_interval_seconds)
    def abandon_stale_orders(self) -> None:
        settings = get_settings()
        usecases.abandon_stale_orders(
            self.db,
            settings.abandon_after_seconds,
            batch_size=settings.abandon_batch_size,
            time_budget_seconds=settings.abandon_check_budget_seconds,
        )
