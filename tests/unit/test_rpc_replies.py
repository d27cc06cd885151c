"""A service's RPC answer is sent the way its reply queue can use it: encoded once, transient, unconfirmed.

The reply queue is the caller's own (exclusive, auto-deleted): persistence and a publisher confirm bought
nothing there but a broker round trip and the broker's work per call (9-11 % of the orders and payments
processes' py-spy samples during card orders). The answer's content and error rules stay Nameko's."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import kombu.serialization
import pytest

pytestmark = pytest.mark.unit


class _Message:
    properties = {"content_type": "application/json", "reply_to": "rpc.reply-caller-1", "correlation_id": "c-1"}


@pytest.fixture
def published(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    from nameko.amqp.publish import Publisher
    from nameko.rpc import Responder

    from shared.nameko_ext import lean_replies

    sent: list[dict[str, Any]] = []

    def publish(self: Any, payload: Any, **kwargs: Any) -> None:
        sent.append({"payload": payload, "confirms": kwargs.get("use_confirms", self.use_confirms),
                     "delivery_mode": kwargs.get("delivery_mode", self.delivery_mode), **kwargs})

    monkeypatch.setattr(Publisher, "publish", publish)
    monkeypatch.setattr(Responder, "send_response", Responder.send_response)  # restored after the test
    lean_replies()
    return sent


def _respond(result: Any, exc_info: Any = None) -> tuple[Any, Any]:
    from nameko.rpc import Responder

    return Responder("amqp://guest:guest@127.0.0.1:5672//", "nameko-rpc", "json", _Message()).send_response(
        result, exc_info)


def test_an_answer_goes_to_the_callers_queue_encoded_once_transient_and_unconfirmed(
    published: list[dict[str, Any]],
) -> None:
    _respond({"total": Decimal("12.50")})
    [sent] = published
    assert sent["routing_key"] == "rpc.reply-caller-1" and sent["correlation_id"] == "c-1"
    assert sent["confirms"] is False and sent["delivery_mode"] == 1
    assert sent["content_type"] == "application/json"
    decoded = kombu.serialization.loads(sent["payload"], sent["content_type"], sent["content_encoding"])
    assert decoded == {"result": {"total": Decimal("12.50")}, "error": None}  # kombu's JSON, as the caller reads


def test_an_answer_that_cannot_be_encoded_reaches_the_caller_as_an_error(published: list[dict[str, Any]]) -> None:
    result, exc_info = _respond({"not json": object()})
    [sent] = published
    body = json.loads(sent["payload"])
    assert body["result"] is None and body["error"]["exc_type"] == "UnserializableValueError"
    assert result is None and exc_info is not None


def test_an_error_is_sent_as_nameko_serializes_it(published: list[dict[str, Any]]) -> None:
    try:
        raise KeyError("gone")
    except KeyError:
        import sys

        _respond(None, sys.exc_info())
    body = json.loads(published[0]["payload"])
    assert body["result"] is None and body["error"]["exc_type"] == "KeyError"
