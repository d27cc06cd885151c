"""A service's result checked against the route's response model before it reaches the client: a result
that does not fit is the service's fault (502), logged here, never passed on.

The one exception is the hot path of placement: ``orders.place_orders`` serializes each answer from the
contract's ``OrderDetail`` itself (``Rendered``), and the gateway passes those bytes on as they are instead
of parsing, validating and serializing the same order a second time."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any

from fastapi.responses import Response
from pydantic import BaseModel, ValidationError

from services.gateway.rpc import RemoteServiceError

log = logging.getLogger(__name__)


def view(model: type[BaseModel], result: Any, service_call: str) -> dict[str, Any]:
    """The result as the model's JSON data."""
    try:
        return model.model_validate(result).model_dump(mode="json")
    except ValidationError as exc:
        log.error("%s returned a result that is not a valid %s: %s", service_call, model.__name__, exc)
        raise RemoteServiceError(f"{service_call} returned a malformed result.") from None


def render(model: type[BaseModel], result: Any, service_call: str, status: int = 200) -> Response:
    """The result as a JSON response (serialized by the model, no intermediate dict)."""
    try:
        content = model.model_validate(result).model_dump_json().encode()
    except ValidationError as exc:
        log.error("%s returned a result that is not a valid %s: %s", service_call, model.__name__, exc)
        raise RemoteServiceError(f"{service_call} returned a malformed result.") from None
    return Response(content, status_code=status, media_type="application/json")


@dataclass(frozen=True, slots=True)
class Rendered:
    """A service's answer that the service serialized from the route's response model: sent as is.

    ``id`` is the resource's id (for ``Location``); ``data()`` parses the body, only where a copy is needed
    as data (the answer an ``Idempotency-Key`` stores for replays)."""

    body: bytes
    id: str | None = None

    def data(self) -> dict[str, Any]:
        value = json.loads(self.body)
        if not isinstance(value, dict):
            raise RemoteServiceError("The service sent a malformed result.")
        return value
