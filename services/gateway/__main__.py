"""``python -m services.gateway``: run the HTTP API with uvicorn (``oms run gateway`` calls ``serve``)."""

from __future__ import annotations

import logging
import math

import uvicorn

from services.gateway.settings import GatewaySettings, get_settings
from shared.logs import quiet_libraries


def serve(settings: GatewaySettings | None = None) -> None:
    """Run the gateway in this process until interrupted (one worker: scale with more processes)."""
    from services.gateway.app import create_app

    settings = settings or get_settings()
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    quiet_libraries(settings.log_level)
    uvicorn.run(
        create_app(settings),
        host=settings.http_host,
        port=settings.http_port,
        log_level=settings.log_level.lower(),
        workers=1,
        access_log=settings.log_level == "DEBUG",
        proxy_headers=True,
        server_header=False,
        # Requests in flight may finish (each is bounded by OMS_RPC_TIMEOUT_SECONDS); then open streams (the alert
        # stream never ends by itself) are cut, and their clients resume on another process with Last-Event-ID.
        timeout_graceful_shutdown=math.ceil(settings.rpc_timeout_seconds) + 2,
    )


if __name__ == "__main__":
    serve()
