"""What every router module (``services/gateway/routes/``) builds its routes with: the API prefix, the two
kinds of router (public; API key or staff session required, with the route's permission), the caller
dependency and the OpenAPI documentation shared by routes (problem answers, the ``Idempotency-Key`` header)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Request, Security
from fastapi.security import APIKeyCookie, APIKeyHeader, HTTPBearer

from services.gateway.auth import Principal, key_from_headers
from services.gateway.idempotency import HEADER as IDEMPOTENCY_HEADER
from services.gateway.permissions import SIGNED_IN, allows, required
from services.gateway.problems import Unauthorized, problem_responses
from services.gateway.staff import (
    CSRF_COOKIE,
    CSRF_HEADER,
    SESSION_COOKIE,
    CsrfRejected,
    Forbidden,
    csrf_ok,
)
from services.gateway.state import gateway

API_PREFIX = "/api/v1"

_bearer = HTTPBearer(auto_error=False, scheme_name="bearer", description="`Authorization: Bearer oms_...`")
_api_key = APIKeyHeader(name="X-API-Key", auto_error=False, scheme_name="apiKey", description="`X-API-Key: oms_...`")
_session_cookie = APIKeyCookie(name="oms_session", auto_error=False, scheme_name="session",
                               description="The dashboard's session (`POST /api/v1/session`); a change also needs "
                               "`X-CSRF-Token` with the `oms_csrf` cookie's value.")


async def authenticated(
    request: Request,
    _bearer_doc: Annotated[Any, Security(_bearer)] = None,
    _key_doc: Annotated[Any, Security(_api_key)] = None,
    _session_doc: Annotated[Any, Security(_session_cookie)] = None,
) -> Principal:
    """The caller: an API key (``Authorization``/``X-API-Key``) or else the dashboard's session cookie (401
    problem if neither is valid), allowed to call this route by its role (403 problem otherwise,
    ``permissions.ROUTE_PERMISSIONS``). A cookie-authenticated change must carry ``X-CSRF-Token`` (403)."""
    headers = request.headers
    gw = gateway(request)
    token = request.cookies.get(SESSION_COOKIE)
    if headers.get("authorization") or headers.get("x-api-key") or not token or gw.staff is None:
        key = key_from_headers(headers.get("authorization"), headers.get("x-api-key"))
        principal = await gw.authenticator.authenticate(key)
    else:
        found = await gw.staff.principal(token)
        if found is None:
            raise Unauthorized("Your session has ended: please sign in again.", headers=_SESSION_CHALLENGE)
        principal = found
        if request.method not in _SAFE_METHODS and not csrf_ok(principal.csrf, headers.get(CSRF_HEADER)):
            raise CsrfRejected(f"A change made from a signed-in page must send the {CSRF_HEADER} header with the "
                               f"value of the {CSRF_COOKIE} cookie.")
    route = request.scope.get("route")
    template = getattr(route, "path", None) or request.url.path
    if not allows(principal.role, request.method, template):
        needed = required(request.method, template)
        raise Forbidden(
            f"Your role ({principal.role}) does not allow this"
            + (f": it needs the {needed} permission." if needed and needed != SIGNED_IN else ": owners only."),
            permission=needed,
        )
    request.state.principal = principal
    return principal


_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_SESSION_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="oms"'}


Caller = Annotated[Principal, Depends(authenticated)]
Ref = Annotated[str, Path(min_length=1, max_length=64, description="Order id (UUID), number (`1001`) or `#1001`.")]


def public_router() -> APIRouter:
    """Routes anyone may call (health, provider webhooks authenticated by their signature)."""
    return APIRouter(prefix=API_PREFIX)


def api_router() -> APIRouter:
    """Routes that need an API key or a staff session, with the permission ``permissions.ROUTE_PERMISSIONS``
    gives the route (add its row there)."""
    return APIRouter(prefix=API_PREFIX, dependencies=[Depends(authenticated)])


MUTATION_PROBLEMS = problem_responses(401, 403, 404, 409, 422, 500, 502, 503, 504)
READ_PROBLEMS = problem_responses(401, 403, 404, 422, 500, 502, 503, 504)
IDEMPOTENCY_DOC = {
    "parameters": [
        {
            "name": IDEMPOTENCY_HEADER,
            "in": "header",
            "required": False,
            "description": "Any unique string (e.g. a UUID) per logical request. A retry with the same key and body "
            "gets the first answer replayed (header `Idempotent-Replayed: true`); another body gets 422; while "
            "the first is still running, 409. Keys expire after 24 hours.",
            "schema": {"type": "string", "maxLength": 255},
        }
    ]
}
