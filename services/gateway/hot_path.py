"""The hot routes of a card order answered without FastAPI's per-request machinery, with the same answers.

A placed card order is five requests (place, customer note, payment link, the provider's webhook, a read):
profiled under load, FastAPI's routing (matching every router in turn) and dependency resolution (the
security schemes, the ``authenticated`` dependency, path and body parameters, each re-solved per request)
cost more gateway CPU than the route's own work. ``HotPath`` is a pure ASGI middleware that knows those
routes in advance and does for them only what FastAPI would do that matters to the answer:

1. match the method and the route's own ``path_regex`` (the same regex FastAPI matches with);
2. read the body; parse it as JSON only under ``Content-Type: application/json``;
3. check the API key with the very ``authenticated`` dependency FastAPI would call (401 is raised from it);
4. validate the path's ``ref`` and the body with the same models and constraints;
5. call the route's own endpoint function with those values, and send its ``Response``.

Anything it is not sure about is handed to FastAPI untouched (the body replayed): another method or path, a
body that is not plain JSON or does not validate, a ref out of bounds, a mounted app (``root_path``). So
every error answer (422 with its field list, 405, 404...) still comes from FastAPI, and a route's errors
raised by the endpoint (a ``DomainError``, 503/504, 401) go to the app's own exception handlers, found the
way Starlette's ``ExceptionMiddleware`` finds them (by the exception's class hierarchy). The routes and the
OpenAPI document are unchanged: this layer is not a route and never shows in the schema.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI
from pydantic import BaseModel, ValidationError
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.gateway.routing import API_PREFIX, authenticated

#: The ``ref`` path parameter's bounds (``routing.Ref``).
_REF_MIN, _REF_MAX = 1, 64

Endpoint = Callable[..., Awaitable[Any]]


@dataclass(frozen=True, slots=True)
class HotRoute:
    """One route answered here: its endpoint is called as ``endpoint(request=, [ref=], [command=], [caller=])``."""

    method: str
    path: str  # the route's path as declared, e.g. /api/v1/orders/{ref}/customer-note
    endpoint: Endpoint
    body: type[BaseModel] | None = None  # the body's model; None: no body parameter
    body_optional: bool = False  # the body may be left out (the endpoint then gets None)
    authenticated: bool = True
    takes_caller: bool = True  # the endpoint has a ``caller`` parameter (else the router's dependency only)


def hot_routes() -> list[HotRoute]:
    """The card order's requests (placement, customer note, payment link, webhook, reading the order)."""
    from services.gateway.routes import orders, payments
    from services.orders.contracts.schemas import PlaceOrder, SetCustomerNote
    from services.payments.contracts.schemas import CreatePaymentLink

    return [
        HotRoute("POST", f"{API_PREFIX}/orders", orders.place_order, PlaceOrder),
        HotRoute("GET", f"{API_PREFIX}/orders/{{ref}}", orders.get_order, takes_caller=False),
        HotRoute("PUT", f"{API_PREFIX}/orders/{{ref}}/customer-note", orders.set_customer_note, SetCustomerNote),
        HotRoute("POST", f"{API_PREFIX}/orders/{{ref}}/payments/link", payments.create_payment_link,
                 CreatePaymentLink, body_optional=True),
        HotRoute("POST", f"{API_PREFIX}/payments/webhooks/sandbox", payments.sandbox_webhook, authenticated=False,
                 takes_caller=False),
    ]


class _Skip(Exception):
    """Not sure this request is answered as FastAPI would: hand it to FastAPI."""


class HotPath:
    """Pure ASGI middleware in front of the router (see the module docstring); install with :func:`install`."""

    def __init__(self, app: ASGIApp, fastapi_app: FastAPI, routes: list[HotRoute]) -> None:
        self.app = app
        self.fastapi_app = fastapi_app
        self._by_method: dict[str, list[tuple[Any, dict[str, Any], HotRoute]]] = {}
        self._routes: dict[tuple[str, str], Any] = {}  # put in the scope as FastAPI does (permissions read it)
        declared = {(method, route.path): route for route in _api_routes(fastapi_app) for method in route.methods}
        for hot in routes:
            route = declared.get((hot.method, hot.path))
            if route is None or route.endpoint is not hot.endpoint:
                raise RuntimeError(f"hot route {hot.method} {hot.path} is not a route of the app")
            self._by_method.setdefault(hot.method, []).append((route.path_regex, route.param_convertors, hot))
            self._routes[(hot.method, hot.path)] = route

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        candidates = self._by_method.get(scope.get("method", "")) if scope["type"] == "http" else None
        if not candidates or scope.get("root_path"):
            await self.app(scope, receive, send)
            return
        found = _first_match(candidates, scope["path"])
        if found is None:
            await self.app(scope, receive, send)
            return
        hot, params, convertors = found
        messages = await _read_body(receive)
        if messages[-1]["type"] != "http.request":  # the client went away: FastAPI's own handling
            await self.app(scope, _replaying(messages, receive), send)
            return
        body = b"".join(message.get("body", b"") for message in messages)
        replay = _replaying(messages, receive)
        try:
            response = await self._answer(scope, replay, hot, params, convertors, body)
        except _Skip:
            await self.app(scope, _replaying(messages, receive), send)
            return
        await response(scope, replay, send)

    async def _answer(self, scope: Scope, receive: Receive, hot: HotRoute, params: dict[str, str],
                      convertors: dict[str, Any], body: bytes) -> Any:
        scope["route"] = self._routes[(hot.method, hot.path)]
        request = Request(scope, receive)
        data = _json_body(request, body) if hot.body is not None else None  # FastAPI reads the body first
        try:
            kwargs: dict[str, Any] = {"request": request}
            if hot.authenticated:
                caller = await authenticated(request)
                if hot.takes_caller:
                    kwargs["caller"] = caller
            if "ref" in params:
                ref = convertors["ref"].convert(params["ref"])
                if not _REF_MIN <= len(ref) <= _REF_MAX:
                    raise _Skip
                kwargs["ref"] = ref
            if hot.body is not None:
                if data is None:
                    if not hot.body_optional:
                        raise _Skip
                    kwargs["command"] = None
                elif isinstance(data, dict):
                    try:
                        kwargs["command"] = hot.body.model_validate(data, from_attributes=True)
                    except ValidationError:
                        raise _Skip from None
                else:
                    raise _Skip
            return await hot.endpoint(**kwargs)
        except _Skip:
            raise
        except Exception as exc:
            handler = self._handler_for(exc)
            if handler is None:
                raise
            answer = handler(request, exc)
            return await answer if inspect.isawaitable(answer) else answer

    def _handler_for(self, exc: Exception) -> Callable[..., Any] | None:
        """The app's exception handler for ``exc``, looked up as Starlette's ExceptionMiddleware does."""
        handlers = self.fastapi_app.exception_handlers
        for cls in type(exc).__mro__:
            if cls in handlers:
                return handlers[cls]
        return None


def _first_match(
    candidates: list[tuple[Any, dict[str, Any], HotRoute]], path: str
) -> tuple[HotRoute, dict[str, str], dict[str, Any]] | None:
    for regex, convertors, hot in candidates:
        match = regex.match(path)
        if match is not None:
            return hot, match.groupdict(), convertors
    return None


def _api_routes(app: FastAPI) -> list[Any]:
    """Every route of the app's included routers (FastAPI keeps them per router)."""
    from services.gateway.routes import ROUTERS

    return [route for router in ROUTERS for route in router.routes if hasattr(route, "endpoint")]


def _json_body(request: Request, body: bytes) -> Any:
    """The body as FastAPI would give it to a JSON model: None when empty; skip when FastAPI would not parse
    it as plain JSON (another or no content type) or when it is not valid JSON (FastAPI answers 422)."""
    if not body:
        return None
    content_type = request.headers.get("content-type")
    if content_type is None or content_type.partition(";")[0].strip().lower() != "application/json":
        raise _Skip
    try:
        value = json.loads(body)
    except ValueError:
        raise _Skip from None
    if value is None:
        raise _Skip  # a JSON null: FastAPI's own rules apply
    return value


async def _read_body(receive: Receive) -> list[Message]:
    """The request's messages up to the end of the body (or a disconnect, then the last one)."""
    messages: list[Message] = []
    while True:
        message = await receive()
        messages.append(message)
        if message["type"] != "http.request" or not message.get("more_body", False):
            return messages


def _replaying(messages: list[Message], receive: Receive) -> Receive:
    """A ``receive`` that gives the messages already read, in order, then what the client sends next."""
    pending = list(messages)

    async def replay() -> Message:
        if pending:
            return pending.pop(0)
        return await receive()

    return replay


def install(app: FastAPI) -> None:
    """Put ``HotPath`` in front of the router (call before the other middleware is added: innermost)."""
    app.add_middleware(HotPath, fastapi_app=app, routes=hot_routes())
