"""What the routes share at run time: the ``Gateway`` (settings, RPC client, database pool, authenticator,
idempotency store, placement batcher) kept on ``app.state``, and the ``gateway(request)`` dependency (which
also starts the request's time budget)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from typing import Any, Protocol

from fastapi import Request
from psycopg_pool import AsyncConnectionPool

from services.gateway.auth import ApiKeyAuthenticator, Authenticator
from services.gateway.batching import PlacementBatcher
from services.gateway.budget import Budget, use_budget
from services.gateway.idempotency import IdempotencyStore, PgIdempotencyStore
from services.gateway.rpc import AsyncRpcClient
from services.gateway.settings import GatewaySettings
from services.gateway.staff import RateLimit, StaffStore

log = logging.getLogger(__name__)

PURGE_INTERVAL_SECONDS = 900.0


class RpcClient(Protocol):
    async def call(self, service: str, method: str, *args: Any, timeout: float | None = None,
                   **kwargs: Any) -> Any: ...

    @property
    def connected(self) -> bool: ...


class Gateway:
    """What the routes need: settings, the RPC client, the DB pool, the authenticator, the idempotency store.

    Anything not passed in is created from the settings when the app starts (tests pass stand-ins)."""

    def __init__(
        self,
        settings: GatewaySettings,
        *,
        rpc: RpcClient | None = None,
        pool: AsyncConnectionPool[Any] | None = None,
        authenticator: Authenticator | None = None,
        idempotency: IdempotencyStore | None = None,
    ) -> None:
        self.settings = settings
        self._own_rpc = rpc is None
        self._own_pool = pool is None and (authenticator is None or idempotency is None)
        self.rpc: RpcClient = rpc or AsyncRpcClient(settings.amqp_url, timeout=settings.rpc_timeout_seconds)
        self.placements = PlacementBatcher(self.rpc, timeout=settings.rpc_timeout_seconds)
        self.pool = pool
        if self._own_pool:
            self.pool = AsyncConnectionPool(
                settings.database_url,
                min_size=settings.db_pool_size,
                max_size=settings.db_pool_size,
                kwargs={"autocommit": True, "application_name": "oms-gateway"},
                open=False,
                name="oms-gateway",
            )
        self.authenticator: Authenticator = authenticator or ApiKeyAuthenticator(self._require_pool())
        self.idempotency: IdempotencyStore = idempotency or PgIdempotencyStore(
            self._require_pool(), stale_after=max(60.0, 2 * settings.rpc_timeout_seconds)
        )
        # Staff sign-in and sessions (the dashboard): only with a database (tests without one: API keys only).
        self.staff: StaffStore | None = None if self.pool is None else StaffStore(
            self.pool, session_seconds=int(settings.session_hours * 3600),
            limit=RateLimit(settings.signin_max_failures_per_email, settings.signin_max_failures_per_address,
                            settings.signin_window_seconds),
        )
        self._purger: asyncio.Task[None] | None = None
        self._revocations: asyncio.Task[None] | None = None

    def _require_pool(self) -> AsyncConnectionPool[Any]:
        assert self.pool is not None, "a database pool is needed"
        return self.pool

    async def start(self) -> None:
        if self._own_pool and self.pool is not None:
            await self.pool.open(wait=False)  # connects in the background; /health reports it
        if self._own_rpc and isinstance(self.rpc, AsyncRpcClient):
            await self.rpc.start(wait=5.0)
        if isinstance(self.idempotency, PgIdempotencyStore):
            self._purger = asyncio.create_task(self._purge_forever(self.idempotency), name="idempotency-purge")
        if isinstance(self.authenticator, ApiKeyAuthenticator):
            self._revocations = asyncio.create_task(
                self.authenticator.watch_revocations(self.settings.database_url), name="api-key-revocations"
            )

    async def stop(self) -> None:
        for task in (self._purger, self._revocations):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        await self.placements.close()
        if self._own_rpc and isinstance(self.rpc, AsyncRpcClient):
            await self.rpc.close()
        if self._own_pool and self.pool is not None:
            await self.pool.close()

    @staticmethod
    async def _purge_forever(store: PgIdempotencyStore) -> None:
        while True:
            await asyncio.sleep(PURGE_INTERVAL_SECONDS * random.uniform(0.5, 1.0))
            try:
                removed = await store.purge_expired()
                if removed:
                    log.info("purged %d expired idempotency keys", removed)
            except Exception as exc:
                log.warning("purging idempotency keys failed: %s", exc)


def gateway(request: Request) -> Gateway:
    """The gateway, for a route; the first use in a request starts the request's budget (``budget.py``:
    every wait for a service in this request ends ``OMS_RPC_TIMEOUT_SECONDS`` after it)."""
    gw: Gateway = request.app.state.gateway
    scope = request.scope  # the budget is kept in the ASGI scope: cheaper than ``request.state`` on a hot path
    budget = scope.get(_BUDGET_KEY)
    if budget is None:
        budget = scope[_BUDGET_KEY] = Budget(gw.settings.rpc_timeout_seconds)
    use_budget(budget)
    return gw


_BUDGET_KEY = "oms.rpc_budget"
