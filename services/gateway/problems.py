"""RFC 9457 problem documents (``application/problem+json``) for every error the gateway returns.

Every non-2xx answer has the same shape: ``type`` (a URN naming the kind of problem), ``title``, ``status``,
``detail``, ``instance`` (the request path), ``request_id`` (the ``X-Request-Id``), plus extension members:
``errors`` for validation problems, and the ``extra`` fields of a service's ``DomainError`` (``order_id``,
``stage``, ``allowed``...). Tracebacks never leave the process: an unexpected exception is logged with the
request id and answered with a 500 that carries only that id.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from http import HTTPStatus
from typing import Any, Literal

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.gateway.context import accept_request_id, current_request_id, request_id_var
from shared.errors import PROBLEM_TYPE_PREFIX, DomainError, complete_errors, field_error, slugify

log = logging.getLogger(__name__)

PROBLEM_JSON = "application/problem+json"
TYPE_PREFIX = PROBLEM_TYPE_PREFIX
_RESERVED = frozenset({"type", "title", "status", "detail", "instance", "request_id"})


# --------------------------------------------------------------------------------------------------- models
class Problem(BaseModel):
    """An RFC 9457 problem document. Extension members depend on ``type``."""

    model_config = ConfigDict(extra="allow")

    type: str = Field(pattern=r"^urn:oms:problem:[a-z0-9-]+$",
                      description="URN naming the kind of problem, e.g. `urn:oms:problem:not-found`.")
    title: str = Field(description="Short summary of the kind of problem.")
    status: int = Field(ge=400, le=599, description="The HTTP status code.")
    detail: str | None = Field(None, description="What went wrong in this occurrence.")
    instance: str | None = Field(None, description="The request path.")
    request_id: str | None = Field(None, description="The request's X-Request-Id; quote it when reporting.")
    # Extension members of problems about one order (present only then), with their JSON types.
    order_id: str | None = Field(None, description="The order's id, when the problem is about one order.")
    number: int | None = Field(None, description="The order's number (`1001` for #1001).")
    stage: str | None = Field(None, description="The order's current stage.")
    held_from: str | None = Field(None, description="For an order on hold: the stage it resumes to.")
    allowed: list[str] | None = Field(None, description="Illegal transition: the stages the order can move to.")
    requested: str | None = Field(None, description="Illegal transition: the stage asked for.")
    expected_version: int | None = Field(None, description="Version conflict: the version the request expected.")
    current_version: int | None = Field(None, description="Version conflict: the order's version now.")


class FieldError(BaseModel):
    field: str = Field(description="Path of the offending value, e.g. `items[0].quantity`; `\"\"` = the whole body.")
    location: Literal["body", "query", "path", "header", "cookie"] = Field(
        description="Where the value was sent: `body`, `query`, `path`, `header` or `cookie`.")
    reason: str = Field(description="Why the value was rejected, for a person.")
    code: str = Field(pattern=r"^[a-z][a-z0-9_]*$", description="Why, for a program: pydantic's error type "
                      "(`greater_than`, `missing`...) or the service's own (`too_many_decimals`, "
                      "`exceeds_refundable`...).")


class ValidationProblem(Problem):
    errors: list[FieldError] = Field(default_factory=list, description="One entry per invalid field.")


# --------------------------------------------------------------------------------------------------- errors
class ProblemError(Exception):
    """An error raised inside the gateway that is answered with a problem document."""

    status: int = 500
    title: str = "Internal server error"
    slug: str = "internal-error"

    def __init__(
        self,
        detail: str | None = None,
        *,
        status: int | None = None,
        title: str | None = None,
        slug: str | None = None,
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(detail or self.title)
        self.detail = detail
        if status is not None:
            self.status = status
        if title is not None:
            self.title = title
        if slug is not None:
            self.slug = slug
        self.headers = headers or {}
        self.extra = extra


class Unauthorized(ProblemError):
    status = 401
    title = "Unauthorized"
    slug = "unauthorized"


# --------------------------------------------------------------------------------------------------- bodies
class ProblemResponse(JSONResponse):
    media_type = PROBLEM_JSON


def problem_body(
    status: int,
    title: str,
    detail: str | None = None,
    *,
    slug: str | None = None,
    type_uri: str | None = None,
    instance: str | None = None,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The problem document; its ``type`` is ``type_uri``, else ``urn:oms:problem:<slug>``, else named after
    the status (``404`` -> ``urn:oms:problem:not-found``)."""
    body: dict[str, Any] = {
        "type": type_uri or TYPE_PREFIX + (slug or slugify(HTTPStatus(status).phrase.replace(" ", ""))),
        "title": title,
        "status": status,
    }
    if detail:
        body["detail"] = detail
    if instance:
        body["instance"] = instance
    body["request_id"] = current_request_id() or None
    for key, value in (extra or {}).items():
        if key not in _RESERVED:
            body[key] = value
    return body


def problem_response(
    status: int,
    title: str,
    detail: str | None = None,
    *,
    slug: str | None = None,
    instance: str | None = None,
    headers: Mapping[str, str] | None = None,
    extra: dict[str, Any] | None = None,
) -> ProblemResponse:
    return ProblemResponse(
        problem_body(status, title, detail, slug=slug, instance=instance, extra=extra),
        status_code=status,
        headers=headers,
    )


def domain_error_body(exc: DomainError, instance: str | None = None) -> dict[str, Any]:
    """Any ``DomainError``, local or rebuilt from a service's reply (``shared.errors.from_wire``), from what it
    carries: its type, title and status, its detail and its extra fields. No error class is named here.
    Its ``errors`` entries are completed to the published ``FieldError`` shape (``complete_errors``)."""
    extra = dict(exc.extra)
    if isinstance(extra.get("errors"), list | tuple):
        extra["errors"] = complete_errors(extra["errors"])
    return problem_body(exc.status, exc.title, exc.detail, type_uri=exc.type, instance=instance, extra=extra)


def problem_error_body(exc: ProblemError, instance: str | None = None) -> dict[str, Any]:
    return problem_body(exc.status, exc.title, exc.detail, slug=exc.slug, instance=instance, extra=exc.extra)


def field_path(loc: Sequence[Any]) -> str:
    """``('body', 'items', 0, 'quantity')`` -> ``items[0].quantity`` (the location is reported apart), the
    same naming as ``services.orders.contracts.schemas.field_path`` so the gateway and the service agree."""
    out = ""
    for part in loc[1:] if loc and loc[0] in ("body", "query", "path", "header", "cookie") else loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out  # "" = the whole body (e.g. "give either a note or skip=true")


def validation_errors(errors: Iterable[dict[str, Any]]) -> list[dict[str, str]]:
    result = []
    for err in errors:
        loc = tuple(err.get("loc") or ())
        location = str(loc[0]) if loc and loc[0] in ("body", "query", "path", "header", "cookie") else "body"
        code = str(err.get("type", "invalid"))
        if code == "json_invalid":
            field = ""
            reason = f"Invalid JSON: {err.get('ctx', {}).get('error', err.get('msg', ''))}"
        else:
            field = field_path(loc)
            reason = str(err.get("msg", "invalid value")).removeprefix("Value error, ")
        result.append(field_error(field, reason, code, location))
    return result


# --------------------------------------------------------------------------------------------------- handlers
async def _validation_handler(request: Request, exc: Exception) -> ProblemResponse:
    assert isinstance(exc, RequestValidationError)
    errors = validation_errors(exc.errors())
    fields = ", ".join(dict.fromkeys(e["field"] or "(body)" for e in errors))
    detail = f"{len(errors)} invalid field{'s' if len(errors) != 1 else ''}: {fields}"
    return problem_response(
        422, "Request validation failed", detail, slug="validation-error", instance=request.url.path,
        extra={"errors": errors},
    )


async def _domain_handler(request: Request, exc: Exception) -> ProblemResponse:
    assert isinstance(exc, DomainError)
    return ProblemResponse(domain_error_body(exc, request.url.path), status_code=exc.status)


async def _problem_handler(request: Request, exc: Exception) -> ProblemResponse:
    assert isinstance(exc, ProblemError)
    if exc.status >= 500:
        log.warning("request %s failed: %s %s", current_request_id(), exc.status, exc)
    return ProblemResponse(problem_error_body(exc, request.url.path), status_code=exc.status, headers=exc.headers)


async def _http_handler(request: Request, exc: Exception) -> ProblemResponse:
    assert isinstance(exc, StarletteHTTPException)
    status = exc.status_code
    phrase = HTTPStatus(status).phrase if status in HTTPStatus._value2member_map_ else "Error"
    detail: str | None = exc.detail if isinstance(exc.detail, str) and exc.detail != phrase else None
    if status == 404 and detail is None:
        detail = f"No route matches {request.url.path}"
    headers = exc.headers
    if status == 405:
        detail = detail or f"{request.method} is not allowed on {request.url.path}"
        allowed = _allowed_methods(request)
        if allowed:  # Starlette names only the first route that matched the path
            headers = {**(headers or {}), "Allow": ", ".join(allowed)}
    return problem_response(status, phrase, detail, instance=request.url.path, headers=headers)


def register_route_methods(app: FastAPI, routes: Iterable[Any]) -> None:
    """Remember (path regex, methods) of every route, for the ``Allow`` header of 405 answers."""
    table = [
        (route.path_regex, frozenset(route.methods))
        for route in [*app.router.routes, *routes]
        if getattr(route, "path_regex", None) is not None and getattr(route, "methods", None)
    ]
    app.state.route_methods = table


def _allowed_methods(request: Request) -> list[str]:
    path = request.scope.get("path", "")
    methods: set[str] = set()
    for regex, route_methods in getattr(request.app.state, "route_methods", ()):
        if regex.match(path):
            methods.update(route_methods)
    return sorted(methods)


def install_problem_handlers(app: FastAPI) -> None:
    app.add_exception_handler(RequestValidationError, _validation_handler)
    app.add_exception_handler(DomainError, _domain_handler)
    app.add_exception_handler(ProblemError, _problem_handler)
    app.add_exception_handler(StarletteHTTPException, _http_handler)
    app.add_middleware(RequestIdMiddleware)


# --------------------------------------------------------------------------------------------------- middleware
class RequestIdMiddleware:
    """Pure ASGI middleware (no per-request task like BaseHTTPMiddleware): assigns the request id, echoes it
    as ``X-Request-Id``, and turns an exception nobody handled into a 500 problem with no traceback."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        raw = None
        for name, value in scope["headers"]:
            if name == b"x-request-id":
                raw = value.decode("latin-1")
                break
        request_id = accept_request_id(raw)
        token = request_id_var.set(request_id)
        header = (b"x-request-id", request_id.encode("latin-1"))
        started = False

        async def send_with_id(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                message["headers"] = [*message.get("headers", ()), header]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception:
            log.exception("unhandled error in request %s %s (request id %s)",
                          scope.get("method"), scope.get("path"), request_id)
            if started:
                raise
            response = problem_response(
                500, "Internal server error",
                f"An unexpected error occurred; quote request id {request_id} when reporting it.",
                slug="internal-error", instance=scope.get("path"),
            )
            await response(scope, receive, send_with_id)
        finally:
            request_id_var.reset(token)


# --------------------------------------------------------------------------------------------------- OpenAPI
_STANDARD_PROBLEMS = {
    401: "Missing, unknown or revoked API key.",
    404: "No such resource.",
    409: "Conflict with the current state (illegal transition, version conflict, request in progress).",
    422: "The request is invalid.",
    500: "Unexpected error (the body carries the request id).",
    502: "A service answered with an unexpected error.",
    503: "A service is unreachable.",
    504: "A service did not answer in time.",
}


def problem_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """``responses=`` for a route: each listed status answered with a problem document."""
    out: dict[int | str, dict[str, Any]] = {}
    for code in codes:
        model = ValidationProblem if code == 422 else Problem
        out[code] = {"model": model, "description": _STANDARD_PROBLEMS.get(code, HTTPStatus(code).phrase)}
    return out


def install_problem_openapi(app: FastAPI) -> None:
    """Generate the OpenAPI document with every 4xx/5xx answer typed as ``application/problem+json`` (FastAPI
    would label them ``application/json`` and use its own ``HTTPValidationError`` for 422)."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = get_openapi(
            title=app.title, version=app.version, openapi_version=app.openapi_version,
            description=app.description, routes=app.routes, tags=app.openapi_tags, servers=app.servers,
        )
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        for model in (Problem, ValidationProblem, FieldError):
            if model.__name__ not in components:
                components[model.__name__] = model.model_json_schema(ref_template="#/components/schemas/{model}")
                components.update(components[model.__name__].pop("$defs", {}))
        for path_item in schema.get("paths", {}).values():
            for operation in path_item.values():
                if not isinstance(operation, dict) or "responses" not in operation:
                    continue
                for code, response in operation["responses"].items():
                    if str(code)[:1] not in ("4", "5"):
                        continue
                    ref = "ValidationProblem" if str(code) == "422" else "Problem"
                    content = response.setdefault("content", {})
                    existing = content.pop("application/json", None) or {}
                    schema_ref = existing.get("schema", {}).get("$ref", "")
                    if schema_ref.endswith("/HTTPValidationError") or not schema_ref:
                        existing = {"schema": {"$ref": f"#/components/schemas/{ref}"}}
                    content[PROBLEM_JSON] = existing
                    if str(code) == "422":
                        response["description"] = _STANDARD_PROBLEMS[422]
        components.pop("HTTPValidationError", None)
        components.pop("ValidationError", None)
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]

