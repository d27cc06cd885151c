"""``oms migrate``: database, schemas, versioned migrations and the RabbitMQ topology, in one safe step.

Each service owns one schema; its migrations are SQL files (yoyo-migrations) applied with
``search_path`` set to that schema, preceded by the shared backbone tables (outbox, inbox) where the service
publishes or consumes events. A Postgres advisory lock serializes concurrent runs (two pods starting at
once), and yoyo records what was applied, so running it twice is a no-op.
"""

from __future__ import annotations

import logging
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
from yoyo import get_backend, read_migrations

from shared.amqp import Topology, declare_topology
from shared.config import Settings
from shared.db import check_ident, ensure_database

log = logging.getLogger(__name__)

SHARED_MIGRATIONS = Path(__file__).resolve().parent / "migrations"

MIGRATE_LOCK = 727_001  # advisory lock id shared by every `oms migrate`


def schemas() -> dict[str, list[Path]]:
    """Schema -> migration folders, in order, from the registry: a service with ``backbone`` (it publishes or
    consumes events) gets the shared outbox/inbox tables first."""
    from shared.registry import services

    out: dict[str, list[Path]] = {}
    for spec in services():
        if spec.schema:
            folders = [SHARED_MIGRATIONS] if spec.backbone else []
            out[spec.schema] = folders + ([spec.migrations] if spec.migrations else [])
    return out


def yoyo_url(database_url: str, schema: str) -> str:
    parts = urlsplit(database_url)
    scheme = "postgresql+psycopg"
    query = f"schema={check_ident(schema)}"
    return urlunsplit((scheme, parts.netloc, parts.path, query, ""))


def migrate_schema(database_url: str, schema: str, folders: list[Path]) -> list[str]:
    existing = [str(f) for f in folders if f.is_dir()]
    if not existing:
        return []
    backend = get_backend(yoyo_url(database_url, schema))
    try:
        migrations = read_migrations(*existing)
        with backend.lock():
            todo = backend.to_apply(migrations)
            backend.apply_migrations(todo)
        return [m.id for m in todo]
    finally:
        backend.connection.close()


def subscriptions() -> Topology:
    """Every subscriber queue of every service: the event handlers of each registry service's Nameko class."""
    from shared.catalog import load_all
    from shared.consumer import subscriptions_of
    from shared.registry import load, nameko_classes

    topology = Topology(known_types=tuple(load_all()))
    for target in nameko_classes().values():
        topology.subscriptions.extend(subscriptions_of(load(target)))
    return topology


def migrate(settings: Settings, *, declare_amqp: bool = True) -> dict[str, list[str]]:
    ensure_database(settings.database_url)
    applied: dict[str, list[str]] = {}
    with psycopg.connect(settings.database_url, autocommit=True) as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (MIGRATE_LOCK,))
        try:
            conn.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm WITH SCHEMA public")
            for schema, folders in schemas().items():
                conn.execute(f"CREATE SCHEMA IF NOT EXISTS {check_ident(schema)}")
                applied[schema] = migrate_schema(settings.database_url, schema, folders)
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (MIGRATE_LOCK,))
    if declare_amqp:
        topology = subscriptions()
        topology.retry_delays = settings.retry_delay_list
        declare_topology(settings.amqp_url, topology)
    return applied
