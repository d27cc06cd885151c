"""The order list's date filters and order references as a person types them into a URL.

``placed_from=2021-03-02`` means from the start of that day in UTC; ``placed_to=2021-03-02`` up to the end of
that day (before the next day's start: ``placed_to`` is exclusive). A date-time must carry its offset. An
order reference may be the id, ``1001`` or ``%231001`` (``#`` escaped: a bare ``#`` starts the URL's fragment).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from fastapi.testclient import TestClient

from services.gateway.app import create_app
from services.gateway.settings import GatewaySettings
from services.orders.contracts.schemas import OrderQuery
from shared.errors import InvalidRequest, parse
from tests.unit.test_gateway_problems import KEY, FakeAuth, FakeRpc, MemoryIdempotency, assert_problem

pytestmark = pytest.mark.unit


def test_a_date_is_the_whole_day_in_utc() -> None:
    q = OrderQuery.model_validate({"placed_from": "2021-03-02", "placed_to": "2021-03-02"})
    assert q.placed_from == datetime(2021, 3, 2, tzinfo=UTC)
    assert q.placed_to == datetime(2021, 3, 3, tzinfo=UTC)  # exclusive: up to the end of 2 March


def test_a_datetime_with_an_offset_is_taken_as_it_is() -> None:
    q = OrderQuery.model_validate({"placed_from": "2021-03-02T10:00:00+05:30", "placed_to": "2021-03-02T12:00:00Z"})
    assert q.placed_from == datetime(2021, 3, 2, 4, 30, tzinfo=UTC)
    assert q.placed_to == datetime(2021, 3, 2, 12, 0, tzinfo=UTC)


def test_what_the_gateway_sends_on_means_the_same_to_the_service() -> None:
    """The gateway validates, dumps to JSON and the service validates again: a day must not move twice."""
    q = OrderQuery.model_validate({"placed_from": "2021-03-02", "placed_to": "2021-03-02"})
    again = OrderQuery.model_validate(q.model_dump(mode="json"))
    assert (again.placed_from, again.placed_to) == (q.placed_from, q.placed_to)


@pytest.mark.parametrize("value", ["2021-03-02T10:00:00", "2021-03-02 10:00"])
def test_a_datetime_without_an_offset_is_refused_saying_why(value: str) -> None:
    with pytest.raises(InvalidRequest) as info:
        parse(OrderQuery, {"placed_from": value}, "query")
    [error] = info.value.extra["errors"]
    assert (error["field"], error["location"], error["code"]) == ("placed_from", "query", "timezone_aware")
    assert "offset" in error["reason"] and "2021-03-02" in error["reason"]


@pytest.mark.parametrize("value", ["2021-02-30", "yesterday", "2021-3-2"])
def test_a_date_that_is_no_date_is_refused(value: str) -> None:
    with pytest.raises(InvalidRequest) as info:
        parse(OrderQuery, {"placed_to": value}, "query")
    assert info.value.extra["errors"][0]["field"] == "placed_to"


# ------------------------------------------------------------------------------------------------ over HTTP
@pytest.fixture()
def rpc() -> FakeRpc:
    rpc = FakeRpc()
    rpc.results["list_orders"] = {"items": [], "next_cursor": None}
    return rpc


@pytest.fixture()
def client(rpc: FakeRpc) -> Iterator[TestClient]:
    app = create_app(GatewaySettings(), rpc=rpc, authenticator=FakeAuth(), idempotency=MemoryIdempotency())
    with TestClient(app, raise_server_exceptions=False, headers={"Authorization": f"Bearer {KEY}"}) as c:
        yield c


def _query_sent(rpc: FakeRpc) -> dict[str, Any]:
    service, method, _args, kwargs = rpc.calls[-1]
    assert (service, method) == ("orders", "list_orders")
    query: dict[str, Any] = kwargs["query"]
    return query


def test_the_list_accepts_dates_over_http(client: TestClient, rpc: FakeRpc) -> None:
    response = client.get("/api/v1/orders", params={"placed_from": "2021-03-02", "placed_to": "2021-03-04"})
    assert response.status_code == 200, response.text
    sent = _query_sent(rpc)
    assert datetime.fromisoformat(sent["placed_from"]) == datetime(2021, 3, 2, tzinfo=UTC)
    assert datetime.fromisoformat(sent["placed_to"]) == datetime(2021, 3, 5, tzinfo=UTC)
    spec = client.get("/api/v1/openapi.json").json()
    params = {p["name"]: p for p in spec["paths"]["/api/v1/orders"]["get"]["parameters"]}
    formats = {s.get("format") for s in params["placed_from"]["schema"]["anyOf"]}
    assert {"date", "date-time"} <= formats


def test_the_list_refuses_a_datetime_without_offset_over_http(client: TestClient, rpc: FakeRpc) -> None:
    problem = assert_problem(client.get("/api/v1/orders", params={"placed_from": "2021-03-02T10:00:00"}), 422)
    [error] = problem["errors"]
    assert (error["field"], error["location"], error["code"]) == ("placed_from", "query", "timezone_aware")
    assert "offset" in error["reason"]
    assert rpc.calls == []


# ------------------------------------------------------------------------------------------------ references
def test_an_escaped_hash_reference_reaches_the_service(client: TestClient, rpc: FakeRpc) -> None:
    assert client.get("/api/v1/orders/%231001").status_code == 200
    assert rpc.calls[-1][3]["ref"] == "#1001"
    assert client.get("/api/v1/orders/1001").status_code == 200
    assert rpc.calls[-1][3]["ref"] == "1001"


def test_a_trailing_slash_on_the_list_redirects_relatively_keeping_the_query(client: TestClient) -> None:
    response = client.get("/api/v1/orders/?stage=placed&limit=5", follow_redirects=False)
    assert response.status_code in (307, 308)
    assert response.headers["location"] == "/api/v1/orders?stage=placed&limit=5"
    assert response.headers["x-request-id"]
    followed = client.get("/api/v1/orders/?stage=placed&limit=5")
    assert followed.status_code == 200 and followed.url.path == "/api/v1/orders"
