"""Fixtures shared by every test tier.

Servers come from environment variables (``OMS_TEST_DATABASE_URL``, ``OMS_TEST_AMQP_URL``; default: this
machine's local Postgres and RabbitMQ). If those are not set and nothing answers locally, but a Docker engine
does, testcontainers starts Postgres and RabbitMQ. Each test run isolates itself: its own database and its
own RabbitMQ vhost, created here and dropped at the end, so two runs never see each other's data.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import quote, urlsplit, urlunsplit

import pytest

DEFAULT_DB = "postgresql://postgres@127.0.0.1:5432/postgres"
DEFAULT_AMQP = "amqp://guest:guest@127.0.0.1:5672/"


TIERS = ("unit", "integration", "e2e")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Every test belongs to exactly one tier. ``make test`` selects the tiers by marker (``-m unit`` ...), so a
    test without one would be collected by none of them and never run: a test of ``tests/<tier>/`` that does
    not say its tier gets its folder's; one that names two tiers, or none outside those folders, is an error."""
    root = config.rootpath / "tests"
    wrong: list[str] = []
    for item in items:
        marked = [t for t in TIERS if item.get_closest_marker(t) is not None]
        if not marked:
            parts = item.path.relative_to(root).parts if item.path.is_relative_to(root) else ()
            if parts and parts[0] in TIERS:
                item.add_marker(getattr(pytest.mark, parts[0]))
                continue
        if len(marked) != 1:
            wrong.append(f"{item.nodeid}: tiers {marked or 'none'}")
    if wrong:
        raise pytest.UsageError("each test needs exactly one tier marker (unit, integration, e2e):\n  "
                                + "\n  ".join(wrong))


@dataclass
class Servers:
    database_url: str  # the test run's own database
    amqp_url: str  # the test run's own vhost
    admin_database_url: str
    amqp_base_url: str
    vhost: str


def _reachable(url: str, default_port: int) -> bool:
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or default_port), timeout=2):
            return True
    except OSError:
        return False


def _docker_answers() -> bool:
    try:
        import docker

        docker.from_env(timeout=3).ping()
        return True
    except Exception:  # noqa: BLE001 - no engine, no socket, no permission: all mean "no Docker"
        return False


def _vhost_url(base: str, vhost: str) -> str:
    parts = urlsplit(base)
    return urlunsplit(parts._replace(path="/" + quote(vhost, safe="")))


def _create_vhost(base: str, vhost: str) -> None:
    parts = urlsplit(base)
    user = parts.username or "guest"
    if shutil.which("rabbitmqctl") and parts.hostname in ("127.0.0.1", "localhost", None):
        subprocess.run(["rabbitmqctl", "-q", "add_vhost", vhost], check=True, capture_output=True)
        subprocess.run(
            ["rabbitmqctl", "-q", "set_permissions", "-p", vhost, user, ".*", ".*", ".*"],
            check=True,
            capture_output=True,
        )
        return
    import httpx  # the management API, for a broker elsewhere (testcontainers image has it)

    api = f"http://{parts.hostname}:{os.environ.get('OMS_TEST_AMQP_MGMT_PORT', '15672')}/api"
    auth = (user, parts.password or "guest")
    httpx.put(f"{api}/vhosts/{quote(vhost, safe='')}", auth=auth).raise_for_status()
    httpx.put(
        f"{api}/permissions/{quote(vhost, safe='')}/{user}",
        json={"configure": ".*", "write": ".*", "read": ".*"},
        auth=auth,
    ).raise_for_status()


def _delete_vhost(base: str, vhost: str) -> None:
    parts = urlsplit(base)
    if shutil.which("rabbitmqctl") and parts.hostname in ("127.0.0.1", "localhost", None):
        subprocess.run(["rabbitmqctl", "-q", "delete_vhost", vhost], capture_output=True)
        return
    import httpx

    api = f"http://{parts.hostname}:{os.environ.get('OMS_TEST_AMQP_MGMT_PORT', '15672')}/api"
    httpx.delete(f"{api}/vhosts/{quote(vhost, safe='')}", auth=(parts.username or "guest", parts.password or "guest"))


@pytest.fixture(scope="session")
def servers() -> Iterator[Servers]:
    import psycopg

    db_base = os.environ.get("OMS_TEST_DATABASE_URL", DEFAULT_DB)
    amqp_base = os.environ.get("OMS_TEST_AMQP_URL", DEFAULT_AMQP)
    containers = []
    given = "OMS_TEST_DATABASE_URL" in os.environ or "OMS_TEST_AMQP_URL" in os.environ
    if not given and not (_reachable(db_base, 5432) and _reachable(amqp_base, 5672)) and _docker_answers():
        from testcontainers.postgres import PostgresContainer
        from testcontainers.rabbitmq import RabbitMqContainer

        pg = PostgresContainer("postgres:15", driver=None).start()
        mq = RabbitMqContainer("rabbitmq:3.13-management").start()
        containers = [pg, mq]
        db_base = pg.get_connection_url()
        amqp_base = f"amqp://guest:guest@{mq.get_container_host_ip()}:{mq.get_exposed_port(5672)}/"
        os.environ["OMS_TEST_AMQP_MGMT_PORT"] = str(mq.get_exposed_port(15672))

    run_id = uuid.uuid4().hex[:10]
    dbname = f"oms_test_{run_id}"
    vhost = f"oms_test_{run_id}"
    with psycopg.connect(db_base, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{dbname}"')
    _create_vhost(amqp_base, vhost)
    parts = urlsplit(db_base)
    servers = Servers(
        database_url=urlunsplit(parts._replace(path="/" + dbname)),
        amqp_url=_vhost_url(amqp_base, vhost),
        admin_database_url=db_base,
        amqp_base_url=amqp_base,
        vhost=vhost,
    )
    try:
        yield servers
    finally:
        _delete_vhost(amqp_base, vhost)
        with psycopg.connect(db_base, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')
        for c in containers:
            c.stop()


@pytest.fixture(scope="session")
def oms_env(servers: Servers, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """Environment of the system under test (this process and every process it starts)."""
    from shared.config import get_settings

    env = {
        "OMS_DATABASE_URL": servers.database_url,
        "OMS_AMQP_URL": servers.amqp_url,
        "OMS_RETRY_DELAYS": "1,1,1",
        "OMS_STATE_DIR": str(tmp_path_factory.mktemp("oms-state")),
        "OMS_LOG_LEVEL": "INFO",
    }
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    get_settings.cache_clear()
    try:
        yield env
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        get_settings.cache_clear()


@pytest.fixture(scope="session")
def migrated(oms_env: dict[str, str]) -> dict[str, str]:
    from shared.config import get_settings
    from shared.migrate import migrate

    migrate(get_settings())
    return oms_env
