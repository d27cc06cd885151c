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

**Batches** (``@subscribe(name, topics, batch_size=100, batch_wait=0.005)``): a Nameko worker costs more CPU
than handling an event, so the entrypoint gathers up to ``batch_size`` deliveries (the prefetch allows two
batches), or what arrived within ``batch_wait`` seconds of the first, and runs ONE worker for them:
``handler(self, [(envelope, data), ...])``, which handles them in one transaction (``shared.inbox.
process_batch``). Each message is acked only after that transaction committed.

At most ``concurrency`` batches (default 1) of one subscriber run at a time in a process; while they run, the
next batch keeps filling and goes the moment a slot frees. So under load batches grow towards ``batch_size``
(fewer, larger transactions) instead of many small batches racing for the same rows: concurrent batches of
one queue touch the same hot rows (an order's stream, a SKU's stock, the alert sequence) and measured mostly
waiting on each other's row and advisory locks. More throughput comes from more processes (``oms run -p``).

If the batch raises, it was rolled back, and every message of it is handled again alone (a batch of one), so a
poison message takes the retry/dead-letter path above by itself while its batch-mates succeed on that second
try.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from functools import partial
from typing import Any

from kombu import Queue
from nameko.extensions import Entrypoint
from nameko.messaging import QueueConsumer
from prometheus_client import Counter, Histogram
from pydantic import ValidationError

from shared.amqp import DEAD_LETTER_QUEUE, DELAY_EXCHANGE, ConfirmedPublisher, OutgoingMessage, Subscription
from shared.catalog import parse_data
from shared.envelope import Envelope, parse_envelope
from shared.errors import PermanentError

log = logging.getLogger(__name__)

ATTEMPTS_HEADER = "x-oms-attempts"
ERROR_HEADER = "x-oms-error"
QUEUE_HEADER = "x-oms-queue"
DEFAULT_DELAYS = (1, 5, 30, 120)
DEFAULT_BATCH_WAIT = 0.005  # seconds a batch waits for more messages after its first


# Alert on ``increase(oms_events_handled_total{outcome="dead_lettered"}[5m]) > 0``: an event needs a person.
HANDLED = Counter(
    "oms_events_handled_total", "Events handled by a subscriber, by outcome (ok, retried, dead_lettered)",
    ["queue", "outcome"],
)
BATCH_SIZES = Histogram(
    "oms_event_batch_size", "Events per batch handled by a batch subscriber (one transaction each)", ["queue"],
    buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500),
)
HANDLE_LAG = Histogram(
    "oms_event_handle_lag_seconds", "From the event's time to its handling committed and acked", ["queue"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)


def queue_name(service: str, name: str) -> str:
    return f"oms.{service}.{name}"


class RawQueueConsumer(QueueConsumer):
    """Nameko's queue consumer, but handing over undecoded messages (kombu's ``on_message``), with a prefetch
    large enough for a subscriber's batches."""

    def get_consumers(self, consumer_cls: Any, channel: Any) -> Any:
        for provider in self._providers:
            consumer = consumer_cls(
                queues=[provider.queue], on_message=partial(self.handle_raw, provider), accept=None
            )
            consumer.qos(prefetch_count=max(self.prefetch_count, provider.prefetch_count))
            self._consumers[provider] = consumer
        return self._consumers.values()

    def handle_raw(self, provider: Any, message: Any) -> None:
        if provider.batch_size is not None:
            provider.collect(message)  # a list append in the consumer's thread; the batch gets its own thread
        else:
            self.container.spawn_managed_thread(partial(provider.handle_message, None, message))


Item = tuple[Any, Envelope, Any]  # (message, envelope, typed data)


class EventSubscriber(Entrypoint):
    queue_consumer = RawQueueConsumer()

    def __init__(
        self,
        name: str,
        topics: Sequence[str],
        *,
        batch_size: int | None = None,
        batch_wait: float = DEFAULT_BATCH_WAIT,
        concurrency: int = 1,
        **kwargs: Any,
    ) -> None:
        self.name = name
        self.topics = tuple(topics)
        if batch_size is not None and batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        self.batch_size = batch_size
        self.batch_wait = batch_wait
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        self.concurrency = concurrency
        self._running = 0  # batches dispatched and not finished (green threads: no lock needed)
        self._pending: list[Any] = []
        self._round = 0
        self._publisher: ConfirmedPublisher | None = None
        self._publish_lock = threading.Lock()
        super().__init__(**kwargs)

    @property
    def subscription(self) -> Subscription:
        return Subscription(queue_name(self.container.service_name, self.name), self.topics)

    @property
    def delays(self) -> tuple[int, ...]:
        return tuple(self.container.config.get("OMS_RETRY_DELAYS", DEFAULT_DELAYS))

    @property
    def prefetch_count(self) -> int:
        # The running batches' worth and one more: the next batch fills while they are being handled.
        return (self.concurrency + 1) * self.batch_size if self.batch_size is not None else 0

    def setup(self) -> None:
        self.queue = Queue(self.subscription.queue, no_declare=True)
        self.queue_consumer.register_provider(self)

    def stop(self) -> None:
        self.queue_consumer.unregister_provider(self)
        if self._publisher is not None:
            self._publisher.close()

    # One event per worker: ``handler(self, envelope, data)``.

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
                self, (env, data), {}, context_data=context,
                handle_result=partial(self._handle_result, message, env),
            )
        except Exception:  # noqa: BLE001 - container is being killed: give the message back
            self.queue_consumer.requeue_message(message)

    def _handle_result(
        self, message: Any, env: Envelope, worker_ctx: Any, result: Any = None, exc_info: Any = None
    ) -> Any:
        if exc_info is None:
            self._acknowledge([(message, env, None)])
        else:
            exc = exc_info[1]
            self._settle(message, exc, permanent=isinstance(exc, PermanentError | ValidationError))
        return result, exc_info

    # Batches: ``handler(self, [(envelope, data), ...])``, one worker for up to ``batch_size`` messages.

    def collect(self, message: Any) -> None:
        """Called for each delivery, in the consumer's thread: the batch goes when full or ``batch_wait`` after
        its first message, whichever comes first, if a slot is free; otherwise when a running batch finishes."""
        assert self.batch_size is not None
        self._pending.append(message)
        if self._running >= self.concurrency:
            return
        if len(self._pending) >= self.batch_size:
            self._dispatch()
        elif len(self._pending) == 1:
            self.container.spawn_managed_thread(partial(self._dispatch_after, self._round))

    def _dispatch_after(self, round_: int) -> None:
        time.sleep(self.batch_wait)  # green under eventlet
        if round_ == self._round and self._pending and self._running < self.concurrency:
            self._dispatch()

    def _dispatch(self) -> None:
        assert self.batch_size is not None
        messages, self._pending = self._pending[: self.batch_size], self._pending[self.batch_size:]
        self._round += 1
        self._running += 1
        self.container.spawn_managed_thread(partial(self._start_batch, messages))

    def _finished(self) -> None:
        """A batch's slot is free: what gathered meanwhile goes now (it has waited a batch's time already)."""
        self._running -= 1
        while self._pending and self._running < self.concurrency:
            self._dispatch()

    def _start_batch(self, messages: list[Any]) -> None:
        items: list[Item] = []
        for message in messages:
            try:
                env = parse_envelope(message.body)
                items.append((message, env, parse_data(env)))
            except PermanentError as exc:
                self._settle(message, exc, permanent=True)
        if items:
            self._spawn_batch(items)
        else:
            self._finished()

    def _spawn_batch(self, items: list[Item], *, slot: bool = True) -> None:
        """``slot``: this batch holds one of the ``concurrency`` slots (not the singles of a failed batch). The slot
        frees when the worker's thread ends, however it ends (a worker whose setup raised never reaches
        ``handle_result``; a slot lost there would stop the subscriber for good)."""
        first = items[0][1]
        context = {"correlation_id": first.correlationid, "event_id": str(first.id)}
        try:
            worker_ctx = self.container.spawn_worker(
                self, ([(env, data) for _, env, data in items],), {}, context_data=context,
                handle_result=partial(self._handle_batch_result, items),
            )
        except Exception:  # noqa: BLE001 - container is being killed: give the messages back
            for message, _, _ in items:
                self.queue_consumer.requeue_message(message)
            if slot:
                self._running -= 1
            return
        if slot:
            thread = self.container._worker_threads.get(worker_ctx)  # Nameko keeps it until the thread ends
            if thread is None:
                self._finished()
            else:
                thread.link(lambda _thread: self._finished())

    def _handle_batch_result(
        self, items: list[Item], worker_ctx: Any, result: Any = None, exc_info: Any = None
    ) -> Any:
        self._settle_batch(items, exc_info)
        return result, exc_info

    def _settle_batch(self, items: list[Item], exc_info: Any) -> None:
        if exc_info is None:
            BATCH_SIZES.labels(self.subscription.queue).observe(len(items))
            self._acknowledge(items)
        elif len(items) == 1:
            exc = exc_info[1]
            self._settle(items[0][0], exc, permanent=isinstance(exc, PermanentError | ValidationError))
        else:
            # Which event failed is unknown and the transaction rolled back: each goes again alone, so a poison
            # one takes the retry/dead-letter path by itself and its batch-mates succeed on this second try.
            log.warning("%s: batch of %d failed (%s); handling each alone", self.subscription.queue, len(items),
                        exc_info[1])
            HANDLED.labels(self.subscription.queue, "batch_split").inc()
            self.container.spawn_managed_thread(partial(self._split, items))

    def _split(self, items: list[Item]) -> None:
        for item in items:
            self._spawn_batch([item], slot=False)

    def _acknowledge(self, items: Sequence[Item]) -> None:
        """After the handler's transaction committed: ack, count, and measure how late each event was."""
        queue = self.subscription.queue
        now = datetime.now(UTC)
        lag = HANDLE_LAG.labels(queue)
        for message, env, _ in items:
            self.queue_consumer.ack_message(message)
            lag.observe(max((now - env.time).total_seconds(), 0.0))
        HANDLED.labels(queue, "ok").inc(len(items))

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
