"""API keys: ``oms_<8-char prefix>_<40 random chars>``, sent as ``Authorization: Bearer <key>`` or ``X-API-Key``.

Only the SHA-256 of the whole key is stored (``gateway.api_keys.key_hash``). A fast, unsalted hash is the
right tool here, unlike for passwords: the secret part has ~238 bits of entropy (40 characters drawn from
62 by ``secrets``), so a stolen table cannot be brute-forced or looked up in a rainbow table whatever the
hash speed, and a slow KDF (bcrypt/argon2) would only add tens of milliseconds of CPU to every cache miss.
The public prefix finds the row; the hashes are compared with ``hmac.compare_digest`` (constant time).

Valid keys are cached in-process for ``ttl`` seconds (30 by default) so most requests do not touch the
database. A revocation still takes effect at once: a trigger notifies ``oms_api_key_revoked`` and every
gateway process, listening (:meth:`ApiKeyAuthenticator.watch_revocations`), drops its cache. While that
listening connection is down, the TTL is the bound.

The ``create_api_key``/``revoke_api_key``/``list_api_keys`` functions take a *sync* psycopg connection for the
CLI (``oms keys ...``); they qualify the tables with the ``gateway`` schema, so any search_path works.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import re
import secrets
import string
import time
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

import psycopg
from psycopg.rows import tuple_row
from psycopg_pool import AsyncConnectionPool

from services.gateway.problems import Unauthorized

KEY_PREFIX = "oms"
PREFIX_LENGTH = 8
SECRET_LENGTH = 40
_PREFIX_ALPHABET = string.ascii_lowercase + string.digits
_SECRET_ALPHABET = string.ascii_letters + string.digits
_KEY_RE = re.compile(r"^oms_([a-z0-9]{8})_([A-Za-z0-9]{32,128})$")
_LAST_USED_GRANULARITY = 60.0  # seconds: last_used_at is refreshed at most this often per key and process
REVOKED_CHANNEL = "oms_api_key_revoked"

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Principal:
    """The authenticated caller: an API key, or a staff member signed in to the dashboard (``staff.py``).

    ``role`` (owner, staff, viewer) decides what it may do (``permissions.py``); ``csrf`` is the session's
    CSRF token (staff sessions only)."""

    id: uuid.UUID
    name: str
    prefix: str
    kind: str = "api_key"  # or "staff"
    role: str = "owner"
    email: str | None = None
    csrf: str | None = None

    def actor(self) -> dict[str, str]:
        """The ``Actor`` recorded by the services for what this key or person does."""
        return {"type": "staff", "id": str(self.id), "name": self.name}


@dataclass(frozen=True, slots=True)
class ApiKeyInfo:
    id: uuid.UUID
    name: str
    prefix: str
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None
    role: str = "owner"

    @property
    def active(self) -> bool:
        return self.revoked_at is None

    def as_json(self) -> dict[str, Any]:
        return {"id": str(self.id), "name": self.name, "prefix": self.prefix, "role": self.role,
                "active": self.active, "created_at": self.created_at.isoformat(),
                "last_used_at": self.last_used_at.isoformat() if self.last_used_at else None,
                "revoked_at": self.revoked_at.isoformat() if self.revoked_at else None}


def generate_key() -> tuple[str, str]:
    """(prefix, plaintext key)."""
    prefix = "".join(secrets.choice(_PREFIX_ALPHABET) for _ in range(PREFIX_LENGTH))
    secret = "".join(secrets.choice(_SECRET_ALPHABET) for _ in range(SECRET_LENGTH))
    return prefix, f"{KEY_PREFIX}_{prefix}_{secret}"


def hash_key(plaintext: str) -> str:
    return hashlib.sha256(plaintext.encode("utf-8")).hexdigest()


def parse_prefix(plaintext: str) -> str | None:
    """The prefix of a well-formed key, ``None`` for anything else (rejected without a database query)."""
    match = _KEY_RE.match(plaintext)
    return match.group(1) if match else None


# ------------------------------------------------------------------------------------------ CLI (sync)
def create_api_key(conn: psycopg.Connection[Any], name: str, role: str = "owner") -> tuple[uuid.UUID, str]:
    """Create a key; returns ``(key_id, plaintext)``. The plaintext is shown once and never stored."""
    name = name.strip()
    if not name:
        raise ValueError("an API key needs a name")
    if role not in ("owner", "staff", "viewer"):
        raise ValueError("an API key's role is owner, staff or viewer")
    for _attempt in range(5):
        key_id = uuid.uuid4()
        prefix, plaintext = generate_key()
        try:
            with conn.transaction(), conn.cursor(row_factory=tuple_row) as cur:
                cur.execute(
                    "INSERT INTO gateway.api_keys (id, name, prefix, key_hash, role) VALUES (%s, %s, %s, %s, %s)",
                    (key_id, name, prefix, hash_key(plaintext), role),
                )
            return key_id, plaintext
        except psycopg.errors.UniqueViolation:
            continue  # prefix collision (1 in 2.8e12): draw again
    raise RuntimeError("could not draw a unique API key prefix")


def revoke_api_key(conn: psycopg.Connection[Any], key_id_or_prefix: str | uuid.UUID) -> bool:
    """Revoke by id or prefix (``oms_<prefix>_...`` also accepted); False if no active key matched."""
    value = str(key_id_or_prefix).strip()
    prefix = value.split("_")[1] if value.startswith(f"{KEY_PREFIX}_") else value
    try:
        key_id: uuid.UUID | None = uuid.UUID(value)
    except ValueError:
        key_id = None
    with conn.transaction(), conn.cursor(row_factory=tuple_row) as cur:
        cur.execute(
            "UPDATE gateway.api_keys SET revoked_at = now()"
            " WHERE (id = %s OR prefix = %s) AND revoked_at IS NULL",
            (key_id, prefix),
        )
        return cur.rowcount > 0


def list_api_keys(conn: psycopg.Connection[Any]) -> list[ApiKeyInfo]:
    with conn.transaction(), conn.cursor(row_factory=tuple_row) as cur:
        cur.execute(
            "SELECT id, name, prefix, created_at, last_used_at, revoked_at, role FROM gateway.api_keys"
            " ORDER BY created_at, id"
        )
        return [ApiKeyInfo(*row) for row in cur.fetchall()]


# ------------------------------------------------------------------------------------------ requests (async)
class Authenticator(Protocol):
    async def authenticate(self, plaintext: str) -> Principal: ...


class ApiKeyAuthenticator:
    """Checks keys against ``gateway.api_keys`` with a small TTL cache (valid keys only, bounded size)."""

    def __init__(self, pool: AsyncConnectionPool[Any], *, ttl: float = 30.0, max_entries: int = 10_000) -> None:
        self.pool = pool
        self.ttl = ttl
        self.max_entries = max_entries
        self._cache: dict[str, tuple[float, Principal]] = {}
        self._last_used: dict[uuid.UUID, float] = {}

    def invalidate(self) -> None:
        self._cache.clear()

    async def watch_revocations(self, conninfo: str, *, retry_seconds: float = 1.0) -> None:
        """Drop the cache whenever a key is revoked anywhere (LISTEN; the trigger of migration 0002).

        Revocations are rare, so the whole cache goes: the next request of each key costs one query.
        Runs until cancelled; if its connection drops, it reconnects and clears the cache again (a key may
        have been revoked meanwhile)."""
        while True:
            try:
                async with await psycopg.AsyncConnection.connect(conninfo, autocommit=True) as conn:
                    await conn.execute(f"LISTEN {REVOKED_CHANNEL}")
                    self.invalidate()
                    async for note in conn.notifies():
                        log.info("API key %s revoked: cache cleared", note.payload)
                        self.invalidate()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - the TTL bounds staleness until we are back
                log.warning("not listening for API key revocations (%s); retrying", exc)
            await asyncio.sleep(retry_seconds)

    async def authenticate(self, plaintext: str) -> Principal:
        digest = hash_key(plaintext)
        now = time.monotonic()
        cached = self._cache.get(digest)
        if cached is not None and cached[0] > now:
            return cached[1]
        prefix = parse_prefix(plaintext)
        if prefix is None:
            raise Unauthorized("The API key is malformed.", headers=_CHALLENGE)
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                "SELECT id, name, key_hash, revoked_at, role FROM gateway.api_keys WHERE prefix = %s", (prefix,)
            )
            row = await cur.fetchone()
            # Compare even when no row matched, so timing does not tell whether the prefix exists.
            stored = row[2] if row else "0" * 64
            if not hmac.compare_digest(stored.encode(), digest.encode()) or row is None:
                raise Unauthorized("The API key is not valid.", headers=_CHALLENGE)
            if row[3] is not None:
                self._cache.pop(digest, None)
                raise Unauthorized("The API key has been revoked.", headers=_CHALLENGE)
            principal = Principal(id=row[0], name=row[1], prefix=prefix, role=row[4])
            if now - self._last_used.get(principal.id, -1e9) >= _LAST_USED_GRANULARITY:
                self._last_used[principal.id] = now
                await conn.execute("UPDATE gateway.api_keys SET last_used_at = now() WHERE id = %s", (principal.id,))
        if len(self._cache) >= self.max_entries:
            self._cache.clear()
        self._cache[digest] = (now + self.ttl, principal)
        return principal


_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="oms"'}


def key_from_headers(authorization: str | None, x_api_key: str | None) -> str:
    """The key from ``Authorization: Bearer <key>`` or ``X-API-Key: <key>``; 401 if neither is present."""
    if authorization:
        scheme, _, value = authorization.partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
        if not x_api_key:
            raise Unauthorized("Use `Authorization: Bearer <API key>` or the `X-API-Key` header.",
                               headers=_CHALLENGE)
    if x_api_key and x_api_key.strip():
        return x_api_key.strip()
    raise Unauthorized("An API key is required: send `Authorization: Bearer <API key>` or `X-API-Key`.",
                       headers=_CHALLENGE)
