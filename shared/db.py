"""Postgres access shared by the services: one pool per service, bound to the service's own schema.

Each service sees only its schema (``search_path``), which is how "no service reads another service's
tables" is kept in practice. Under eventlet, psycopg must use its Python selector-based wait function
(set by ``shared.runtime`` before psycopg is imported), or one query blocks every green thread.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool

_IDENT = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


def check_ident(name: str) -> str:
    if not _IDENT.match(name):
        raise ValueError(f"not a safe SQL identifier: {name!r}")
    return name


def with_database(url: str, dbname: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path="/" + dbname))


def database_name(url: str) -> str:
    return urlsplit(url).path.lstrip("/") or "postgres"


def ensure_database(url: str) -> None:
    """Create the database named in the URL if it does not exist (a new machine needs no set-up)."""
    name = database_name(url)
    try:
        psycopg.connect(url, connect_timeout=5).close()
        return
    except psycopg.OperationalError as exc:
        if "does not exist" not in str(exc):
            raise
    with psycopg.connect(with_database(url, "postgres"), autocommit=True, connect_timeout=5) as conn:
        try:
            conn.execute(f'CREATE DATABASE "{check_ident(name)}"')
        except (psycopg.errors.DuplicateDatabase, psycopg.errors.UniqueViolation):
            pass  # another process created it meanwhile (a race shows as either error)


def connect(url: str, schema: str, **kwargs: Any) -> psycopg.Connection[Any]:
    return psycopg.connect(
        url, options=f"-c search_path={check_ident(schema)},public", row_factory=dict_row, **kwargs
    )


class Database:
    """A connection pool for one schema. ``transaction()`` is one unit of work: commit or roll back."""

    def __init__(self, url: str, schema: str, *, size: int = 10) -> None:
        self.url = url
        self.schema = check_ident(schema)
        self.pool = ConnectionPool(
            url,
            min_size=1,
            max_size=size,
            kwargs={"options": f"-c search_path={self.schema},public", "row_factory": dict_row},
            open=False,
            name=f"oms-{schema}",
        )

    def open(self) -> None:
        self.pool.open(wait=True, timeout=30)

    def close(self) -> None:
        self.pool.close()

    @contextmanager
    def transaction(self) -> Iterator[psycopg.Connection[Any]]:
        # The pool commits when the block ends normally and rolls back when it raises.
        with self.pool.connection() as conn:
            yield conn
