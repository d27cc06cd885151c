"""Every domain error of every service reaches the client as its own problem document.

The gateway lists no error class by name: a service's error carries its problem (type, title, status) over
the wire and the gateway builds the answer from that. This test finds every ``DomainError`` subclass in the
``services`` package (a new one is checked without being listed here), raises it the way a service's reply
carries it, and checks the problem+json the client gets. An error class must keep the constructor
``SomeError(detail, **extra)``.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import pkgutil
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from kombu.utils import json as kombu_json
from nameko.exceptions import serialize

import services
from services.gateway.app import create_app
from services.gateway.auth import Principal
from services.gateway.rpc import decode_body, rebuild_error
from services.gateway.settings import GatewaySettings
from shared.errors import DomainError, to_wire

pytestmark = pytest.mark.unit

KEY = "oms_abcd1234_" + "x" * 40
PRINCIPAL = Principal(id=uuid.UUID("00000000-0000-4000-8000-000000000001"), name="unit tests", prefix="abcd1234")
ORDER_ID = "6f1c1f55-3a2b-4c8e-9a51-0d0c1b2a3f4e"
EXTRA = {"order_id": ORDER_ID, "number": 1001, "stage": "placed", "held_from": None,
         "allowed": ["confirmed", "cancelled"], "versions": {"expected": 3, "current": 4, "retry": True}, "ratio": 0.5}
"""Values of every JSON type: they must reach the client with their types (1001, not "1001"; null, not "None")."""


def _every_module() -> list[str]:
    names = []
    for module in pkgutil.walk_packages(services.__path__, "services."):
        importlib.import_module(module.name)
        names.append(module.name)
    return names


def _every_error() -> list[type[DomainError]]:
    _every_module()
    found: list[type[DomainError]] = [DomainError]
    todo = [DomainError]
    while todo:
        for sub in todo.pop().__subclasses__():
            if sub not in found and not sub.__module__.startswith("tests."):
                found.append(sub)
                todo.append(sub)
    return found


ERRORS = _every_error()


def test_the_walk_finds_the_services_errors_too() -> None:
    assert any(cls.__module__.startswith("services.") for cls in ERRORS), [c.__name__ for c in ERRORS]


def test_each_error_class_has_its_own_problem_type() -> None:
    types: dict[str, str] = {}
    for cls in ERRORS:
        where = f"{cls.__module__}.{cls.__qualname__}"
        assert cls.type.startswith("urn:oms:problem:"), where
        assert 400 <= cls.status <= 599 and cls.title, where
        assert cls.type not in types, f"{where} and {types.get(cls.type)} share the type {cls.type}"
        types[cls.type] = where


def _over_nameko(exc: DomainError) -> Exception:
    """What the gateway's RPC client raises when a service's ``@rpc`` method raised ``exc``: Nameko's own
    serialization, kombu's JSON on the wire, the client's decoding and rebuilding."""
    reply = kombu_json.dumps({"result": None, "error": serialize(exc)}).encode()
    return rebuild_error(decode_body(reply)["error"], "some-service", "some_method")


class ServiceRaising:
    """An RPC client whose service raises ``error`` for every call, as its reply carries it."""

    connected = True

    def __init__(self, error: DomainError) -> None:
        self.error = error

    async def call(self, service: str, method: str, *args: Any, timeout: float | None = None, **kwargs: Any) -> Any:
        if method == "place_orders":  # a batched call answers each item with the error built by hand
            return [{"error": to_wire(self.error)} for _ in kwargs["requests"]]
        raise _over_nameko(self.error)


class FakeAuth:
    async def authenticate(self, plaintext: str) -> Principal:
        return PRINCIPAL


@functools.cache
def _place_body() -> dict[str, Any]:
    return {
        "channel": "web",
        "customer": {"name": "Ada Lovelace", "email": "ada@example.com"},
        "items": [{"sku": "MUG", "name": "Mug", "quantity": 2, "unit_price": "12.50"}],
        "currency": "EUR",
    }


@pytest.fixture(params=ERRORS, ids=lambda cls: f"{cls.__module__}.{cls.__qualname__}")
def error_class(request: pytest.FixtureRequest) -> type[DomainError]:
    cls: type[DomainError] = request.param
    return cls


@contextlib.contextmanager
def _client(error: DomainError) -> Iterator[TestClient]:
    app = create_app(GatewaySettings(), rpc=ServiceRaising(error), authenticator=FakeAuth(), idempotency=object())  # type: ignore[arg-type]
    with TestClient(app, raise_server_exceptions=False, headers={"Authorization": f"Bearer {KEY}"}) as c:
        yield c


@pytest.mark.parametrize(("method", "path"), [("GET", "/api/v1/orders/1001"), ("POST", "/api/v1/orders")])
def test_a_domain_error_reaches_the_client_as_its_own_problem(
    error_class: type[DomainError], method: str, path: str
) -> None:
    detail = f"{error_class.__name__} happened to order {ORDER_ID}."
    error = error_class(detail, **EXTRA)
    with _client(error) as client:
        response = client.request(method, path, json=_place_body() if method == "POST" else None)
    assert response.status_code == error_class.status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["type"] == error_class.type
    assert problem["title"] == error_class.title
    assert problem["status"] == error_class.status
    assert problem["detail"] == detail
    assert problem["instance"] == path
    assert {k: problem.get(k) for k in EXTRA} == EXTRA
    assert problem["number"] == 1001 and problem["held_from"] is None and problem["versions"]["retry"] is True


def test_a_rebuilt_error_is_still_caught_as_its_shared_kind() -> None:
    """A service's subclass of ``NotFound`` is rebuilt as a ``NotFound`` with the subclass's problem, so the
    gateway's ``except NotFound`` (the payments catch-up) still sees it."""
    from shared.errors import NotFound

    class OrderGone(NotFound):
        title = "Order gone"

    rebuilt = _over_nameko(OrderGone("No order 1.", order_id=ORDER_ID))
    assert isinstance(rebuilt, NotFound) and not isinstance(rebuilt, OrderGone)
    assert (rebuilt.type, rebuilt.title, rebuilt.status) == (OrderGone.type, "Order gone", 404)
    assert rebuilt.extra == {"order_id": ORDER_ID}
