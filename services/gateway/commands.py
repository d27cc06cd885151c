"""State-changing requests: one RPC call, honouring ``Idempotency-Key`` (``execute``), and the factory of the
common command route ``ref + body -> <service>.<method>(ref, command, actor)`` (``command_route``)."""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel

from services.gateway.auth import Principal
from services.gateway.idempotency import HEADER as IDEMPOTENCY_HEADER
from services.gateway.idempotency import REPLAYED_HEADER, StoredResponse, check_key, request_hash
from services.gateway.problems import PROBLEM_JSON, domain_error_body
from services.gateway.state import gateway
from services.gateway.views import Rendered, view
from shared.errors import DomainError

log = logging.getLogger(__name__)

# The Location of a created or changed resource, from the answer's data (None: no Location header).
Locator = Callable[[dict[str, Any]], str | None]


def _location(locate: Locator | None, data: dict[str, Any]) -> dict[str, str]:
    where = locate(data) if locate is not None else None
    return {"Location": where} if where else {}


async def execute(
    request: Request,
    principal: Principal,
    body: Any,
    call: Callable[[str | None], Awaitable[Any]],
    model: type[BaseModel],
    service_call: str,
    status: int = 200,
    *,
    locate: Locator | None = None,
) -> Response:
    """Run a state-changing RPC call, honouring ``Idempotency-Key``; ``call`` gets the client's key (or None).
    The key is forwarded as is: ``orders.place_order`` scopes it by the actor id itself."""
    raw_key = request.headers.get(IDEMPOTENCY_HEADER)
    if raw_key is None:
        result = await call(None)
        if isinstance(result, Rendered):  # serialized by the service from ``model``: passed on as is
            return Response(result.body, status_code=status, media_type="application/json",
                            headers=_location(locate, {"id": result.id}))
        data = view(model, result, service_call)
        return JSONResponse(data, status_code=status, headers=_location(locate, data))

    key = check_key(raw_key)
    store = gateway(request).idempotency
    path = request.url.path
    fingerprint = request_hash(request.method, path, body)
    stored = await store.begin(principal.id, key, request.method, path, fingerprint)
    if stored is not None:
        return _answer(stored, replayed=True)
    try:
        try:
            result = await call(key)
            data = result.data() if isinstance(result, Rendered) else view(model, result, service_call)
            answer = StoredResponse(status, data, {"Content-Type": "application/json", **_location(locate, data)})
        except DomainError as exc:  # a definite answer about this request: replay it too
            answer = StoredResponse(exc.status, domain_error_body(exc, path), {"Content-Type": PROBLEM_JSON})
    except BaseException:
        # Maybe transient (503/504/crash): free the key so the client can retry.
        with contextlib.suppress(Exception):
            await store.abandon(principal.id, key)
        raise
    try:
        await store.finish(principal.id, key, answer)
    except Exception as exc:  # the change is made: answer it anyway; a retry within stale_after gets 409
        log.error("could not store the answer for Idempotency-Key %r: %s", key, exc)
    return _answer(answer, replayed=False)


def _answer(stored: StoredResponse, *, replayed: bool) -> Response:
    headers = dict(stored.headers)
    media_type = headers.pop("Content-Type", "application/json")
    if replayed:
        headers[REPLAYED_HEADER] = "true"
    content = json.dumps(stored.body, separators=(",", ":"), ensure_ascii=False).encode()
    return Response(content, status_code=stored.status_code, headers=headers, media_type=media_type)


CommandHandler = Callable[[Request, str, BaseModel, Principal], Awaitable[Response]]


def command_route(
    service: str, method_name: str, model: type[BaseModel], summary: str, *, locate: Locator | None = None
) -> CommandHandler:
    """``PUT/POST .../{ref}/...`` -> ``<service>.<method_name>(ref=ref, command=body, actor=caller)``, answered
    with ``model``; the route function keeps its own signature (it documents the body) and calls this."""

    async def handler(request: Request, ref: str, command: BaseModel, caller: Principal) -> Response:
        payload = command.model_dump(mode="json")

        async def call(_key: str | None) -> Any:
            return await gateway(request).rpc.call(
                service, method_name, ref=ref, command=payload, actor=caller.actor()
            )

        return await execute(request, caller, payload, call, model, f"{service}.{method_name}", locate=locate)

    handler.__doc__ = summary
    return handler
