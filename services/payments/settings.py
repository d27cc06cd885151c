"""Payments configuration that is not in ``shared.config``: the provider's webhook secret and sandbox defaults.

The webhook secret is read from ``OMS_SANDBOX_WEBHOOK_SECRET``; without it both the sandbox provider and the
payments service use :data:`DEV_WEBHOOK_SECRET`, a fixed development value, so ``oms run`` works with no
configuration (the sandbox signs and the service verifies with the same secret). Never use it for real money.
"""

from __future__ import annotations

import os

from services.payments.contracts.sandbox import WEBHOOK_PATH

DEV_WEBHOOK_SECRET = "whsec_b21zLWRldi1zYW5kYm94LXdlYmhvb2sh"
"""Development-only webhook secret shared by the sandbox provider and the payments service."""

DEFAULT_SANDBOX_PORT = 8090


def webhook_secret() -> str:
    return os.environ.get("OMS_SANDBOX_WEBHOOK_SECRET") or DEV_WEBHOOK_SECRET


def sandbox_port() -> int:
    return int(os.environ.get("OMS_SANDBOX_PORT") or DEFAULT_SANDBOX_PORT)


def default_webhook_url() -> str:
    """Where the sandbox delivers webhooks: ``OMS_SANDBOX_WEBHOOK_URL``, else the local gateway's endpoint."""
    explicit = os.environ.get("OMS_SANDBOX_WEBHOOK_URL")
    if explicit:
        return explicit
    host = os.environ.get("OMS_HTTP_HOST") or "127.0.0.1"
    if host in ("0.0.0.0", "::"):
        host = "127.0.0.1"
    port = os.environ.get("OMS_HTTP_PORT") or "8080"
    return f"http://{host}:{port}{WEBHOOK_PATH}"
