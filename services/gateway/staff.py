"""Staff who sign in to the dashboard: users, passwords, sessions and the sign-in rate limit.

* **Passwords** are hashed with argon2id (``argon2-cffi``'s ``PasswordHasher``: salted, memory-hard, parameters
  kept in the encoded hash, so stronger parameters later re-hash at the next sign-in). Hashing runs in a thread:
  it takes tens of milliseconds of CPU on purpose.
* **Sessions**: ``POST /api/v1/session`` draws a random token (256 bits) for the ``oms_session`` cookie
  (HttpOnly, SameSite=Lax, Secure over https) and a CSRF token for ``oms_csrf`` (readable by the page, echoed in
  ``X-CSRF-Token`` on every change). The table keeps only the SHA-256 of the session token. A session lasts
  ``OMS_SESSION_HOURS``; signing out, disabling the user or changing their role or password ends it at once
  (every request reads the session row: nothing is cached).
* **Rate limit**: failed sign-ins are rows of ``gateway.signin_failures`` keyed by e-mail and by client
  address. An attempt first takes transaction-scoped advisory locks on both keys, counts the failures in the
  window and answers 429 with ``Retry-After`` over the limit; so the limit holds exactly across every gateway
  process. An unknown e-mail costs the same hash as a wrong password (no enumeration by timing).

The sync functions (``create_staff``...) take a psycopg connection for the CLI (``oms staff ...``); the routes
use :class:`StaffStore` on the gateway's async pool.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import math
import re
import secrets
import string
import uuid
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import Any

import psycopg
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from psycopg.rows import tuple_row
from psycopg_pool import AsyncConnectionPool

from services.gateway.auth import Principal
from services.gateway.permissions import ROLES
from services.gateway.problems import ProblemError
from shared.errors import DomainError, InvalidRequest, NotAllowedInThisState, NotFound, field_error

SESSION_COOKIE = "oms_session"
CSRF_COOKIE = "oms_csrf"
CSRF_HEADER = "X-CSRF-Token"
MIN_PASSWORD_LENGTH = 10
MAX_PASSWORD_LENGTH = 256
_EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+$")
_PASSWORD_ALPHABET = string.ascii_letters + string.digits


# --------------------------------------------------------------------------------------------- problems
class SignInFailed(ProblemError):
    status = 401
    title = "Sign-in failed"
    slug = "sign-in-failed"


class TooManySignIns(ProblemError):
    status = 429
    title = "Too many sign-in attempts"
    slug = "too-many-sign-ins"


class Forbidden(ProblemError):
    status = 403
    title = "Forbidden"
    slug = "forbidden"


class CsrfRejected(ProblemError):
    status = 403
    title = "CSRF token missing or wrong"
    slug = "csrf-rejected"


class EmailTaken(DomainError):
    status = 409
    title = "E-mail address already used"


# --------------------------------------------------------------------------------------------- passwords
@lru_cache(maxsize=1)
def hasher() -> PasswordHasher:
    return PasswordHasher()  # argon2id, RFC 9106's second recommended parameter set


def hash_password(password: str) -> str:
    return hasher().hash(password)


@lru_cache(maxsize=1)
def _dummy_hash() -> str:
    return hash_password(secrets.token_urlsafe(16))


def verify_password(encoded: str | None, password: str) -> bool:
    """Whether ``password`` matches; with no hash (unknown user) a dummy one is checked so it takes as long."""
    try:
        return hasher().verify(encoded or _dummy_hash(), password) and encoded is not None
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def generate_password() -> str:
    return "".join(secrets.choice(_PASSWORD_ALPHABET) for _ in range(20))


# --------------------------------------------------------------------------------------------- validation
def check_email(email: str) -> str:
    value = (email or "").strip()
    if not _EMAIL_RE.match(value) or len(value) > 254:
        raise InvalidRequest("The e-mail address is not valid.",
                             errors=[field_error("email", "must be an e-mail address", "invalid_email")])
    return value


def check_name(name: str) -> str:
    value = (name or "").strip()
    if not value or len(value) > 200:
        raise InvalidRequest("A name is required.",
                             errors=[field_error("name", "must be 1 to 200 characters", "invalid_name")])
    return value


def check_role(role: str) -> str:
    if role not in ROLES:
        raise InvalidRequest(f"The role must be one of {', '.join(ROLES)}.",
                             errors=[field_error("role", f"must be one of {', '.join(ROLES)}", "invalid_role")])
    return role


def check_password(password: str) -> str:
    if not MIN_PASSWORD_LENGTH <= len(password or "") <= MAX_PASSWORD_LENGTH:
        raise InvalidRequest(
            f"The password must be at least {MIN_PASSWORD_LENGTH} characters long.",
            errors=[field_error("password", f"must be at least {MIN_PASSWORD_LENGTH} characters long",
                                "password_too_short" if len(password or "") < MIN_PASSWORD_LENGTH
                                else "password_too_long")],
        )
    return password


# --------------------------------------------------------------------------------------------- users
@dataclass(frozen=True, slots=True)
class StaffUser:
    id: uuid.UUID
    email: str
    name: str
    role: str
    created_at: datetime
    disabled_at: datetime | None

    @property
    def active(self) -> bool:
        return self.disabled_at is None

    def as_json(self) -> dict[str, Any]:
        return {"id": str(self.id), "email": self.email, "name": self.name, "role": self.role,
                "active": self.active, "created_at": self.created_at.isoformat(),
                "disabled_at": self.disabled_at.isoformat() if self.disabled_at else None}


_USER_COLUMNS = "id, email, name, role, created_at, disabled_at"
_INSERT_USER = (
    "INSERT INTO gateway.staff_users (id, email, name, role, password_hash) VALUES (%s, %s, %s, %s, %s)"
    f" RETURNING {_USER_COLUMNS}"
)


def _email_taken(email: str) -> EmailTaken:
    return EmailTaken(f"A staff user with the e-mail address {email} already exists.",
                      errors=[field_error("email", "is already used by another staff user", "email_taken")])


def create_staff(conn: psycopg.Connection[Any], email: str, name: str, role: str,
                 password: str) -> StaffUser:
    """Create a staff user (CLI). Raises ``InvalidRequest``/``EmailTaken``."""
    email, name, role = check_email(email), check_name(name), check_role(role)
    encoded = hash_password(check_password(password))
    try:
        with conn.transaction(), conn.cursor(row_factory=tuple_row) as cur:
            cur.execute(_INSERT_USER, (uuid.uuid4(), email, name, role, encoded))
            row = cur.fetchone()
    except psycopg.errors.UniqueViolation:
        raise _email_taken(email) from None
    assert row is not None
    return StaffUser(*row)


def list_staff(conn: psycopg.Connection[Any]) -> list[StaffUser]:
    with conn.cursor(row_factory=tuple_row) as cur:
        cur.execute(f"SELECT {_USER_COLUMNS} FROM gateway.staff_users ORDER BY created_at, email")
        return [StaffUser(*row) for row in cur.fetchall()]


def find_staff(conn: psycopg.Connection[Any], email: str) -> tuple[StaffUser, str] | None:
    """(user, password hash) by e-mail, any case."""
    with conn.cursor(row_factory=tuple_row) as cur:
        cur.execute(f"SELECT {_USER_COLUMNS}, password_hash FROM gateway.staff_users WHERE lower(email) = lower(%s)",
                    (email.strip(),))
        row = cur.fetchone()
    return (StaffUser(*row[:6]), row[6]) if row else None


def disable_staff(conn: psycopg.Connection[Any], email: str) -> bool:
    """Disable a user and end their sessions (CLI); False if no active user has that e-mail."""
    with conn.transaction(), conn.cursor(row_factory=tuple_row) as cur:
        cur.execute("UPDATE gateway.staff_users SET disabled_at = now(), updated_at = now()"
                    " WHERE lower(email) = lower(%s) AND disabled_at IS NULL RETURNING id", (email.strip(),))
        row = cur.fetchone()
        if row is None:
            return False
        cur.execute("DELETE FROM gateway.staff_sessions WHERE user_id = %s", (row[0],))
        return True


def set_password(conn: psycopg.Connection[Any], email: str, password: str) -> bool:
    """Set a user's password and end their sessions (CLI); False if no such user."""
    encoded = hash_password(check_password(password))
    with conn.transaction(), conn.cursor(row_factory=tuple_row) as cur:
        cur.execute("UPDATE gateway.staff_users SET password_hash = %s, updated_at = now()"
                    " WHERE lower(email) = lower(%s) RETURNING id", (encoded, email.strip()))
        row = cur.fetchone()
        if row is None:
            return False
        cur.execute("DELETE FROM gateway.staff_sessions WHERE user_id = %s", (row[0],))
        return True


# --------------------------------------------------------------------------------------------- sessions
def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


@dataclass(frozen=True, slots=True)
class SignIn:
    user: StaffUser
    token: str
    csrf: str
    max_age: int  # seconds


@dataclass(frozen=True, slots=True)
class RateLimit:
    per_email: int = 5
    per_address: int = 50
    window_seconds: float = 900.0


def _lock_id(key: str) -> int:
    """A stable signed 64-bit advisory lock id for a rate-limit key."""
    return int.from_bytes(hashlib.sha256(f"oms-signin:{key}".encode()).digest()[:8], "big", signed=True)


class StaffStore:
    """Staff users and sessions for the routes (the gateway's pool, autocommit connections)."""

    def __init__(self, pool: AsyncConnectionPool[Any], *, session_seconds: int = 12 * 3600,
                 limit: RateLimit | None = None) -> None:
        self.pool = pool
        self.session_seconds = session_seconds
        self.limit = limit or RateLimit()

    # ---- sessions
    async def sign_in(self, email: str, password: str, client_addr: str | None) -> SignIn:
        """A new session, or ``SignInFailed`` (401, naming the password field) / ``TooManySignIns`` (429)."""
        email_key = f"email:{(email or '').strip().lower()}"
        addr_key = f"addr:{client_addr or '-'}"
        limits = {email_key: self.limit.per_email, addr_key: self.limit.per_address}
        window = float(self.limit.window_seconds)
        async with self.pool.connection() as conn, conn.transaction():
            for key in sorted(limits):
                await conn.execute("SELECT pg_advisory_xact_lock(%s)", (_lock_id(key),))
            for key, limit in limits.items():
                cur = await conn.execute(
                    "SELECT extract(epoch FROM at + make_interval(secs => %s) - now()) FROM gateway.signin_failures"
                    " WHERE key = %s AND at > now() - make_interval(secs => %s) ORDER BY at DESC OFFSET %s LIMIT 1",
                    (window, key, window, limit - 1),
                )
                over = await cur.fetchone()
                if over is not None:
                    wait = max(1, math.ceil(float(over[0])))
                    raise TooManySignIns(
                        f"Too many failed sign-ins; try again in {_duration(wait)}.",
                        headers={"Retry-After": str(wait)}, retry_after=wait,
                    )
            cur = await conn.execute(
                f"SELECT {_USER_COLUMNS}, password_hash FROM gateway.staff_users WHERE lower(email) = lower(%s)",
                ((email or "").strip(),),
            )
            row = await cur.fetchone()
            user = StaffUser(*row[:6]) if row else None
            stored: str | None = row[6] if row else None
            ok = await asyncio.to_thread(verify_password, stored, password or "")
            if not ok or user is None or not user.active:
                # Recorded (committed) before answering: the exception is raised after the transaction.
                await conn.execute("INSERT INTO gateway.signin_failures (key) VALUES (%s), (%s)", (email_key, addr_key))
                await conn.execute("DELETE FROM gateway.signin_failures WHERE at < now() - make_interval(secs => %s)",
                                   (window,))
                user = None
        if user is None:
            raise _BadCredentials()
        async with self.pool.connection() as conn, conn.transaction():
            if stored and hasher().check_needs_rehash(stored):
                encoded = await asyncio.to_thread(hash_password, password)
                await conn.execute("UPDATE gateway.staff_users SET password_hash = %s WHERE id = %s",
                                   (encoded, user.id))
            await conn.execute("DELETE FROM gateway.signin_failures WHERE key = %s", (email_key,))
            await conn.execute("DELETE FROM gateway.staff_sessions WHERE expires_at < now()")
            token, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
            await conn.execute(
                "INSERT INTO gateway.staff_sessions (token_hash, user_id, csrf_token, expires_at, client_addr)"
                " VALUES (%s, %s, %s, now() + make_interval(secs => %s), %s)",
                (token_hash(token), user.id, csrf, float(self.session_seconds), client_addr),
            )
        return SignIn(user, token, csrf, self.session_seconds)

    async def principal(self, token: str) -> Principal | None:
        """The signed-in staff member of a session token; None: no such session, expired, or user disabled."""
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                "SELECT u.id, u.name, u.email, u.role, s.csrf_token FROM gateway.staff_sessions s"
                " JOIN gateway.staff_users u ON u.id = s.user_id"
                " WHERE s.token_hash = %s AND s.expires_at > now() AND u.disabled_at IS NULL",
                (token_hash(token),),
            )
            row = await cur.fetchone()
        if row is None:
            return None
        return Principal(id=row[0], name=row[1], prefix="", kind="staff", role=row[3], email=row[2], csrf=row[4])

    async def sign_out(self, token: str) -> None:
        async with self.pool.connection() as conn:
            await conn.execute("DELETE FROM gateway.staff_sessions WHERE token_hash = %s", (token_hash(token),))

    # ---- users
    async def list(self) -> list[StaffUser]:
        async with self.pool.connection() as conn:
            cur = await conn.execute(f"SELECT {_USER_COLUMNS} FROM gateway.staff_users ORDER BY created_at, email")
            return [StaffUser(*row) for row in await cur.fetchall()]

    async def create(self, email: str, name: str, role: str, password: str) -> StaffUser:
        email, name, role = check_email(email), check_name(name), check_role(role)
        encoded = await asyncio.to_thread(hash_password, check_password(password))
        try:
            async with self.pool.connection() as conn:
                cur = await conn.execute(_INSERT_USER, (uuid.uuid4(), email, name, role, encoded))
                row = await cur.fetchone()
        except psycopg.errors.UniqueViolation:
            raise _email_taken(email) from None
        assert row is not None
        return StaffUser(*row)

    async def update(self, user_id: uuid.UUID, *, name: str | None = None, role: str | None = None,
                     password: str | None = None, active: bool | None = None) -> StaffUser:
        """Change a user; a new role, a new password or disabling ends their sessions. The last active owner
        cannot stop being one (409)."""
        sets: list[str] = []
        params: list[Any] = []
        if name is not None:
            sets.append("name = %s")
            params.append(check_name(name))
        if role is not None:
            sets.append("role = %s")
            params.append(check_role(role))
        if password is not None:
            sets.append("password_hash = %s")
            params.append(await asyncio.to_thread(hash_password, check_password(password)))
        if active is not None:
            sets.append("disabled_at = CASE WHEN %s THEN NULL ELSE coalesce(disabled_at, now()) END")
            params.append(active)
        async with self.pool.connection() as conn, conn.transaction():
            await conn.execute("LOCK TABLE gateway.staff_users IN SHARE ROW EXCLUSIVE MODE")
            cur = await conn.execute(f"SELECT {_USER_COLUMNS} FROM gateway.staff_users WHERE id = %s", (user_id,))
            row = await cur.fetchone()
            if row is None:
                raise NotFound(f"No staff user {user_id}.")
            before = StaffUser(*row)
            if not sets:
                return before
            cur = await conn.execute(
                f"UPDATE gateway.staff_users SET {', '.join(sets)}, updated_at = now() WHERE id = %s"
                f" RETURNING {_USER_COLUMNS}", (*params, user_id))
            after_row = await cur.fetchone()
            assert after_row is not None
            after = StaffUser(*after_row)
            if before.role == "owner" and before.active and not (after.role == "owner" and after.active):
                cur = await conn.execute("SELECT count(*) FROM gateway.staff_users WHERE role = 'owner'"
                                         " AND disabled_at IS NULL")
                count = await cur.fetchone()
                if count is None or count[0] == 0:
                    raise NotAllowedInThisState(
                        "This is the last active owner: make another staff user an owner first.",
                        errors=[field_error("role" if role is not None else "active",
                                            "the last active owner must stay an active owner", "last_owner")],
                    )
            if role is not None and role != before.role or password is not None or not after.active:
                await conn.execute("DELETE FROM gateway.staff_sessions WHERE user_id = %s", (user_id,))
        return after


class _BadCredentials(SignInFailed):
    def __init__(self) -> None:
        reason = "the e-mail address or password is not correct"
        super().__init__("The e-mail address or password is not correct.",
                         errors=[field_error("password", reason, "bad_credentials")])


def _duration(seconds: int) -> str:
    if seconds < 90:
        return f"{seconds} seconds"
    return f"{math.ceil(seconds / 60)} minutes"


def csrf_ok(expected: str | None, given: str | None) -> bool:
    return bool(expected) and bool(given) and hmac.compare_digest(str(expected), str(given))
