"""An asyncio client for Nameko's AMQP RPC protocol (aio-pika), many calls in flight on one connection.

Wire protocol (nameko 2.14, ``nameko/rpc.py``), spoken exactly:

* request: published to the topic exchange ``nameko-rpc`` (durable) with routing key ``<service>.<method>``,
  body ``{"args": [...], "kwargs": {...}}`` (``content_type=application/json``), properties ``reply_to`` (the
  routing key of our reply queue) and ``correlation_id``; context data travels as headers prefixed
  ``nameko.`` (we send ``nameko.correlation_id`` = the HTTP request id and ``nameko.call_id_stack``).
* reply: the service publishes to ``nameko-rpc`` with routing key = our ``reply_to`` and the same
  ``correlation_id``; body ``{"result": ..., "error": null}`` or ``{"result": null, "error": {"exc_type",
  "exc_path", "exc_args", "value"}}``. Bodies use kombu's JSON, which wraps ``Decimal``/``datetime``/``UUID``
  as ``{"__type__": ..., "__value__": ...}``; we unwrap them the same way kombu does.

One robust connection, one channel (publisher confirms, ``mandatory`` so a call to a service that has no
queue fails at once instead of waiting for the timeout), one exclusive auto-delete reply queue bound to the
exchange under its own name. Calls are matched by ``correlation_id`` to futures. If the connection drops,
the calls in flight fail with 503 at once (their replies went with the exclusive queue), calls made while
it is down fail at once with 503 and ``Retry-After`` (never waiting on a dead channel), and aio-pika
reconnects every ``reconnect_interval`` (0.5 s: the broker is back within a second of its return, where
aio-pika's default waits 5 s) with a bounded connect timeout, then re-declares the queue, binding and
consumer. The connection is named ``oms-gateway-<pid>-<n>`` (``connection_name``), so an operator, or a
test, can find it in ``rabbitmqctl list_connections client_properties``.

A remote ``DomainError`` (of any service) is rebuilt from the problem it carries (``shared.errors.from_wire``:
type, title, status, detail, extra), so the gateway answers for error classes it never imports; anything
else becomes ``RemoteServiceError`` (502) without the remote message, which is only logged.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import os
import uuid
from datetime import date, datetime, time
from decimal import Decimal
from typing import Any

import aio_pika
import aiormq
from aio_pika.abc import AbstractIncomingMessage, AbstractRobustConnection

from services.gateway.budget import Budget, current_budget
from services.gateway.context import current_request_id
from services.gateway.problems import ProblemError
from shared.errors import DomainError, from_wire

log = logging.getLogger(__name__)

RPC_EXCHANGE = "nameko-rpc"


class ServiceUnavailable(ProblemError):
    """The broker or the service cannot be reached (503); worth retrying a moment later (``Retry-After``)."""

    status = 503
    title = "Service unavailable"
    slug = "service-unavailable"


def broker_unreachable(service: str) -> ServiceUnavailable:
    return ServiceUnavailable("The message broker is unreachable; try again in a moment.", service=service,
                              headers={"Retry-After": "1"})


class ServiceTimeout(ServiceUnavailable):
    """The service did not answer within the call's timeout (504)."""

    status = 504
    title = "Service timeout"
    slug = "service-timeout"


class RemoteServiceError(ProblemError):
    """The service failed with an exception that is not a ``DomainError`` (502); details are only logged."""

    status = 502
    title = "Service error"
    slug = "service-error"


# kombu.utils.json envelopes: {"__type__": marker, "__value__": value}
_DECODERS: dict[str, Any] = {
    "datetime": datetime.fromisoformat,
    "date": lambda v: datetime.fromisoformat(v).date(),
    "time": time.fromisoformat,
    "decimal": Decimal,
    "uuid": lambda v: uuid.UUID(**v) if isinstance(v, dict) else uuid.UUID(v),
    "bytes": lambda v: v.encode("utf-8"),
    "base64": lambda v: base64.b64decode(v.encode("utf-8")),
}


def _object_hook(obj: dict[str, Any]) -> Any:
    if len(obj) == 2 and "__type__" in obj and "__value__" in obj:
        decoder = _DECODERS.get(obj["__type__"])
        if decoder is not None:
            return decoder(obj["__value__"])
    return obj


def decode_body(body: bytes) -> Any:
    return json.loads(body, object_hook=_object_hook)


def _json_default(obj: Any) -> Any:
    if isinstance(obj, datetime | date | time):
        return obj.isoformat()
    if isinstance(obj, Decimal | uuid.UUID):
        return str(obj)
    if hasattr(obj, "model_dump"):
        return obj.model_dump(mode="json")
    raise TypeError(f"{type(obj).__name__} is not JSON serializable")


def encode_request(args: tuple[Any, ...], kwargs: dict[str, Any]) -> bytes:
    return json.dumps({"args": list(args), "kwargs": kwargs}, default=_json_default,
                      separators=(",", ":")).encode()


def service_timeout(service: str, budget: Budget) -> ServiceTimeout:
    """The 504 for a request that gave up on ``service``, saying how long the request really waited."""
    elapsed = budget.elapsed()
    return ServiceTimeout(
        f"The {service} service did not answer: the gateway gave up after {elapsed:.1f}s "
        f"(it waits at most {budget.limit:g}s).",
        service=service, elapsed_seconds=round(elapsed, 2), timeout_seconds=budget.limit,
    )


def rebuild_error(error: dict[str, Any], service: str, method: str) -> Exception:
    """The exception to raise for a Nameko error payload."""
    domain_error = from_wire(error)
    if domain_error is not None:
        return domain_error
    exc_type = str(error.get("exc_type") or "")
    log.error("%s.%s failed remotely with %s: %s (request id %s)", service, method, exc_type,
              error.get("value"), current_request_id())
    return RemoteServiceError(f"The {service} service failed while handling {method}.", service=service)


class AsyncRpcClient:
    """``await rpc.call("orders", "get_order", ref="1001")``: one connection, any number of calls in flight."""

    _count = 0

    def __init__(
        self,
        amqp_url: str,
        *,
        timeout: float = 10.0,
        exchange: str = RPC_EXCHANGE,
        reconnect_interval: float = 0.5,
        connect_timeout: float = 5.0,
        client_name: str = "gateway",
    ) -> None:
        self.amqp_url = amqp_url
        self.timeout = timeout
        self.exchange_name = exchange
        self.reconnect_interval = reconnect_interval
        self.connect_timeout = connect_timeout
        self.reply_queue_name = f"rpc.reply-{client_name}-{uuid.uuid4()}"
        AsyncRpcClient._count += 1
        #: ``client_properties.connection_name``: how this client's connection is found on the broker.
        self.connection_name = f"oms-{client_name}-{os.getpid()}-{AsyncRpcClient._count}"
        self._pending: dict[str, asyncio.Future[Any]] = {}
        self._connection: AbstractRobustConnection | None = None
        self._exchange: aio_pika.abc.AbstractExchange | None = None
        self._ready = asyncio.Event()
        self._starter: asyncio.Task[None] | None = None
        self._closing = False

    # ------------------------------------------------------------------------------------------- lifecycle
    async def start(self, wait: float | None = 10.0) -> None:
        """Connect in the background (retrying until the broker is up); wait up to ``wait`` seconds for it.

        Not raising when the broker is down lets the gateway start and report itself unhealthy; calls made
        before the connection exists fail with 503."""
        if self._starter is None:
            self._starter = asyncio.create_task(self._connect_forever(), name="rpc-connect")
        if wait:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._ready.wait(), wait)

    async def _connect_forever(self) -> None:
        while not self._closing:
            try:
                await self._connect()
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("RPC client cannot reach the broker (%s); retrying in %.1fs", exc,
                            self.reconnect_interval)
                await asyncio.sleep(self.reconnect_interval)

    async def _connect(self) -> None:
        connection = await aio_pika.connect_robust(
            self.amqp_url, reconnect_interval=self.reconnect_interval, timeout=self.connect_timeout,
            client_properties={"connection_name": self.connection_name},
        )
        try:
            channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
            exchange = await channel.declare_exchange(
                self.exchange_name, aio_pika.ExchangeType.TOPIC, durable=True
            )
            queue = await channel.declare_queue(self.reply_queue_name, exclusive=True, auto_delete=True)
            await queue.bind(exchange, routing_key=self.reply_queue_name)
            await queue.consume(self._on_reply, no_ack=True)
        except BaseException:
            await connection.close()
            raise
        connection.close_callbacks.add(self._on_connection_lost)
        connection.reconnect_callbacks.add(self._on_reconnected)
        self._connection = connection
        self._exchange = exchange
        self._ready.set()
        log.info("RPC client connected (reply queue %s)", self.reply_queue_name)

    def _on_connection_lost(self, _sender: Any, exc: BaseException | None = None) -> None:
        self._ready.clear()
        if self._pending:
            log.warning("broker connection lost with %d RPC calls in flight", len(self._pending))
        self._fail_pending(ServiceUnavailable("The connection to the message broker was lost; try again in a moment.",
                                              headers={"Retry-After": "1"}))

    def _on_reconnected(self, _sender: Any) -> None:
        log.info("RPC client reconnected")
        self._ready.set()

    def _fail_pending(self, error: Exception) -> None:
        pending, self._pending = self._pending, {}
        for future in pending.values():
            if not future.done():
                future.set_exception(error)

    async def close(self) -> None:
        self._closing = True
        if self._starter is not None and not self._starter.done():
            self._starter.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._starter
        self._ready.clear()
        self._fail_pending(ServiceUnavailable("The gateway is shutting down."))
        if self._connection is not None:
            with contextlib.suppress(Exception):
                await self._connection.close()
            self._connection = None

    @property
    def connected(self) -> bool:
        return (
            self._ready.is_set()
            and self._connection is not None
            and not self._connection.is_closed
            and self._connection.connected.is_set()
        )

    @property
    def in_flight(self) -> int:
        return len(self._pending)

    # ------------------------------------------------------------------------------------------- calls
    async def _on_reply(self, message: AbstractIncomingMessage) -> None:
        correlation_id = message.correlation_id
        future = self._pending.pop(correlation_id, None) if correlation_id else None
        if future is None or future.done():
            log.debug("reply for unknown or abandoned call %s", correlation_id)
            return
        try:
            future.set_result(decode_body(message.body))
        except Exception as exc:  # malformed reply
            future.set_exception(exc)

    async def call(self, service: str, method: str, *args: Any, timeout: float | None = None,
                   **kwargs: Any) -> Any:
        """Call ``service.method(*args, **kwargs)`` and return its result.

        Raises the rebuilt ``DomainError`` subclass for domain failures, ``ServiceUnavailable`` (503) when
        the broker or service is unreachable, ``ServiceTimeout`` (504) after ``timeout`` seconds (default
        from the constructor) or when the HTTP request's budget (``budget.py``) runs out, whichever is first,
        and ``RemoteServiceError`` (502) for any other remote exception."""
        exchange = self._exchange
        if exchange is None or not self.connected:
            raise broker_unreachable(service)
        # The call waits for whichever ends first: its own timeout or what is left of the request's budget.
        own = Budget(self.timeout if timeout is None else timeout)
        request = current_budget()
        wait = own.remaining() if request is None else min(own.remaining(), request.remaining())
        if wait <= 0:
            raise service_timeout(service, request or own)
        correlation_id = str(uuid.uuid4())
        request_id = current_request_id() or correlation_id
        message = aio_pika.Message(
            encode_request(args, kwargs),
            content_type="application/json",
            content_encoding="utf-8",
            correlation_id=correlation_id,
            reply_to=self.reply_queue_name,
            delivery_mode=aio_pika.DeliveryMode.NOT_PERSISTENT,
            # A request nobody picked up before the caller gave up is dropped, not executed later.
            expiration=max(wait, 0.001),
            headers={
                "nameko.correlation_id": request_id,
                "nameko.call_id_stack": [f"gateway.http.{request_id}"],
            },
        )
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[correlation_id] = future
        try:
            async with asyncio.timeout(wait):
                try:
                    await exchange.publish(message, routing_key=f"{service}.{method}", mandatory=True)
                except aiormq.exceptions.PublishError:
                    raise ServiceUnavailable(f"The {service} service is not running.", service=service) from None
                except (aiormq.exceptions.AMQPError, ConnectionError, RuntimeError) as exc:
                    log.warning("publishing %s.%s failed: %r", service, method, exc)
                    raise broker_unreachable(service) from None
                body = await future
        except TimeoutError:
            raise service_timeout(service, request or own) from None
        finally:
            self._pending.pop(correlation_id, None)
        if not isinstance(body, dict):
            raise RemoteServiceError(f"The {service} service sent a malformed reply.", service=service)
        error = body.get("error")
        if error:
            raise rebuild_error(error if isinstance(error, dict) else {}, service, method)
        return body.get("result")


__all__ = [
    "AsyncRpcClient",
    "DomainError",
    "RemoteServiceError",
    "ServiceTimeout",
    "ServiceUnavailable",
    "decode_body",
    "rebuild_error",
    "service_timeout",
]
