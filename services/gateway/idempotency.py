"""``Idempotency-Key`` for POST, PUT, PATCH and DELETE (table ``gateway.idempotency_keys``).

A request carrying the header first claims ``(api key, Idempotency-Key)`` by inserting an ``in_progress``
row, runs, then stores its answer (status, body, a few headers) as ``done``. A retry with the same key:

* same method, path and body (hash of the canonical JSON) and ``done`` -> the stored answer is replayed
  with ``Idempotent-Replayed: true`` and nothing runs a second time;
* another method, path or body -> 422 ``idempotency-mismatch`` problem;
* the first request still running -> 409 ``idempotency-in-progress`` problem with ``Retry-After``.

Answers that are a property of the request (2xx and the services' 4xx ``DomainError`` problems) are stored;
a failure that may be transient (503/504/5xx, a crash) removes the claim, so the client can retry. Keys
expire 24 hours after first use: an expired row is reused by the next request with that key and purged in
the background. A claim left ``in_progress`` by a crashed gateway is taken over by a retry with the same
request after ``stale_after`` seconds. ``place_order`` additionally receives the key, so the orders service
itself dedupes an order even if the gateway died between the service's commit and storing the answer.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import uuid
from dataclasses import dataclass, field
from typing import Any, Protocol

from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from services.gateway.problems import ProblemError
from shared.errors import field_error

log = logging.getLogger(__name__)

HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"
TTL_SECONDS = 24 * 3600
_KEY_RE = re.compile(r"^[\x21-\x7e]{1,255}$")  # visible ASCII, like Stripe's keys and UUIDs


class IdempotencyMismatch(ProblemError):
    status = 422
    title = "Idempotency key reused with a different request"
    slug = "idempotency-mismatch"


class IdempotencyInProgress(ProblemError):
    status = 409
    title = "A request with this idempotency key is in progress"
    slug = "idempotency-in-progress"


class InvalidIdempotencyKey(ProblemError):
    status = 422
    title = "Invalid Idempotency-Key header"
    slug = "invalid-idempotency-key"


def check_key(key: str) -> str:
    if not _KEY_RE.match(key):
        raise InvalidIdempotencyKey(
            "The Idempotency-Key must be 1 to 255 visible ASCII characters.",
            errors=[field_error(HEADER, "must be 1 to 255 visible ASCII characters", "invalid_idempotency_key",
                                "header")],
        )
    return key


def request_hash(method: str, path: str, body: Any) -> str:
    """Fingerprint of a request: method, path and the canonical JSON of its (validated) body."""
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(f"{method.upper()} {path}\n{canonical}".encode()).hexdigest()


@dataclass(slots=True)
class StoredResponse:
    status_code: int
    body: Any
    headers: dict[str, str] = field(default_factory=dict)


class IdempotencyStore(Protocol):
    async def begin(self, api_key_id: uuid.UUID, key: str, method: str, path: str,
                    fingerprint: str) -> StoredResponse | None: ...

    async def finish(self, api_key_id: uuid.UUID, key: str, response: StoredResponse) -> None: ...

    async def abandon(self, api_key_id: uuid.UUID, key: str) -> None: ...


_CLAIM = """
INSERT INTO gateway.idempotency_keys AS k (api_key_id, key, method, path, request_hash, state)
VALUES (%(api_key_id)s, %(key)s, %(method)s, %(path)s, %(hash)s, 'in_progress')
ON CONFLICT (api_key_id, key) DO UPDATE
   SET method = EXCLUDED.method, path = EXCLUDED.path, request_hash = EXCLUDED.request_hash,
       state = 'in_progress', status_code = NULL, response_body = NULL, response_headers = NULL,
       created_at = now(), updated_at = now()
 WHERE k.created_at < now() - make_interval(secs => %(ttl)s)
    OR (k.state = 'in_progress' AND k.updated_at < now() - make_interval(secs => %(stale)s)
        AND k.method = EXCLUDED.method AND k.path = EXCLUDED.path AND k.request_hash = EXCLUDED.request_hash)
RETURNING 1
"""

_EXISTING = """
SELECT method, path, request_hash, state, status_code, response_body, response_headers
  FROM gateway.idempotency_keys WHERE api_key_id = %s AND key = %s
"""


class PgIdempotencyStore:
    """The Postgres store (the pool's connections are in autocommit mode: every statement is atomic)."""

    def __init__(self, pool: AsyncConnectionPool[Any], *, ttl_seconds: float = TTL_SECONDS,
                 stale_after: float = 60.0) -> None:
        self.pool = pool
        self.ttl_seconds = ttl_seconds
        self.stale_after = stale_after

    async def begin(self, api_key_id: uuid.UUID, key: str, method: str, path: str,
                    fingerprint: str) -> StoredResponse | None:
        """Claim the key (returns None: go ahead) or return the stored answer to replay; raises 409/422."""
        params = {"api_key_id": api_key_id, "key": key, "method": method, "path": path, "hash": fingerprint,
                  "ttl": float(self.ttl_seconds), "stale": float(self.stale_after)}
        async with self.pool.connection() as conn:
            for _attempt in range(3):
                cur = await conn.execute(_CLAIM, params)
                if await cur.fetchone() is not None:
                    return None
                cur = await conn.execute(_EXISTING, (api_key_id, key))
                row = await cur.fetchone()
                if row is None:
                    continue  # the holder abandoned it in between: claim again
                r_method, r_path, r_hash, state, status_code, body, headers = row
                if (r_method, r_path, r_hash) != (method, path, fingerprint):
                    raise IdempotencyMismatch(
                        f"Idempotency-Key {key!r} was first used for another request ({r_method} {r_path} with "
                        "a different body); use a new key for a new request.",
                        errors=[field_error(HEADER, f"first used for {r_method} {r_path} with another body",
                                            "idempotency_key_reused", "header")],
                    )
                if state != "done":
                    raise IdempotencyInProgress(
                        f"The first request with Idempotency-Key {key!r} is still being processed; retry later.",
                        headers={"Retry-After": "1"},
                    )
                return StoredResponse(int(status_code), body, dict(headers or {}))
        raise IdempotencyInProgress(f"Idempotency-Key {key!r} is contended; retry later.",
                                    headers={"Retry-After": "1"})

    async def finish(self, api_key_id: uuid.UUID, key: str, response: StoredResponse) -> None:
        async with self.pool.connection() as conn:
            await conn.execute(
                "UPDATE gateway.idempotency_keys SET state = 'done', status_code = %s, response_body = %s,"
                " response_headers = %s, updated_at = now() WHERE api_key_id = %s AND key = %s",
                (response.status_code, Jsonb(response.body), Jsonb(response.headers), api_key_id, key),
            )

    async def abandon(self, api_key_id: uuid.UUID, key: str) -> None:
        async with self.pool.connection() as conn:
            await conn.execute(
                "DELETE FROM gateway.idempotency_keys WHERE api_key_id = %s AND key = %s AND state = 'in_progress'",
                (api_key_id, key),
            )

    async def purge_expired(self) -> int:
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                "DELETE FROM gateway.idempotency_keys WHERE created_at < now() - make_interval(secs => %s)",
                (float(self.ttl_seconds),),
            )
            return cur.rowcount
