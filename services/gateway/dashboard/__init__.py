"""The staff dashboard: a single page app with no build step and no outside assets, served by the gateway.

``static/`` holds everything the browser loads (index.html, css/app.css, js/…). :func:`install` serves the page
at ``/`` and ``/dashboard/``, the files under ``/dashboard/static/``, and puts the security headers on all of
them: a Content-Security-Policy that allows nothing but this origin (no inline script or style, no framing),
``X-Content-Type-Options: nosniff`` and ``Referrer-Policy: same-origin``. The files are revalidated on every
load (``Cache-Control: no-cache`` with their ETag), so a new version is picked up without a build step.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import FileResponse, RedirectResponse
from starlette.datastructures import MutableHeaders
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

STATIC = Path(__file__).parent / "static"
STATIC_PREFIX = "/dashboard/static"

CONTENT_SECURITY_POLICY = (
    "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; connect-src 'self'; "
    "frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
}


def is_dashboard_path(path: str) -> bool:
    return path == "/" or path == "/dashboard" or path.startswith("/dashboard/")


class DashboardHeaders:
    """Pure ASGI middleware: the security headers (and revalidation) on every dashboard answer."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not is_dashboard_path(scope.get("path", "")):
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in SECURITY_HEADERS.items():
                    headers[name] = value
                if "cache-control" not in headers:
                    headers["Cache-Control"] = "no-cache"
            await send(message)

        await self.app(scope, receive, send_with_headers)


def install(app: FastAPI) -> None:
    """Serve the dashboard from ``app`` (outside the API: no authentication; the page signs in)."""
    index = STATIC / "index.html"

    async def page() -> FileResponse:
        return FileResponse(index, media_type="text/html; charset=utf-8")

    async def to_page() -> RedirectResponse:
        return RedirectResponse("/dashboard/", status_code=307)

    app.add_api_route("/", page, methods=["GET", "HEAD"], include_in_schema=False)
    app.add_api_route("/dashboard/", page, methods=["GET", "HEAD"], include_in_schema=False)
    app.add_api_route("/dashboard", to_page, methods=["GET", "HEAD"], include_in_schema=False)
    app.mount(STATIC_PREFIX, StaticFiles(directory=STATIC), name="dashboard-static")
    app.add_middleware(DashboardHeaders)
