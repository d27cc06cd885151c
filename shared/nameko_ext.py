"""Nameko extensions every service uses: its database pool and its outbox relay.

Kept apart from the domain so the transport (Nameko on eventlet) stays replaceable.
"""

from __future__ import annotations

import logging
from typing import Any

from nameko.extensions import DependencyProvider, Extension

from shared.config import get_settings
from shared.db import Database
from shared.outbox import Relay

log = logging.getLogger(__name__)


class DatabaseProvider(DependencyProvider):
    """Injects the service's ``Database`` (a pool on its own schema) into each worker."""

    def __init__(self, schema: str) -> None:
        self.schema = schema
        self.db: Database | None = None

    def setup(self) -> None:
        settings = get_settings()
        self.db = Database(
            self.container.config.get("OMS_DATABASE_URL", settings.database_url),
            self.schema,
            size=self.container.config.get("OMS_DB_POOL_SIZE", settings.db_pool_size),
        )

    def start(self) -> None:
        assert self.db is not None
        self.db.open()

    def stop(self) -> None:
        if self.db is not None:
            self.db.close()

    def kill(self) -> None:
        self.stop()

    def get_dependency(self, worker_ctx: Any) -> Database:
        assert self.db is not None
        return self.db


class OutboxRelay(Extension):
    """Runs the outbox relay of the service's schema in a green thread for the container's lifetime."""

    def __init__(self, schema: str) -> None:
        self.schema = schema
        self.relay: Relay | None = None
        self._gt: Any = None

    def setup(self) -> None:
        settings = get_settings()
        self.relay = Relay(
            self.container.config.get("OMS_DATABASE_URL", settings.database_url),
            self.schema,
            self.container.config["AMQP_URI"],
        )

    def start(self) -> None:
        assert self.relay is not None
        self._gt = self.container.spawn_managed_thread(self.relay.run, identifier=f"outbox-relay-{self.schema}")

    def stop(self) -> None:
        if self.relay is not None:
            self.relay.stop()
        if self._gt is not None:
            self._gt.wait()

    def kill(self) -> None:
        if self.relay is not None:
            self.relay.stop()
        if self._gt is not None:
            self._gt.kill()


class OutboxRelayProvider(DependencyProvider):
    """Declares the relay on a service class: ``relay = OutboxRelayProvider("orders")``.

    The relay itself is a sub-extension, so the container starts and stops it with the service.
    """

    def __init__(self, schema: str) -> None:
        self.schema = schema
        self.relay_ext = OutboxRelay(schema)

    def get_dependency(self, worker_ctx: Any) -> Relay | None:
        return self.relay_ext.relay
