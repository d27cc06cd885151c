"""The broker topology ``oms migrate`` declares, against a real RabbitMQ: a consumer that stops acting on an
event type stops receiving it after the upgrade's migrate (a binding outlives the code that asked for it)."""

from __future__ import annotations

import time
import uuid

import pytest

from tests.conftest import Servers
from tests.integration.conftest import note_event, peek_queue, publish_events

pytestmark = pytest.mark.integration

ADDED, EDITED = "order.note_added.v1", "order.note_edited.v1"


def test_a_type_dropped_from_a_subscription_no_longer_reaches_its_queue(servers: Servers) -> None:
    from shared.amqp import Subscription, Topology, connect, declare_topology

    queue = f"oms.topologytest.{uuid.uuid4().hex[:8]}"
    declare_topology(servers.amqp_url, Topology([Subscription(queue, (ADDED, EDITED))], known_types=(ADDED, EDITED)))
    try:
        # The next version of the consumer acts on notes added only; the catalog still has both types.
        declare_topology(servers.amqp_url, Topology([Subscription(queue, (ADDED,))], known_types=(ADDED, EDITED)))
        subject = str(uuid.uuid4())
        added = note_event(subject, 1, "kept")
        edited = note_event(subject, 2, "dropped").model_copy(update={"type": EDITED})
        publish_events(servers.amqp_url, [edited, added])
        deadline = time.monotonic() + 5
        got = []
        while time.monotonic() < deadline and not got:
            got = peek_queue(servers.amqp_url, queue)
            time.sleep(0.1)
        assert [m["message_id"] for m in got] == [str(added.id)]
    finally:
        conn = connect(servers.amqp_url)
        try:
            ch = conn.channel()
            ch.queue_delete(queue)
            ch.close()
        finally:
            conn.close()
