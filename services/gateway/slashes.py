"""``/api/v1/orders/`` answers ``307`` to ``/api/v1/orders`` (query kept) with a *relative* ``Location``.

Starlette's own trailing-slash redirect builds an absolute URL from the request's ``Host`` header and
scheme. Behind a proxy or load balancer those are the gateway's internal address and plain ``http``, so a
client following the redirect would leave the public address (or drop TLS). A path-only ``Location`` (RFC
9110 allows a relative reference) is resolved by the client against the URL it actually used. ``307`` keeps
the method and body, so a ``POST /orders/`` is not turned into a ``GET``.
"""

from __future__ import annotations

from starlette.responses import RedirectResponse
from starlette.routing import Match, Router
from starlette.types import ASGIApp, Receive, Scope, Send


class TrailingSlashRedirect:
    """Pure ASGI middleware: a path that matches no route but would without its trailing slash is redirected
    (create the app with ``redirect_slashes=False``)."""

    def __init__(self, app: ASGIApp, router: Router) -> None:
        self.app = app
        self.router = router

    def _matches(self, scope: Scope, path: str) -> bool:
        probe = {**scope, "path": path}
        return any(route.matches(probe)[0] != Match.NONE for route in self.router.routes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope.get("path", "")
        if scope["type"] == "http" and len(path) > 1 and path.endswith("/"):
            bare = path.rstrip("/")
            if bare and not self._matches(scope, path) and self._matches(scope, bare):
                query = scope.get("query_string", b"").decode("latin-1")
                location = scope.get("root_path", "") + bare + (f"?{query}" if query else "")
                await RedirectResponse(location, status_code=307)(scope, receive, send)
                return
        await self.app(scope, receive, send)
