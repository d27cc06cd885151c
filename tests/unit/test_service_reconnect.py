"""A Nameko service retries the broker at most every second, so it hears again within a second of the
broker's return (kombu's own schedule waits 2, 4, 6... up to 30 s between attempts)."""

from __future__ import annotations

from typing import Any

import pytest
from kombu import Connection

pytestmark = pytest.mark.unit


def test_queue_consumers_retry_the_broker_at_most_every_second() -> None:
    from nameko.messaging import QueueConsumer

    from shared.nameko_ext import reconnect_promptly

    reconnect_promptly()

    class Consumer:  # what ``QueueConsumer.establish_connection`` uses of itself
        connect_max_retries = 2
        waits: list[float] = []

        def create_connection(self) -> Connection:
            return Connection("amqp://guest:guest@127.0.0.1:1//", connect_timeout=1)  # nothing listens there

        def on_connection_error(self, exc: Exception, interval: float) -> None:
            self.waits.append(interval)

    consumer: Any = Consumer()
    with pytest.raises(Exception), QueueConsumer.establish_connection(consumer):  # noqa: B017 - kombu's own error
        pass
    assert consumer.waits and max(consumer.waits) <= 1.0, consumer.waits
