"""Order builders shared by tests: orders' contract commands and events, as the orders service makes them.

A payments test needs "an order in TND with these lines, then cancelled" without running the orders service.
These build the orders contract's own types (``PlaceOrder``, ``OrderPlaced``, ``OrderStageChanged``, ...)
with totals computed by the orders domain, and wrap them in envelopes numbered per order as the outbox does.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from services.orders.contracts import events as order_events
from services.orders.contracts.schemas import (
    Actor,
    Channel,
    LineItemView,
    PaymentMethodChoice,
    PlaceOrder,
    Stage,
    Totals,
)
from services.orders.domain import compute_totals
from shared.envelope import Envelope, EventModel, source_for
from shared.money import quantize

STAFF = Actor(type="staff", id="tester", name="Tester")

Line = tuple[str, int, str]
"""(sku, quantity, unit price as typed)."""


def place_order(
    currency: str = "EUR",
    lines: Sequence[Line] = (("MUG", 3, "10.00"), ("CAP", 1, "9.99")),
    *,
    shipping: str = "5.00",
    discount: str = "0",
    tax: str = "0",
    payment_method: str | None = "card",
    **extra: Any,
) -> PlaceOrder:
    """The orders contract's command, validated as the gateway does."""
    return PlaceOrder.model_validate({
        "channel": "web",
        "customer": {"name": "Ida Ledger", "email": "ida@example.com"},
        "items": [{"sku": sku, "name": sku.title(), "quantity": qty, "unit_price": price} for sku, qty, price in lines],
        "currency": currency,
        "shipping": shipping,
        "discount": discount,
        "tax": tax,
        "payment_method": payment_method,
        **extra,
    })


def order_placed(
    command: PlaceOrder | None = None, *, order_id: uuid.UUID | None = None, number: int = 1001,
    at: datetime | None = None,
) -> order_events.OrderPlaced:
    """``order.placed.v1`` for the command, with the orders domain's totals and line totals."""
    cmd = command or place_order()
    now = at or datetime.now(UTC)
    currency = cmd.currency
    totals = compute_totals([(i.quantity, i.unit_price) for i in cmd.items], currency, cmd.shipping, cmd.discount,
                            cmd.tax)
    return order_events.OrderPlaced(
        order_id=order_id or uuid.uuid4(), number=number, test=cmd.test, version=1, at=now, actor=STAFF,
        channel=cmd.channel or Channel.web, stage=Stage.placed,
        customer=order_events.CustomerData.model_validate(cmd.customer.model_dump()),
        items=[LineItemView(sku=i.sku, name=i.name, quantity=i.quantity, unit_price=quantize(i.unit_price, currency),
                            line_total=quantize(Decimal(i.quantity) * i.unit_price, currency)) for i in cmd.items],
        currency=currency, totals=Totals.model_validate(asdict(totals)),
        payment_method=cmd.payment_method, placed_at=now,
        shipping_address=(order_events.AddressData.model_validate(cmd.shipping_address.model_dump())
                          if cmd.shipping_address else None),
    )


@dataclass
class OrderStream:
    """One order's events as the orders service would publish them: numbered 1, 2, 3... per order."""

    placed: order_events.OrderPlaced
    stage: Stage = Stage.placed
    version: int = 1
    envelopes: list[Envelope] = field(default_factory=list)

    @classmethod
    def place(cls, command: PlaceOrder | None = None, **kw: Any) -> OrderStream:
        stream = cls(order_placed(command, **kw))
        stream._wrap(stream.placed)
        return stream

    @property
    def order_id(self) -> str:
        return str(self.placed.order_id)

    def _base(self) -> dict[str, Any]:
        self.version += 1
        p = self.placed
        return {"order_id": p.order_id, "number": p.number, "test": p.test, "version": self.version,
                "at": datetime.now(UTC), "actor": STAFF}

    def _wrap(self, event: EventModel) -> Envelope:
        env = Envelope(source=source_for("orders"), type=event.event_type, subject=self.order_id,
                       sequence=len(self.envelopes) + 1, correlationid=self.order_id, causationid=self.order_id,
                       data=event.model_dump(mode="json"))
        self.envelopes.append(env)
        return env

    def move(self, to_stage: Stage | str, reason: str | None = None) -> Envelope:
        """``order.stage_changed.v1`` from the current stage."""
        event = order_events.OrderStageChanged(**self._base(), from_stage=self.stage, to_stage=Stage(to_stage),
                                               reason=reason)
        self.stage = Stage(to_stage)
        return self._wrap(event)

    def choose_method(self, method: str, *, paid: bool = False) -> Envelope:
        """``order.payment_method_set.v1``: the customer chose how to pay (``paid``: marked paid on the order)."""
        now = datetime.now(UTC)
        event = order_events.OrderPaymentMethodSet(**self._base(), method=PaymentMethodChoice(method), paid=paid,
                                                   paid_at=now if paid else None)
        return self._wrap(event)


def order_cmd(tag: str, **overrides: Any) -> dict[str, Any]:
    """A placement request body as a client sends it (one line, EUR), named by ``tag`` so searches can find it."""
    cmd: dict[str, Any] = {
        "channel": "web",
        "customer": {"name": f"Customer {tag}", "email": f"{tag}@example.com"},
        "items": [{"sku": f"SKU-{tag}", "name": "Cotton shirt", "quantity": 2, "unit_price": "12.50"}],
        "currency": "EUR",
        "shipping": "4.90",
    }
    cmd.update(overrides)
    return cmd
