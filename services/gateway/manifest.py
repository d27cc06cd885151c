"""The HTTP gateway, as the registry knows it (see ``shared.registry`` and docs/adding-a-service.md).

It runs no Nameko service: its process is the uvicorn server (``python -m services.gateway``). It owns the
``gateway`` schema (API keys, idempotency records) and the ``oms apikey`` commands that manage those keys.
"""

from __future__ import annotations

from pathlib import Path

from shared.registry import Process, ServiceSpec

SERVICE = ServiceSpec(
    name="gateway",
    schema="gateway",
    migrations=Path(__file__).parent / "migrations",
    backbone=False,
    settings="services.gateway.settings:GatewaySettings",
    processes=(Process("gateway", ("-m", "services.gateway")),),
    cli="services.gateway.cli:app",
)
