"""The HTTP API: a stateless FastAPI app in front of the Nameko services (``create_app``).

Every route is a thin translation: authenticate the API key, validate the body with the service's contract
(``services.<name>.contracts``), make one RPC call, validate the reply against the response model and answer.
The routes live in ``services/gateway/routes/``, one module per service, listed once in ``routes.ROUTERS``.
Errors of every kind are RFC 9457 problem documents (``problems.py``). All state lives in Postgres (schema
``gateway``: API keys, idempotency records), so any number of gateway processes can run side by side.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from psycopg_pool import AsyncConnectionPool

from services.gateway.auth import Authenticator
from services.gateway.dashboard import install as install_dashboard
from services.gateway.docs import install_offline_docs
from services.gateway.hot_path import install as install_hot_path
from services.gateway.idempotency import IdempotencyStore
from services.gateway.problems import install_problem_handlers, install_problem_openapi, register_route_methods
from services.gateway.routes import ROUTERS
from services.gateway.routing import API_PREFIX
from services.gateway.settings import GatewaySettings, get_settings
from services.gateway.slashes import TrailingSlashRedirect
from services.gateway.state import Gateway, RpcClient


def create_app(
    settings: GatewaySettings | None = None,
    *,
    rpc: RpcClient | None = None,
    pool: AsyncConnectionPool[Any] | None = None,
    authenticator: Authenticator | None = None,
    idempotency: IdempotencyStore | None = None,
) -> FastAPI:
    """The gateway app. Pass only ``settings`` in production; the keyword arguments replace a dependency
    (tests: an in-process RPC stand-in, a pool of a throwaway database...)."""
    settings = settings or get_settings()
    gw = Gateway(settings, rpc=rpc, pool=pool, authenticator=authenticator, idempotency=idempotency)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        await gw.start()
        try:
            yield
        finally:
            await gw.stop()

    app = FastAPI(
        title="OMS API",
        version="1.0.0",
        description=(
            "Order management API. Authenticate with an API key (`Authorization: Bearer oms_...` or "
            "`X-API-Key`), or, from the dashboard, the session cookie of `POST /api/v1/session` (changes also "
            "send `X-CSRF-Token`). Each key and staff user has a role (owner, staff, viewer). Errors are RFC "
            "9457 `application/problem+json` documents. State-changing requests "
            "accept an `Idempotency-Key` header (kept 24 hours)."
        ),
        openapi_url=f"{API_PREFIX}/openapi.json",
        docs_url=None,  # served offline by install_offline_docs
        redoc_url=None,
        redirect_slashes=False,  # TrailingSlashRedirect answers with a relative Location instead
        lifespan=lifespan,
    )
    app.state.gateway = gw
    _telemetry_checked_once(app)
    install_hot_path(app)  # innermost: in front of the router, inside the request id and problem handling
    app.add_middleware(TrailingSlashRedirect, router=app.router)  # inside RequestIdMiddleware
    install_problem_handlers(app)
    install_problem_openapi(app)
    install_offline_docs(app)
    for router in ROUTERS:
        app.include_router(router)
    register_route_methods(app, [route for router in ROUTERS for route in router.routes])
    install_dashboard(app)  # the staff dashboard at / and /dashboard/ (static files, security headers)
    return app


def _telemetry_checked_once(app: FastAPI) -> None:
    """Ask once, now, whether an OpenTelemetry provider is configured, instead of on every request.

    FastAPI's native telemetry checks the global tracer, meter and logger providers per request (reading
    environment variables each time): 5 % of the gateway's CPU under load, for nothing when, as here by
    default, no provider is configured. Auto-instrumentation (``opentelemetry-instrument``) configures the
    providers before the app is built, so it is still honoured; a provider set up later is not."""
    telemetry = getattr(app, "_native_telemetry", None)
    enabled = getattr(telemetry, "enabled", None)
    if callable(enabled) and not enabled():
        telemetry.enabled = lambda: False  # type: ignore[union-attr]


__all__ = ["Gateway", "create_app"]
