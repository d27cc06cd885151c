"""Signing in to the dashboard (``/session``), staff users (``/staff``) and API keys (``/apikeys``).

``POST /session`` is public (it is how one gets a session) and rate-limited (``staff.StaffStore.sign_in``);
everything else goes through ``routing.authenticated`` like every other route, so its permission is the row
of ``permissions.ROUTE_PERMISSIONS``: any signed-in caller for their own session, ``staff.manage`` for staff
users, ``apikeys.manage`` for API keys (both owners only).
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any

import psycopg
from fastapi import Path, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field

from services.gateway.auth import KEY_PREFIX, Principal, generate_key, hash_key
from services.gateway.permissions import ROLES, permissions_of
from services.gateway.problems import problem_responses
from services.gateway.routing import Caller, api_router, public_router
from services.gateway.staff import (
    CSRF_COOKIE,
    SESSION_COOKIE,
    StaffStore,
    check_role,
    generate_password,
)
from services.gateway.state import gateway
from shared.errors import NotFound

public = public_router()
router = api_router()

Role = Annotated[str, Field(description=f"One of {', '.join(ROLES)}.", examples=["staff"])]


class SignInBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    email: str = Field(min_length=1, max_length=254, description="The staff member's e-mail address.")
    password: str = Field(min_length=1, max_length=256)


class SessionView(BaseModel):
    id: str = Field(description="The staff user's id, or the API key's id.")
    kind: str = Field(description="`staff` (signed in to the dashboard) or `api_key`.")
    name: str
    email: str | None
    role: str
    permissions: list[str] = Field(description="What the caller may do (`permissions.py`); the page hides the rest.")


class StaffView(BaseModel):
    id: str
    email: str
    name: str
    role: str
    active: bool
    created_at: str
    disabled_at: str | None


class NewStaff(BaseModel):
    model_config = ConfigDict(extra="forbid")
    email: str = Field(min_length=1, max_length=254)
    name: str = Field(min_length=1, max_length=200)
    role: Role
    password: str | None = Field(None, description="At least 10 characters; left out: one is generated and "
                                 "returned once as `password`.")


class CreatedStaff(StaffView):
    password: str | None = Field(None, description="The generated password (only when none was given), shown once.")


class StaffChange(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str | None = Field(None, min_length=1, max_length=200)
    role: Role | None = None
    password: str | None = Field(None, description="A new password (ends the user's sessions).")
    active: bool | None = Field(None, description="false disables the user (ends their sessions); true enables.")


class ApiKeyView(BaseModel):
    id: str
    name: str
    prefix: str
    role: str
    active: bool
    created_at: str
    last_used_at: str | None
    revoked_at: str | None


class NewApiKey(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=200, description="Who or what uses the key.")
    role: Role = "owner"


class CreatedApiKey(ApiKeyView):
    key: str = Field(description="The key itself: shown only in this answer (stored as a hash).")


UserId = Annotated[uuid.UUID, Path(description="The staff user's id.")]
KeyId = Annotated[uuid.UUID, Path(description="The API key's id.")]


def _session_view(principal: Principal) -> dict[str, Any]:
    return {"id": str(principal.id), "kind": principal.kind, "name": principal.name, "email": principal.email,
            "role": principal.role, "permissions": sorted(permissions_of(principal.role))}


def _staff_store(request: Request) -> StaffStore:
    store = gateway(request).staff
    if store is None:
        raise NotFound("Staff sign-in needs the gateway's database.")
    return store


def _secure(request: Request) -> bool:
    """Secure cookies over https (the request's own scheme, or the public address's behind a proxy)."""
    public_url = str(getattr(gateway(request).settings, "public_url", "") or "")
    return request.url.scheme == "https" or public_url.startswith("https://")


# ------------------------------------------------------------------------------------------------ session
@public.post("/session", response_model=SessionView, tags=["session"],
             responses=problem_responses(401, 422, 429), summary="Sign in to the dashboard (sets the cookies)")
async def sign_in(request: Request, body: SignInBody) -> Response:
    """Sets ``oms_session`` (HttpOnly) and ``oms_csrf`` (read by the page, echoed in ``X-CSRF-Token``).
    A wrong e-mail or password: 401 naming the ``password`` field; too many failures: 429 with Retry-After."""
    store = _staff_store(request)
    client = request.client.host if request.client else None
    done = await store.sign_in(body.email, body.password, client)
    principal = Principal(id=done.user.id, name=done.user.name, prefix="", kind="staff", role=done.user.role,
                          email=done.user.email)
    response = JSONResponse(_session_view(principal), headers={"Cache-Control": "no-store"})
    secure = _secure(request)
    response.set_cookie(SESSION_COOKIE, done.token, max_age=done.max_age, path="/", httponly=True,
                        samesite="lax", secure=secure)
    response.set_cookie(CSRF_COOKIE, done.csrf, max_age=done.max_age, path="/", httponly=False,
                        samesite="lax", secure=secure)
    return response


@router.get("/session", response_model=SessionView, tags=["session"], responses=problem_responses(401),
            summary="Who is calling: the signed-in staff member or the API key, with their permissions")
async def get_session(caller: Caller) -> Response:
    return JSONResponse(_session_view(caller), headers={"Cache-Control": "no-store"})


@router.delete("/session", status_code=204, tags=["session"], responses=problem_responses(401, 403),
               summary="Sign out (ends the session and clears its cookies)")
async def sign_out(request: Request, caller: Caller) -> Response:
    token = request.cookies.get(SESSION_COOKIE)
    if caller.kind == "staff" and token:
        await _staff_store(request).sign_out(token)
    response = Response(status_code=204)
    response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="lax", secure=_secure(request))
    response.delete_cookie(CSRF_COOKIE, path="/", samesite="lax", secure=_secure(request))
    return response


# ------------------------------------------------------------------------------------------------ staff
@router.get("/staff", response_model=list[StaffView], tags=["staff"], responses=problem_responses(401, 403),
            summary="Staff users (owners)")
async def list_staff(request: Request) -> Response:
    return JSONResponse([u.as_json() for u in await _staff_store(request).list()])


@router.post("/staff", response_model=CreatedStaff, status_code=201, tags=["staff"],
             responses=problem_responses(401, 403, 409, 422), summary="Create a staff user (owners)")
async def create_staff(request: Request, body: NewStaff) -> Response:
    password = body.password or generate_password()
    user = await _staff_store(request).create(body.email, body.name, body.role, password)
    data = {**user.as_json(), "password": None if body.password else password}
    return JSONResponse(data, status_code=201, headers={"Cache-Control": "no-store"})


@router.patch("/staff/{user_id}", response_model=StaffView, tags=["staff"],
              responses=problem_responses(401, 403, 404, 409, 422),
              summary="Change a staff user's name, role, password or whether they can sign in (owners)")
async def change_staff(request: Request, user_id: UserId, body: StaffChange) -> Response:
    user = await _staff_store(request).update(user_id, name=body.name, role=body.role, password=body.password,
                                              active=body.active)
    return JSONResponse(user.as_json())


@router.delete("/staff/{user_id}", status_code=204, tags=["staff"], responses=problem_responses(401, 403, 404, 409),
               summary="Disable a staff user: they cannot sign in and their sessions end (owners)")
async def disable_staff(request: Request, user_id: UserId) -> Response:
    await _staff_store(request).update(user_id, active=False)
    return Response(status_code=204)


# ------------------------------------------------------------------------------------------------ API keys
_KEY_COLUMNS = "id, name, prefix, created_at, last_used_at, revoked_at, role"


def _key_json(row: Any) -> dict[str, Any]:
    from services.gateway.auth import ApiKeyInfo

    return ApiKeyInfo(*row).as_json()


@router.get("/apikeys", response_model=list[ApiKeyView], tags=["apikeys"], responses=problem_responses(401, 403),
            summary="API keys (owners; the keys themselves are never shown again)")
async def list_api_keys(request: Request) -> Response:
    pool = gateway(request).pool
    assert pool is not None
    async with pool.connection() as conn:
        cur = await conn.execute(f"SELECT {_KEY_COLUMNS} FROM gateway.api_keys ORDER BY created_at, id")
        rows = await cur.fetchall()
    return JSONResponse([_key_json(row) for row in rows])


@router.post("/apikeys", response_model=CreatedApiKey, status_code=201, tags=["apikeys"],
             responses=problem_responses(401, 403, 422), summary="Create an API key (owners): the key is in "
             "this answer only")
async def create_api_key(request: Request, body: NewApiKey) -> Response:
    role = check_role(body.role)
    name = body.name.strip()
    pool = gateway(request).pool
    assert pool is not None
    for _attempt in range(5):
        prefix, plaintext = generate_key()
        try:
            async with pool.connection() as conn:
                cur = await conn.execute(
                    "INSERT INTO gateway.api_keys (id, name, prefix, key_hash, role) VALUES (%s, %s, %s, %s, %s)"
                    f" RETURNING {_KEY_COLUMNS}", (uuid.uuid4(), name, prefix, hash_key(plaintext), role))
                row = await cur.fetchone()
        except psycopg.errors.UniqueViolation:
            continue  # prefix collision: draw again
        assert row is not None and plaintext.startswith(f"{KEY_PREFIX}_")
        return JSONResponse({**_key_json(row), "key": plaintext}, status_code=201,
                            headers={"Cache-Control": "no-store"})
    raise RuntimeError("could not draw a unique API key prefix")


@router.delete("/apikeys/{key_id}", status_code=204, tags=["apikeys"], responses=problem_responses(401, 403, 404),
               summary="Revoke an API key (owners): refused at once on every gateway")
async def revoke_api_key(request: Request, key_id: KeyId) -> Response:
    pool = gateway(request).pool
    assert pool is not None
    async with pool.connection() as conn:
        cur = await conn.execute("UPDATE gateway.api_keys SET revoked_at = coalesce(revoked_at, now()) WHERE id = %s"
                                 " RETURNING id", (key_id,))
        if await cur.fetchone() is None:
            raise NotFound(f"No API key {key_id}.")
    return Response(status_code=204)


ROUTERS = (public, router)
