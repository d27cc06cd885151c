"""The operator tools of the ``oms`` command line against a real RabbitMQ: ``events tail`` and ``dlq list|replay``.

``events tail`` runs as a separate process, as an operator would run it, and must print the CloudEvents
published after it subscribed (and only those matching ``--type``). The dead-letter tools must never lose a
message: ``list`` gives back what it reads, ``replay`` moves only the selected ones and only once the copy
is confirmed in the original queue, and keeps a dead letter whose queue no longer exists.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
OMS = [sys.executable, "-c", "from oms.cli import app; app(prog_name='oms')"]


# ------------------------------------------------------------------------------------------------ helpers
class _Lines:
    """Collects a pipe's lines in a thread so the test can wait for one without blocking forever."""

    def __init__(self, stream: Any) -> None:
        self.lines: list[str] = []
        self._thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self._thread.start()

    def _read(self, stream: Any) -> None:
        for line in stream:
            self.lines.append(line)

    def wait_for(self, text: str, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(text in line for line in self.lines):
                return True
            time.sleep(0.05)
        return False

    def join(self, timeout: float) -> None:
        self._thread.join(timeout)


def _envelope(event_type: str, n: int) -> Any:
    from shared.envelope import Envelope

    return Envelope(
        source="/oms/clitest",
        type=event_type,
        subject=str(uuid.uuid4()),
        sequence=n,
        correlationid=str(uuid.uuid4()),
        causationid=str(uuid.uuid4()),
        data={"number": 1000 + n, "note": f"event {n}"},
    )


def _publish(url: str, messages: list[Any]) -> None:
    from shared.amqp import ConfirmedPublisher

    with ConfirmedPublisher(url) as publisher:
        publisher.publish(messages)


PLUMBING = ("nameko-rpc", "oms.redeliver", "oms.delay")
"""Exchanges of a running system that are not ``oms.events`` (README "Events"): tail must not listen to them."""


def _on_exchange(url: str, envelope: Any, exchange: str) -> Any:
    """The envelope's message sent to another exchange (declared as Nameko and ``oms migrate`` declare them)."""
    from dataclasses import replace

    from shared.amqp import connect

    conn = connect(url)
    try:
        conn.channel().exchange_declare(exchange, "topic", durable=True, auto_delete=False)
    finally:
        conn.close()
    return replace(envelope.to_message(), exchange=exchange, mandatory=False)


def _dead_letter(message_id: str, queue: str, *, error: str = "RuntimeError: boom") -> Any:
    from shared.amqp import DEAD_LETTER_QUEUE, OutgoingMessage

    body = json.dumps({"specversion": "1.0", "id": message_id, "type": "clitest.failed.v1", "subject": "s"}).encode()
    props = {
        "content_type": "application/cloudevents+json",
        "message_id": message_id,
        "type": "clitest.failed.v1",
        "delivery_mode": 2,
        "application_headers": {"x-oms-queue": queue, "x-oms-attempts": 5, "x-oms-error": error, "ce-subject": "s"},
    }
    return OutgoingMessage("", DEAD_LETTER_QUEUE, body, props)


def _dlq_rows(runner: CliRunner) -> dict[str, dict[str, Any]]:
    from oms.cli import app

    result = runner.invoke(app, ["dlq", "list", "--json", "--limit", "10000"])
    assert result.exit_code == 0, result.output
    return {row["message_id"]: row for row in json.loads(result.stdout)}


def _remove_from_dlq(url: str, message_ids: set[str]) -> None:
    """Test cleanup: ack our own dead letters, give every other one back."""
    from shared.amqp import DEAD_LETTER_QUEUE, connect

    conn = connect(url)
    try:
        ch = conn.channel()
        ready = ch.queue_declare(DEAD_LETTER_QUEUE, durable=True, auto_delete=False).message_count
        for _ in range(ready):
            msg = ch.basic_get(DEAD_LETTER_QUEUE, no_ack=False)
            if msg is None:
                break
            if msg.properties.get("message_id") in message_ids:
                ch.basic_ack(msg.delivery_tag)
            else:
                ch.basic_reject(msg.delivery_tag, requeue=True)
    finally:
        conn.close()


# ------------------------------------------------------------------------------------------------ events tail
def test_binding_keys_widen_a_trailing_star() -> None:
    from oms.cli.events import binding_keys

    assert binding_keys(None) == ["#"]
    assert binding_keys(["order.*"]) == ["order.#"]
    assert binding_keys(["*"]) == ["#"]
    assert binding_keys(["order.placed.v1", "payment.*,order.placed.v1"]) == ["order.placed.v1", "payment.#"]
    assert binding_keys(["*.placed.v1"]) == ["*.placed.v1"]


def test_event_summary_lines() -> None:
    from oms.cli.events import format_line, summarize

    assert summarize("order.stage_changed.v1", {"number": 1001, "from_stage": "placed", "to_stage": "confirmed"}) == (
        "#1001 placed → confirmed"
    )
    placed = summarize(
        "order.placed.v1",
        {"number": 7, "channel": "web", "items": [{}, {}], "totals": {"total": "12.50"}, "currency": "EUR",
         "customer": {"name": "Ana [b]"}, "stage": "placed"},
    )
    assert placed == "#7 placed via web: 2 item(s), 12.50 EUR (Ana [b])"
    line = format_line(
        {"time": "2024-05-01T12:34:56.789012+00:00", "type": "order.note_added.v1", "subject": "abc", "sequence": 3,
         "data": {"number": 9, "text": "hi"}}
    ).plain
    assert line.startswith("12:34:56.789  order.note_added.v1")
    assert "abc" in line and "seq 3" in line and "#9 note added: 'hi'" in line


def test_events_tail_prints_the_cloudevents_published_after_it_subscribed(migrated: dict[str, str]) -> None:
    url = migrated["OMS_AMQP_URL"]
    proc = subprocess.Popen(
        [*OMS, "events", "tail", "--type", "clitest.*", "--count", "2", "--json"],
        cwd=ROOT,
        env=os.environ.copy(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    out, err = _Lines(proc.stdout), _Lines(proc.stderr)
    try:
        assert err.wait_for("listening", timeout=30), "".join(err.lines)
        wanted = [_envelope("clitest.ping.v1", 1), _envelope("clitest.pong.v1", 2)]
        # Not matching --type: must not be printed (nor counted).
        _publish(url, [_envelope("clitestother.ping.v1", 3).to_message()])
        # Matching --type but on the system's plumbing (Nameko RPC, retries): not events, must not be printed.
        _publish(url, [_on_exchange(url, _envelope("clitest.rpc.v1", 4), name) for name in PLUMBING])
        _publish(url, [e.to_message() for e in wanted])
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    out.join(5)
    err.join(5)
    assert proc.returncode == 0, "".join(err.lines)
    printed = [json.loads(line) for line in out.lines if line.strip()]
    assert [p["id"] for p in printed] == [str(e.id) for e in wanted]
    assert [p["type"] for p in printed] == ["clitest.ping.v1", "clitest.pong.v1"]
    assert printed[0]["specversion"] == "1.0"
    assert printed[1]["sequence"] == 2 and printed[1]["data"] == {"number": 1002, "note": "event 2"}


# ------------------------------------------------------------------------------------------------ dlq
def test_dlq_list_keeps_messages_and_replay_moves_only_the_selected_one(migrated: dict[str, str]) -> None:
    from oms.cli import app
    from shared.amqp import connect

    url = migrated["OMS_AMQP_URL"]
    runner = CliRunner()
    scratch = f"oms.test.cli-scratch-{uuid.uuid4().hex[:8]}"
    gone = f"oms.test.no-such-queue-{uuid.uuid4().hex[:8]}"
    a, b, c = (str(uuid.uuid4()) for _ in range(3))
    conn = connect(url)
    ch = conn.channel()
    ch.queue_declare(scratch, durable=True, auto_delete=False)
    try:
        _publish(url, [_dead_letter(a, scratch), _dead_letter(b, scratch, error="ValueError: nope"),
                       _dead_letter(c, gone)])

        # list: shows them with their headers...
        rows = _dlq_rows(runner)
        assert {a, b, c} <= set(rows)
        assert rows[a]["queue"] == scratch and rows[a]["attempts"] == 5 and rows[a]["error"] == "RuntimeError: boom"
        assert rows[a]["type"] == "clitest.failed.v1" and rows[a]["body"]["id"] == a
        human = runner.invoke(app, ["dlq", "list"])
        assert human.exit_code == 0, human.output
        assert "dead letter(s)" in human.stdout
        # ... and does not take them away.
        assert {a, b, c} <= set(_dlq_rows(runner))

        # replay --id a: a goes back to its queue with the attempts reset; b and c stay.
        result = runner.invoke(app, ["dlq", "replay", "--id", a])
        assert result.exit_code == 0, result.output
        assert "Replayed 1 dead letter(s)" in result.stdout
        moved = ch.basic_get(scratch, no_ack=True)
        assert moved is not None and moved.properties["message_id"] == a
        headers = moved.properties["application_headers"]
        assert headers["x-oms-attempts"] == 0 and "x-oms-error" not in headers and headers["x-oms-queue"] == scratch
        assert json.loads(moved.body)["id"] == a
        assert ch.basic_get(scratch, no_ack=True) is None  # b was not moved
        rows = _dlq_rows(runner)
        assert a not in rows and {b, c} <= set(rows)

        # A dead letter whose queue is gone stays in the DLQ; so does everything on an unknown id.
        result = runner.invoke(app, ["dlq", "replay", "--id", c])
        assert result.exit_code == 1
        assert "does not exist" in result.stderr and "Replayed 0" in result.stdout
        result = runner.invoke(app, ["dlq", "replay", "--id", str(uuid.uuid4())])
        assert result.exit_code == 1 and "Replayed 0" in result.stdout
        assert {b, c} <= set(_dlq_rows(runner))

        # Nothing selected is a usage error, not "replay everything".
        assert runner.invoke(app, ["dlq", "replay"]).exit_code == 2
    finally:
        _remove_from_dlq(url, {a, b, c})
        ch.queue_delete(scratch)
        conn.close()


# ------------------------------------------------------------------------------------------------ apikey
def test_apikey_commands_come_from_the_gateway_manifest_and_the_dev_key_is_stable(migrated: dict[str, str]) -> None:
    """``oms apikey`` is the gateway's typer app, mounted from the registry; ``oms run`` gets the developer key
    through ``oms apikey dev-key``, the same key on every start while it is valid, a new one once revoked."""
    from oms.cli import app
    from oms.cli.common import read_dev_key
    from oms.cli.system import _dev_api_key
    from shared.config import get_settings

    runner = CliRunner()
    created = runner.invoke(app, ["apikey", "create", "cli-test"])
    assert created.exit_code == 0, created.output
    key = created.output.strip().splitlines()[-1]
    listed = runner.invoke(app, ["apikey", "list"], env={"COLUMNS": "200"})
    assert listed.exit_code == 0 and "cli-test" in listed.output
    assert runner.invoke(app, ["apikey", "revoke", key]).exit_code == 0
    assert runner.invoke(app, ["apikey", "revoke", key]).exit_code == 1  # no active key matches any more

    first = _dev_api_key()
    assert first and _dev_api_key() == first == read_dev_key(get_settings())
    assert runner.invoke(app, ["apikey", "revoke", first]).exit_code == 0
    second = _dev_api_key()
    assert second and second != first
