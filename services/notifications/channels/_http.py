"""What the two HTTP messaging adapters (SMS, WhatsApp) share: a send is a POST with an idempotency key, and an
answer that says nothing about the message (no connection, a timeout, 5xx, 429) is a retryable failure."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx

from services.notifications.channels import ChannelError


def post_send(client: httpx.Client, path: str, idempotency_key: str, who: str,
              error_text: Callable[[httpx.Response], str], **request: Any) -> httpx.Response:
    """POST a send; the response when the provider decided (2xx, or a 4xx refusal the caller reads)."""
    headers = {**request.pop("headers", {}), "Idempotency-Key": idempotency_key}
    try:
        response = client.post(path, headers=headers, **request)
    except httpx.TransportError as exc:  # refused, reset, timed out: the outcome is unknown, the key makes it safe
        raise ChannelError(f"{who} unreachable: {type(exc).__name__}: {exc}", code="provider_unavailable",
                           retryable=True) from exc
    if response.status_code >= 500 or response.status_code == 429:
        raise ChannelError(f"{who} unavailable: HTTP {response.status_code} {error_text(response)}",
                           code="provider_unavailable", retryable=True)
    return response
