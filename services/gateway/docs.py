"""The interactive API docs (Swagger UI at ``/api/v1/docs``, ReDoc at ``/api/v1/redoc``), served offline.

FastAPI's own docs pages load their JavaScript, CSS, favicon (and ReDoc's fonts) from CDNs, so on a machine
without internet they are blank. The assets come instead from the ``fastapi-offline`` package (pinned in
``requirements.lock``; its licence ships in its distribution), mounted under ``/api/v1/docs-assets`` and
named by same-origin paths. The assets' licences (``docs_licenses/``) are served beside them, at the paths
the bundles' own comments name (``swagger-ui-bundle.js.LICENSE.txt``) and under ``/api/v1/docs-licenses/``.
Swagger UI's validator badge (an image from validator.swagger.io) is switched off for the same
reason. Behind a proxy that sets ``root_path`` the paths carry it, as FastAPI's own do.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

import fastapi_offline
from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import FileResponse, HTMLResponse
from fastapi.staticfiles import StaticFiles

from services.gateway.routing import API_PREFIX

ASSETS_DIR = Path(fastapi_offline.__file__).parent / "static"
LICENSES_DIR = Path(__file__).parent / "docs_licenses"
LICENSES_URL = f"{API_PREFIX}/docs-licenses"
BUNDLE_LICENSES = ("swagger-ui-bundle.js.LICENSE.txt", "redoc.standalone.js.LICENSE.txt")
ASSETS_URL = f"{API_PREFIX}/docs-assets"
DOCS_URL = f"{API_PREFIX}/docs"
REDOC_URL = f"{API_PREFIX}/redoc"
OAUTH2_REDIRECT_URL = f"{DOCS_URL}/oauth2-redirect"


def install_offline_docs(app: FastAPI) -> None:
    """Mount the assets and add the two docs pages (create the app with ``docs_url=None, redoc_url=None``)."""
    openapi_url = app.openapi_url or f"{API_PREFIX}/openapi.json"
    for name in BUNDLE_LICENSES:  # before the mount, which would answer 404 for them
        app.add_api_route(f"{ASSETS_URL}/{name}", _license_file(name), include_in_schema=False)
    app.mount(LICENSES_URL, StaticFiles(directory=LICENSES_DIR), name="docs-licenses")
    app.mount(ASSETS_URL, StaticFiles(directory=ASSETS_DIR), name="docs-assets")

    @app.get(DOCS_URL, include_in_schema=False)
    async def swagger_ui(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return get_swagger_ui_html(
            openapi_url=root + openapi_url,
            title=f"{app.title} - Swagger UI",
            oauth2_redirect_url=root + OAUTH2_REDIRECT_URL,
            swagger_js_url=f"{root}{ASSETS_URL}/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{ASSETS_URL}/swagger-ui.css",
            swagger_favicon_url=f"{root}{ASSETS_URL}/favicon.png",
            swagger_ui_parameters={"validatorUrl": None},
        )

    @app.get(OAUTH2_REDIRECT_URL, include_in_schema=False)
    async def swagger_ui_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    @app.get(REDOC_URL, include_in_schema=False)
    async def redoc(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return get_redoc_html(
            openapi_url=root + openapi_url,
            title=f"{app.title} - ReDoc",
            redoc_js_url=f"{root}{ASSETS_URL}/redoc.standalone.js",
            redoc_favicon_url=f"{root}{ASSETS_URL}/favicon.png",
            with_google_fonts=False,
        )


def _license_file(name: str) -> Callable[[], Awaitable[FileResponse]]:
    async def serve() -> FileResponse:
        return FileResponse(LICENSES_DIR / name, media_type="text/plain; charset=utf-8")

    return serve
