"""docker-compose.yml's own environment runs a card payment end to end (without Docker).

The compose file is read as is: each OMS service's ``environment`` (and the image's ``ENV`` from
deploy/Dockerfile, e.g. ``OMS_ENV=production``) is given to a local process started as the container's
command would start it (``oms run <name>``, from the registry). Only addresses change: a compose host name
becomes 127.0.0.1 and each (service, port) pair a free local port, consistently, so a URL that names the
``gateway`` service on 8080 reaches the local gateway. Postgres and RabbitMQ are this run's own database and
vhost (the compose file's credentials are those of its own containers). A card order is then paid with the
4242 card at the sandbox provider, whose webhook must reach payments through the gateway, and the order is
confirmed: what failed under compose when the sandbox listened on 127.0.0.1 and sent its webhooks to itself.
"""

from __future__ import annotations

import base64
import os
import re
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
import pytest
import yaml

from services.payments.contracts.sandbox import CARD_SUCCESS
from tests.conftest import Servers, _create_vhost, _delete_vhost, _vhost_url
from tests.e2e.conftest import free_port, until
from tests.processes import registry_process
from tests.unit.test_deploy_files import dockerfile_instructions, env_dict, run_target

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
PROCESSES = ("orders", "payments", "gateway", "sandbox-provider")
INFRA = {"postgres": "OMS_DATABASE_URL", "rabbitmq": "OMS_AMQP_URL"}
_VAR = re.compile(r"\$\{(\w+)(?::?([-?])([^}]*))?\}")


def interpolate(value: str, environ: dict[str, str]) -> str:
    """Compose's ``${VAR}``, ``${VAR:-default}`` and ``${VAR:?error}``."""

    def one(m: re.Match[str]) -> str:
        name, op, arg = m.group(1), m.group(2), m.group(3)
        if environ.get(name):
            return environ[name]
        if op == "?":
            raise AssertionError(f"compose needs {name}: {arg}")
        return arg or ""

    return _VAR.sub(one, value)


def image_env() -> dict[str, str]:
    env: dict[str, str] = {}
    for instr, args in dockerfile_instructions((ROOT / "deploy" / "Dockerfile").read_text()):
        if instr == "ENV":
            env.update(dict(re.findall(r"(\w+)=(\S+)", args)))
    return {k: v for k, v in env.items() if k.startswith("OMS_")}


class Addresses:
    """Compose host -> 127.0.0.1, (host, container port) -> a free local port, the same each time asked."""

    def __init__(self, hosts: set[str]) -> None:
        self.hosts = hosts
        self.ports: dict[tuple[str, int], int] = {}

    def port(self, host: str, port: int) -> int:
        return self.ports.setdefault((host, port), free_port())

    def rewrite(self, service: str, key: str, value: str) -> str:
        if key.endswith("_PORT") and value.isdigit() and int(value) > 0:
            return str(self.port(service, int(value)))
        if "://" in value:
            parts = urlsplit(value)
            if parts.hostname in self.hosts and parts.port:
                netloc = f"127.0.0.1:{self.port(parts.hostname, parts.port)}"
                return urlunsplit(parts._replace(netloc=netloc))
        return value


@pytest.fixture()
def compose_system(servers: Servers, tmp_path: Path) -> Iterator[dict[str, dict[str, str]]]:
    """The compose services orders, payments, gateway and sandbox-provider as local processes."""
    import psycopg

    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    by_target = {run_target(s.get("command")): name for name, s in compose["services"].items()}
    secret = "whsec_" + base64.b64encode(uuid.uuid4().bytes + uuid.uuid4().bytes).decode()
    outside = {"OMS_SANDBOX_WEBHOOK_SECRET": secret}  # what the operator puts in .env

    run_id = uuid.uuid4().hex[:8]
    dbname, vhost = f"oms_compose_{run_id}", f"oms_compose_{run_id}"
    with psycopg.connect(servers.admin_database_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{dbname}"')
    _create_vhost(servers.amqp_base_url, vhost)
    infra = {
        "OMS_DATABASE_URL": urlunsplit(urlsplit(servers.admin_database_url)._replace(path="/" + dbname)),
        "OMS_AMQP_URL": _vhost_url(servers.amqp_base_url, vhost),
    }
    addresses = Addresses(set(compose["services"]) - set(INFRA))
    envs: dict[str, dict[str, str]] = {}
    for target in ("migrate", *PROCESSES):
        name = by_target[target]
        env = {**image_env(), **{k: str(v) for k, v in env_dict(compose["services"][name].get("environment")).items()}}
        env = {k: addresses.rewrite(name, k, interpolate(v, outside)) for k, v in env.items()}
        for key, url in infra.items():
            assert urlsplit(env[key]).hostname in INFRA, f"{name}: {key} is not a compose infrastructure service"
            env[key] = url
        envs[target] = env
    try:
        migrate = subprocess.run(
            [sys.executable, "-m", "oms.cli", "migrate"], cwd=ROOT, capture_output=True, text=True, timeout=180,
            env={**{k: v for k, v in os.environ.items() if not k.startswith("OMS_")}, **envs["migrate"]},
        )
        assert migrate.returncode == 0, migrate.stdout + migrate.stderr
        with ExitStack() as stack:
            for target in PROCESSES:
                stack.enter_context(registry_process(target, envs[target], tmp_path, only_given_settings=True))
            yield envs
    finally:
        _delete_vhost(servers.amqp_base_url, vhost)
        with psycopg.connect(servers.admin_database_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')


def test_a_card_payment_confirms_the_order_with_the_compose_environment(
    compose_system: dict[str, dict[str, str]],
) -> None:
    import psycopg

    from services.gateway.auth import create_api_key

    gateway, sandbox = compose_system["gateway"], compose_system["sandbox-provider"]
    assert compose_system["payments"]["OMS_ENV"] == "production"
    with psycopg.connect(gateway["OMS_DATABASE_URL"], autocommit=True) as conn:
        _id, key = create_api_key(conn, "compose e2e")
    api_url = f"http://127.0.0.1:{gateway['OMS_HTTP_PORT']}/api/v1"
    provider = f"http://127.0.0.1:{sandbox['OMS_SANDBOX_PORT']}"
    assert compose_system["payments"]["OMS_SANDBOX_PROVIDER_URL"] == provider
    order_body: dict[str, Any] = {
        "channel": "web",
        "customer": {"name": "Compose Card", "phone": "+49 30 5550101", "email": "compose@example.com"},
        "items": [{"sku": "TEE", "name": "Tee", "quantity": 1, "unit_price": "19.90"}],
        "currency": "EUR",
    }
    address = {"address": {"line1": "1 Compose Way", "city": "Berlin", "postal_code": "10115", "country": "DE"}}
    with httpx.Client(base_url=api_url, headers={"Authorization": f"Bearer {key}"}, timeout=15) as api:
        placed = api.post("/orders", json=order_body)
        assert placed.status_code == 201, placed.text
        ref = placed.json()["id"]
        api.put(f"/orders/{ref}/address", json=address).raise_for_status()
        api.put(f"/orders/{ref}/payment-method", json={"method": "card"}).raise_for_status()
        api.put(f"/orders/{ref}/customer-note", json={"skip": True}).raise_for_status()

        def link() -> dict[str, Any] | None:
            r = api.post(f"/orders/{ref}/payments/link")
            return r.json() if r.status_code == 200 else None

        payment_link = until(link, "payments to know the order and make a link")
        assert payment_link["url"].startswith(provider)
        paid = httpx.post(f"{provider}/v1/payment_links/{payment_link['link_id']}/pay",
                          json={"card_number": CARD_SUCCESS}, headers={"Idempotency-Key": str(uuid.uuid4())},
                          timeout=10)
        assert paid.status_code == 200 and paid.json()["status"] == "succeeded", paid.text
        confirmed = until(lambda: (o := api.get(f"/orders/{ref}").json())["stage"] == "confirmed" and o,
                          "the sandbox's webhook to reach payments through the gateway and confirm the order")
        assert confirmed["payment_status"] == "paid"
