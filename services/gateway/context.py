"""Per-request context shared by the middleware, the problem handlers and the RPC client."""

from __future__ import annotations

import re
import uuid
from contextvars import ContextVar

#: The request id of the HTTP request being served ("" outside a request). Sent back as ``X-Request-Id``,
#: put in every problem document and forwarded to services as the Nameko context ``correlation_id``.
request_id_var: ContextVar[str] = ContextVar("oms_gateway_request_id", default="")

_SAFE_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")


def accept_request_id(value: str | None) -> str:
    """The client's ``X-Request-Id`` if it is a sane token, else a fresh UUID (never echo arbitrary bytes)."""
    if value and _SAFE_ID.match(value):
        return value
    return str(uuid.uuid4())


def current_request_id() -> str:
    return request_id_var.get()
