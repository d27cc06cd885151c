"""Nameko extensions every service uses: its database pool and its outbox relay.

Kept apart from the domain so the transport (Nameko on eventlet) stays replaceable.
"""

from __future__ import annotations

import logging
import sys
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


def reconnect_promptly(interval_max: float = 1.0) -> None:
    """Make every Nameko queue consumer (RPC and ``@subscribe``) retry the broker at most every
    ``interval_max`` seconds.

    Nameko's ``QueueConsumer`` reconnects through kombu's ``ensure_connection`` with its defaults: waits of 2,
    4, 6... up to 30 s. After an outage of a few seconds a service thus stayed deaf for seconds more after the
    broker was back, and the gateway's calls waited for it (measured: requests taking 5-7 s). A connection
    attempt to a local broker costs milliseconds, so a short fixed interval is the better trade.
    """
    from contextlib import contextmanager

    from nameko.messaging import QueueConsumer

    @contextmanager
    def establish_connection(self: Any) -> Any:
        with self.create_connection() as conn:
            conn.ensure_connection(self.on_connection_error, self.connect_max_retries,
                                   interval_start=interval_max / 2, interval_step=interval_max / 2,
                                   interval_max=interval_max)
            yield conn

    QueueConsumer.establish_connection = establish_connection  # type: ignore[method-assign]


def survive_lost_replies() -> None:
    """Keep a service running when the broker is gone at the moment a call's answer is sent.

    Nameko sends an RPC's answer after the method returned; if the broker went away meanwhile, the publish
    fails and Nameko kills the whole container (every entrypoint of the service, for good: seen in CI when
    RabbitMQ stopped during a call). The answer cannot reach its caller anyway (the caller's reply queue went
    with the broker, and the gateway answered it 503), and the method's effect is committed: log it, ack the
    request if its channel still lives (Nameko's ``ack_message`` skips a dead one: the broker then redelivers
    it), and go on; the consumers reconnect when the broker is back.
    """
    from amqp.exceptions import ConnectionError as AmqpConnectionError
    from kombu.exceptions import OperationalError
    from nameko.rpc import RpcConsumer

    if getattr(RpcConsumer.handle_result, "survives_lost_replies", False):
        return
    send_and_ack = RpcConsumer.handle_result

    def handle_result(self: Any, message: Any, result: Any, exc_info: Any) -> tuple[Any, Any]:
        try:
            answered: tuple[Any, Any] = send_and_ack(self, message, result, exc_info)
            return answered
        except (OperationalError, AmqpConnectionError, OSError) as exc:
            log.warning("the answer to %s could not be sent, the broker is unreachable (%s): its caller was not "
                        "waiting any more", message.delivery_info.get("routing_key"), exc)
            self.queue_consumer.ack_message(message)
            return result, exc_info

    handle_result.survives_lost_replies = True  # type: ignore[attr-defined]
    RpcConsumer.handle_result = handle_result  # type: ignore[method-assign]


def lean_replies() -> None:
    """Send each RPC answer the way its reply queue can use it: encoded once, not persistent, no confirm.

    Nameko's ``Responder`` encodes every answer twice (once to check that it can, once to send it), builds a
    kombu connection object from the URI for each answer, and publishes it persistent and with a publisher
    confirm: the worker then waits a round trip for the broker's ack, and the broker does the confirm's work,
    for every call (py-spy: 9-11 % of the orders and payments processes' samples under ``send_response``
    during card orders). None of it buys anything for an answer: the reply queue is the caller's own,
    exclusive and auto-deleted, so a persistent answer is not kept past a broker restart, and a confirmed one
    that the broker routed can still be lost with its caller. A caller that gets no answer times out either
    way (the gateway answers 503); the call's effect is committed before its answer is sent in both cases.
    A publish on a dead connection still raises, as before (``survive_lost_replies`` handles that).
    An answer the serializer refuses is still replaced by ``UnserializableValueError``, as Nameko does.
    """
    import kombu.serialization
    from nameko.amqp.publish import Publisher
    from nameko.exceptions import UnserializableValueError, serialize
    from nameko.rpc import Responder

    if getattr(Responder.send_response, "lean", False):
        return

    class ReplyPublisher(Publisher):  # type: ignore[misc]
        use_confirms = False
        delivery_mode = 1  # transient: the reply queue is exclusive and auto-deleted

    def send_response(self: Any, result: Any, exc_info: Any) -> tuple[Any, Any]:
        error = serialize(exc_info[1]) if exc_info is not None else None
        content_type = self.message.properties["content_type"]
        serializer = kombu.serialization.registry.type_to_name[content_type]
        try:
            content_type, encoding, body = kombu.serialization.dumps({"result": result, "error": error},
                                                                     serializer)
        except Exception:  # noqa: BLE001 - Nameko's rule: an answer that cannot be encoded becomes an error
            exc_info = sys.exc_info()
            error = serialize(UnserializableValueError(result))
            result = None
            content_type, encoding, body = kombu.serialization.dumps({"result": None, "error": error},
                                                                     serializer)
        ReplyPublisher(self.amqp_uri, ssl=self.ssl, login_method=self.login_method).publish(
            body,
            content_type=content_type,
            content_encoding=encoding,
            exchange=self.exchange,
            routing_key=self.message.properties["reply_to"],
            correlation_id=self.message.properties.get("correlation_id"),
        )
        return result, exc_info

    send_response.lean = True  # type: ignore[attr-defined]
    Responder.send_response = send_response  # type: ignore[method-assign]
