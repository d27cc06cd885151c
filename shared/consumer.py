"""``@subscribe``: a Nameko entrypoint for domain events that never loses one.

Nameko's own ``@event_handler`` acks a message even when the handler raises (the event is gone), or with
``requeue_on_error`` requeues it at once, forever. This entrypoint instead:

- reads the raw body itself, so a message that is not JSON cannot crash the consumer: it is dead-lettered
  with the reason, as is one that is not a valid CloudEvent, whose type is not in the catalog, or whose
  data fails the type's schema; the handler is called as ``handler(self, envelope, data)``;
- on a ``PermanentError`` or a validation error from the handler, dead-letters at once;
- on any other error, republishes the message to a delay queue (``oms.delay.<n>s``, TTL, then routed back
  to this queue by ``oms.redeliver``) with the attempt count, and after the last delay dead-letters it to
  ``oms.dead-letters`` with the error, the queue and the attempt count (``oms dlq list|replay``);
- acks the original only after that copy is confirmed by the broker, so a crash in between redelivers.

The rest of the queue keeps flowing meanwhile: a failing message waits in a delay queue, not at the head.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from functools import partial
from typing import Any

from kombu import Queue
from nameko.extensions import Entrypoint
from nameko.messaging import QueueConsumer
from prometheus_client import Counter
from pydantic import ValidationError

from shared.amqp import DEAD_LETTER_QUEUE, DELAY_EXCHANGE, ConfirmedPublisher, OutgoingMessage, Subscription
from shared.catalog import parse_data
from shared.envelope import parse_envelope
from shared.errors import PermanentError

log = logging.getLogger(__name__)

ATTEMPTS_HEADER = "x-oms-attempts"
ERROR_HEADER = "x-oms-error"
QUEUE_HEADER = "x-oms-queue"
DEFAULT_DELAYS = (1, 5, 30, 120)


# Alert on ``increase(oms_events_handled_total{outcome="dead_lettered"}[5m]) > 0``: an event needs a person.
HANDLED = Counter(
    "oms_events_handled_total", "Events handled by a subscriber, by outcome (ok, retried, dead_lettered)",
    ["queue", "outcome"],
)


def queue_name(service: str, name: str) -> str:
    return f"oms.{service}.{name}"


class RawQueueConsumer(QueueConsumer):
    """Nameko's queue consumer, but handing over undecoded messages (kombu's ``on_message``)."""

    def get_consumers(self, consumer_cls: Any, channel: Any) -> Any:
        for provider in self._providers:
            consumer = consumer_cls(
                queues=[provider.queue], on_message=partial(self.handle_raw, provider), accept=None
            )
            consumer.qos(prefetch_count=self.prefetch_count)
            self._consumers[provider] = consumer
        return self._consumers.values()

    def handle_raw(self, provider: Any, message: Any) -> None:
        self.container.spawn_managed_thread(partial(provider.handle_message, None, message))


class EventSubscriber(Entrypoint):
    queue_consumer = RawQueueConsumer()

    def __init__(self, name: str, topics: Sequence[str], **kwargs: Any) -> None:
        self.name = name
        self.topics = tuple(topics)
        self._publisher: ConfirmedPublisher | None = None
        self._publish_lock = threading.Lock()
        super().__init__(**kwargs)

    @property
    def subscription(self) -> Subscription:
        return Subscription(queue_name(self.container.service_name, self.name), self.topics)

    @property
    def delays(self) -> tuple[int, ...]:
        return tuple(self.container.config.get("OMS_RETRY_DELAYS", DEFAULT_DELAYS))

    def setup(self) -> None:
        self.queue = Queue(self.subscription.queue, no_declare=True)
        self.queue_consumer.register_provider(self)

    def stop(self) -> None:
        self.queue_consumer.unregister_provider(self)
        if self._publisher is not None:
            self._publisher.close()

    def handle_message(self, body: Any, message: Any) -> None:
        try:
            env = parse_envelope(message.body)
            data = parse_data(env)
        except PermanentError as exc:
            self._settle(message, exc, permanent=True)
            return
        context = {"correlation_id": env.correlationid, "event_id": str(env.id)}
        try:
            self.container.spawn_worker(
                self, (env, data), {}, context_data=context, handle_result=partial(self._handle_result, message)
            )
        except Exception:  # noqa: BLE001 - container is being killed: give the message back
            self.queue_consumer.requeue_message(message)

    def _handle_result(self, message: Any, worker_ctx: Any, result: Any = None, exc_info: Any = None) -> Any:
        if exc_info is None:
            HANDLED.labels(self.subscription.queue, "ok").inc()
            self.queue_consumer.ack_message(message)
        else:
            exc = exc_info[1]
            self._settle(message, exc, permanent=isinstance(exc, PermanentError | ValidationError))
        return result, exc_info

    def _settle(self, message: Any, exc: BaseException, *, permanent: bool) -> None:
        headers = dict(message.headers or {})
        attempts = int(headers.get(ATTEMPTS_HEADER, 0)) + 1
        delays = self.delays
        queue = self.subscription.queue
        reason = f"{type(exc).__name__}: {exc}"[:2000]
        headers.update({ATTEMPTS_HEADER: attempts, ERROR_HEADER: reason, QUEUE_HEADER: queue})
        props = {k: v for k, v in (message.properties or {}).items() if k != "application_headers"}
        props["application_headers"] = headers
        props["delivery_mode"] = 2
        if not permanent and attempts <= len(delays):
            delay = delays[attempts - 1]
            out = OutgoingMessage(DELAY_EXCHANGE, f"{delay}s.{queue}", message.body, props)
            log.warning("%s: attempt %d failed (%s); retrying in %ds", queue, attempts, reason, delay)
            HANDLED.labels(queue, "retried").inc()
        else:
            out = OutgoingMessage("", DEAD_LETTER_QUEUE, message.body, props)
            log.error("%s: dead-lettered after %d attempt(s): %s", queue, attempts, reason)
            HANDLED.labels(queue, "dead_lettered").inc()
        try:
            with self._publish_lock:
                if self._publisher is None:
                    self._publisher = ConfirmedPublisher(self.container.config["AMQP_URI"])
                self._publisher.publish([out])
        except Exception:  # noqa: BLE001
            # Could not park the copy: give the message back to the broker rather than lose it.
            log.exception("%s: could not publish retry/dead-letter copy; requeueing", queue)
            self.queue_consumer.requeue_message(message)
            return
        self.queue_consumer.ack_message(message)


subscribe = EventSubscriber.decorator


def subscriptions_of(service_cls: type) -> list[Subscription]:
    """The queues a service class consumes, read from its ``@subscribe`` declarations (for migrate)."""
    from nameko.extensions import ENTRYPOINT_EXTENSIONS_ATTR

    subs = []
    service_name = service_cls.name  # type: ignore[attr-defined]
    for attr in vars(service_cls).values():
        for ext in getattr(attr, ENTRYPOINT_EXTENSIONS_ATTR, ()):
            if isinstance(ext, EventSubscriber):
                subs.append(Subscription(queue_name(service_name, ext.name), ext.topics))
    return subs
