"""How a router speaks of one order to a service that learns of orders from their events.

Payments, fulfillment and notifications know an order by id only, and only once its ``order.placed`` reached
them, a few milliseconds after orders committed it. So a route given ``1001`` or ``#1001`` asks orders for the
id first, and a call that such a service answers "not found" for an order orders DO know is that lag: it is
tried again for a bounded moment, then answered 503 with ``Retry-After``. An id nobody placed stays a plain
404 (orders say so). The services raise ``NotFound`` before changing anything, so calling again is safe.
"""

from __future__ import annotations

import asyncio
from typing import Any
from uuid import UUID

from fastapi import Request

from services.gateway.rpc import ServiceUnavailable
from services.gateway.state import gateway
from shared.errors import NotFound

CATCH_UP_SECONDS = 3.0


async def order_by_ref(request: Request, ref: str) -> dict[str, Any]:
    """The order for a ref (id, number or #number), from orders (404 there when nobody placed it)."""
    order: dict[str, Any] = await gateway(request).rpc.call("orders", "get_order", ref=ref)
    return order


async def order_id_of(request: Request, ref: str) -> str:
    """An order id as is (the service checks it: no round trip); a number is looked up in orders."""
    try:
        return str(UUID(ref))
    except ValueError:
        return str((await order_by_ref(request, ref))["id"])


async def call_about_order(request: Request, service: str, order_id: str, method: str, /, *,
                           catch_up: float = CATCH_UP_SECONDS, **kwargs: Any) -> Any:
    """``service.method(**kwargs)`` about ``order_id``, waiting (at most ``catch_up`` seconds) while the service
    has not yet heard of an order that orders know."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + catch_up
    delay = 0.02
    known_to_orders = False
    while True:
        try:
            return await gateway(request).rpc.call(service, method, **kwargs)
        except NotFound as exc:
            if str(exc.extra.get("order_id")) != str(order_id):
                raise
            if not known_to_orders:
                await order_by_ref(request, order_id)
                known_to_orders = True
            if loop.time() > deadline:
                raise ServiceUnavailable(
                    f"The {service} service has not caught up with order {order_id} yet; try again in a moment.",
                    headers={"Retry-After": "1"}, order_id=order_id,
                ) from None
        await asyncio.sleep(delay)
        delay = min(delay * 2, 0.25)
