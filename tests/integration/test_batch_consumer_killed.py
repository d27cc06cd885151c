"""A batch subscriber's process killed between applying its batch and committing it: nothing of the batch was
acked, so the broker redelivers all of it to the next process, which applies each event once."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from tests.conftest import Servers
from tests.integration.conftest import publish_events, wait_for
from tests.integration.test_batch_consumer import TARGET, counted, declare_and_purge, effects, tries
from tests.processes import service_process

pytestmark = pytest.mark.integration


def answers(port: int) -> bool:
    import httpx

    try:
        return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def test_a_process_killed_before_its_batch_commits_has_the_whole_batch_redelivered_and_applied_once(
    probe_schema: str, migrated: dict[str, str], logs: Any, probe_db: Any, servers: Servers
) -> None:
    from tests.e2e.conftest import free_port

    declare_and_purge(servers)
    a = "0" + str(uuid.uuid4())[1:]  # applied first (a batch goes in subject order) ...
    f = "f" + str(uuid.uuid4())[1:]  # ... then this one's event kills the process, before the commit
    a1, a2, die = counted(a, 1, "a1"), counted(a, 2, "a2"), counted(f, 1, "die")
    first_logs, second_logs = logs / "killed", logs / "restarted"
    first_logs.mkdir()
    second_logs.mkdir()
    port = free_port()
    with service_process(TARGET, {**migrated, "OMS_METRICS_PORT": str(port)}, first_logs):
        publish_events(servers.amqp_url, [a1, a2, die])
        wait_for(lambda: not answers(port), what="the process to die in the middle of its batch")
    consumers = ("batchprobe.orders", "batchprobe.notes")
    # a1 was in a batch of three that died (whichever subscription's batch reached the kill first) ...
    assert [3] in [tries(probe_db, a1.id, c) for c in consumers]
    assert all(effects(probe_db, a, c) == [] for c in consumers)  # ... and its effects were rolled back with it

    with probe_db.transaction() as tx:
        tx.execute("INSERT INTO switches VALUES ('alive') ON CONFLICT DO NOTHING")
    port = free_port()
    with service_process(TARGET, {**migrated, "OMS_METRICS_PORT": str(port)}, second_logs):
        for consumer in consumers:
            wait_for(lambda c=consumer: len(effects(probe_db, a, c)) == 2 and effects(probe_db, f, c),
                     what=f"the redelivered batch applied by {consumer}")
    for consumer in consumers:
        assert [e["text"] for e in effects(probe_db, a, consumer)] == ["a1", "a2"]
        assert [e["text"] for e in effects(probe_db, f, consumer)] == ["die"]
        assert len(tries(probe_db, a1.id, consumer)) <= 2  # at most the batch that died, then its redelivery
    declare_and_purge(servers)
