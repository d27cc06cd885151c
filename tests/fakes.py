"""Helpers for tests that stand in for a service over RPC."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from shared.errors import DomainError


async def answer_place_orders(
    place_one: Callable[..., Awaitable[Any]], requests: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """Answer the gateway's batched ``orders.place_orders`` item by item, as the orders service does."""
    answers = []
    for request in requests:
        try:
            answers.append({"result": await place_one(**request)})
        except DomainError as exc:
            answers.append({"error": {"exc_type": type(exc).__name__, "exc_args": [exc.detail, exc.extra]}})
    return answers
