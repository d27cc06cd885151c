"""What every router module (``services/gateway/routes/``) builds its routes with: the API prefix, the two
kinds of router (public, API key required), the caller dependency and the OpenAPI documentation shared by
routes (problem answers, the ``Idempotency-Key`` header)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Request, Security
from fastapi.security import APIKeyHeader, HTTPBearer

from services.gateway.auth import Principal, key_from_headers
from services.gateway.idempotency import HEADER as IDEMPOTENCY_HEADER
from services.gateway.problems import problem_responses
from services.gateway.state import gateway

API_PREFIX = "/api/v1"

_bearer = HTTPBearer(auto_error=False, scheme_name="bearer", description="`Authorization: Bearer oms_...`")
_api_key = APIKeyHeader(name="X-API-Key", auto_error=False, scheme_name="apiKey", description="`X-API-Key: oms_...`")


async def authenticated(
    request: Request,
    _bearer_doc: Annotated[Any, Security(_bearer)] = None,
    _key_doc: Annotated[Any, Security(_api_key)] = None,
) -> Principal:
    """The caller's API key (401 problem if missing, unknown or revoked)."""
    headers = request.headers
    key = key_from_headers(headers.get("authorization"), headers.get("x-api-key"))
    principal = await gateway(request).authenticator.authenticate(key)
    request.state.principal = principal
    return principal


Caller = Annotated[Principal, Depends(authenticated)]
Ref = Annotated[str, Path(min_length=1, max_length=64, description="Order id (UUID), number (`1001`) or `#1001`.")]


def public_router() -> APIRouter:
    """Routes anyone may call (health, provider webhooks authenticated by their signature)."""
    return APIRouter(prefix=API_PREFIX)


def api_router() -> APIRouter:
    """Routes that need an API key."""
    return APIRouter(prefix=API_PREFIX, dependencies=[Depends(authenticated)])


MUTATION_PROBLEMS = problem_responses(401, 404, 409, 422, 500, 502, 503, 504)
READ_PROBLEMS = problem_responses(401, 404, 422, 500, 502, 503, 504)
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
