"""The gateway's routes, one module per service it fronts (plus ``system`` for the gateway itself).

Each module builds its routers with ``services.gateway.routing`` (``public_router()``, ``api_router()``) and
lists them in ``ROUTERS``. A new service adds its module here, once; the app includes them in this order.
"""

from __future__ import annotations

from fastapi import APIRouter

from services.gateway.routes import fulfillment, notifications, orders, payments, session, system

ROUTERS: tuple[APIRouter, ...] = (*system.ROUTERS, *session.ROUTERS, *orders.ROUTERS, *payments.ROUTERS,
                                  *fulfillment.ROUTERS, *notifications.ROUTERS)
