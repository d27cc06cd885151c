"""Exactly one message per event, with the real processes: the notifications service (``python -m
shared.runtime notifications``) sends through the sandbox messaging provider (``python -m
services.notifications.provider.sandbox``), each its own process on its own port, events published through
RabbitMQ, message rows read from the service's schema.

* The crash window: the service is killed (SIGKILL, its whole process group) while the provider holds the answer
  to a send it already accepted; the restarted service sends the row again once its claim ran out, with the
  same idempotency key, and the phone has ONE message (the provider answered the second request with the first
  message).
* A provider outage: the message waits (``retrying``), then goes once the provider is back, once.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.builders import OrderStream, place_order
from tests.conftest import Servers
from tests.integration.conftest import publish_events, wait_for

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
CREDENTIALS = {  # the provider's and the service's: the same variables
    "OMS_SMS_ACCOUNT_SID": "ACexactlyonce",
    "OMS_SMS_AUTH_TOKEN": "exactly-once-sms-token",
    "OMS_WHATSAPP_ACCESS_TOKEN": "exactly-once-wa-token",
    "OMS_WHATSAPP_APP_SECRET": "exactly-once-wa-secret",
}
CLAIM_TIMEOUT = 2.0
LATENCY = 5.0  # how long the provider holds the answer to an accepted send: the service is killed meanwhile


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Process:
    """A real process in its own session (so its whole process group can be killed), logging to a file."""

    def __init__(self, cmd: list[str], env: dict[str, str], log: Path) -> None:
        self.log = log
        full_env = {**os.environ, **env, "PYTHONWARNINGS": "ignore", "PYTHONUNBUFFERED": "1"}
        with open(log, "wb") as out:
            self.proc = subprocess.Popen(cmd, cwd=ROOT, env=full_env, stdout=out, stderr=subprocess.STDOUT,
                                         start_new_session=True)

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_until(self, ready: Callable[[], bool], what: str) -> None:
        deadline = time.monotonic() + 30
        while not ready():
            if self.proc.poll() is not None:
                raise RuntimeError(f"{what}: exited with {self.proc.returncode}:\n{self.text()[-3000:]}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{what}: not up in 30 s:\n{self.text()[-3000:]}")
            time.sleep(0.1)

    def kill_group(self) -> None:
        """kill -9 of the process and everything it started: no clean-up code runs."""
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    # No webhook receiver: receipts are recorded by the sandbox, not sent (the "sent" status is what matters).
    proc = Process([sys.executable, "-m", "services.notifications.provider.sandbox", "--port", str(port),
                    "--sms-webhook-url", "", "--whatsapp-webhook-url", ""],
                   {**CREDENTIALS, "OMS_ENV": "development"},
                   tmp_path_factory.mktemp("exactly-once") / "sandbox-messaging.log")

    def up() -> bool:
        try:
            return httpx.get(url + "/", timeout=1).status_code == 200
        except httpx.TransportError:
            return False

    try:
        proc.wait_until(up, "the sandbox messaging provider")
        yield url
    finally:
        proc.stop()


@pytest.fixture(scope="module")
def db(migrated: dict[str, str], servers: Servers) -> Iterator[Any]:
    from shared.db import Database

    database = Database(servers.database_url, "notifications", size=2)
    database.open()
    yield database
    database.close()


@contextmanager
def notifications(migrated: dict[str, str], sandbox: str, log: Path) -> Iterator[Process]:
    """The notifications service as a real process, sending SMS and WhatsApp through the sandbox (e-mail to a
    port nobody listens on: the store's new-order mail just waits, retrying)."""
    env = {
        **migrated, **CREDENTIALS,
        "OMS_METRICS_PORT": "0",
        "OMS_SMS_URL": sandbox,
        "OMS_WHATSAPP_URL": sandbox,
        "OMS_SMTP_PORT": str(free_port()),
        "OMS_NOTIFY_CLAIM_TIMEOUT": str(CLAIM_TIMEOUT),
        "OMS_NOTIFY_POLL_INTERVAL": "0.2",
        "OMS_NOTIFY_RETRY_BASE": "0.2",
        "OMS_CHANNEL_TIMEOUT": str(LATENCY * 3),  # the sender waits out the provider's latency
    }
    proc = Process([sys.executable, "-m", "shared.runtime", "notifications"], env, log)
    try:
        proc.wait_until(lambda: "started" in proc.text(), "the notifications service")
        yield proc
    finally:
        proc.stop()


def control(sandbox: str, path: str, **body: Any) -> None:
    httpx.post(f"{sandbox}/sandbox/{path}", json=body, timeout=10).raise_for_status()


def phone(sandbox: str, number: str) -> list[dict[str, Any]]:
    """What the sandbox "phone" with this number received."""
    resp = httpx.get(f"{sandbox}/sandbox/messages", params={"to": number}, timeout=10)
    resp.raise_for_status()
    result: list[dict[str, Any]] = resp.json()
    return result


def a_number() -> str:
    return "+2162" + f"{uuid.uuid4().int % 10_000_000:07d}"


def placed(channel: str, number: str, **customer: str) -> OrderStream:
    return OrderStream.place(
        place_order(currency="TND", lines=[("TEE", 1, "19.900")], channel=channel,
                    customer={"name": "Lina Ben Ali", "phone": number, **customer}),
        order_id=uuid.uuid4(), number=100_000 + uuid.uuid4().int % 800_000)


def customer_messages(db: Any, order_id: str) -> list[dict[str, Any]]:
    with db.transaction() as tx:
        rows: list[dict[str, Any]] = tx.execute(
            "SELECT * FROM messages WHERE order_id = %s AND kind <> 'new_order_staff' ORDER BY created_at",
            (order_id,)).fetchall()
    return rows


def history(db: Any, message_id: Any) -> list[str]:
    with db.transaction() as tx:
        return [r["status"] for r in tx.execute(
            "SELECT status FROM message_history WHERE message_id = %s ORDER BY id", (message_id,)).fetchall()]


def only_message(db: Any, order_id: str, check: Callable[[dict[str, Any]], bool]) -> dict[str, Any] | None:
    rows = customer_messages(db, order_id)
    return rows[0] if len(rows) == 1 and check(rows[0]) else None


SENT_OR_LATER = ("sent", "delivered", "read")


def test_a_service_killed_while_the_provider_answers_sends_the_message_again_and_the_phone_gets_it_once(
    migrated: dict[str, str], servers: Servers, sandbox: str, db: Any, tmp_path: Path
) -> None:
    number = a_number()
    order = placed("whatsapp", number)
    control(sandbox, "latency", seconds=LATENCY)
    try:
        with notifications(migrated, sandbox, tmp_path / "killed.log") as service:
            publish_events(servers.amqp_url, order.envelopes)
            # The provider accepted the message (the phone has it) and holds its answer: the service waits.
            wait_for(lambda: phone(sandbox, number), what="the provider to accept the message")
            service.kill_group()
        claimed = customer_messages(db, order.order_id)
        assert [(m["channel"], m["status"], m["provider_message_id"]) for m in claimed] == [
            ("whatsapp", "queued", None)]  # the crash window: accepted, not recorded
        assert claimed[0]["claimed_until"] is not None
    finally:
        control(sandbox, "latency", seconds=0)

    with notifications(migrated, sandbox, tmp_path / "restarted.log"):
        message = wait_for(lambda: only_message(db, order.order_id, lambda m: m["status"] in SENT_OR_LATER),
                           timeout=60, what="the message sent by the restarted service")

    on_phone = phone(sandbox, number)
    assert len(on_phone) == 1, on_phone  # one message on the phone ...
    received = on_phone[0]
    assert received["requests"] == 2  # ... though it was asked for twice: the resend carried the same key
    assert received["idempotency_key"].startswith(str(message["idempotency_key"]))
    assert message["provider_message_id"] == received["id"]
    assert history(db, message["id"]).count("sent") == 1


def test_a_message_waits_out_a_provider_outage_and_goes_once(
    migrated: dict[str, str], servers: Servers, sandbox: str, db: Any, tmp_path: Path
) -> None:
    number = a_number()
    order = placed("web", number)  # no e-mail address: the web order's customer is answered by SMS
    control(sandbox, "outage", down=True)
    try:
        with notifications(migrated, sandbox, tmp_path / "outage.log"):
            publish_events(servers.amqp_url, order.envelopes)
            waiting = wait_for(
                lambda: only_message(db, order.order_id, lambda m: m["status"] == "retrying" and m["attempts"] >= 1),
                timeout=60, what="the message to wait for the provider")
            assert waiting["channel"] == "sms" and waiting["recipient"] == number
            assert "HTTP 503" in waiting["reason"]
            assert phone(sandbox, number) == []
            control(sandbox, "outage", down=False)
            message = wait_for(lambda: only_message(db, order.order_id, lambda m: m["status"] in SENT_OR_LATER),
                               timeout=60, what="the message sent once the provider is back")
    finally:
        control(sandbox, "outage", down=False)

    on_phone = phone(sandbox, number)
    assert len(on_phone) == 1, on_phone
    received = on_phone[0]
    assert received["channel"] == "sms" and received["requests"] == 1
    assert message["provider_message_id"] == received["id"]
    assert history(db, message["id"]).count("sent") == 1
