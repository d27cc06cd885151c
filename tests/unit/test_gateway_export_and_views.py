"""The CSV export of the order list and the saved views, with the RPC client replaced by an in-process stand-in
(no servers): the export follows the list's cursor page by page, keeps the filters, announces its row count,
writes exact amounts and one row per order; a saved view's filters are checked against the order list's own
query before anything is stored. Views stored and shared for real: tests/integration/test_saved_views.py."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from services.gateway.app import create_app
from services.gateway.routes.export import COLUMNS, PAGE_SIZE
from services.gateway.routes.views import VIEW_FIELDS
from services.gateway.settings import GatewaySettings
from shared.errors import NotFound
from tests.unit.test_gateway_problems import KEY, FakeAuth, FakeRpc, MemoryIdempotency, assert_problem, order_detail

pytestmark = pytest.mark.unit

P = "/api/v1"


def summary(number: int, **overrides: Any) -> dict[str, Any]:
    detail = order_detail(number=number, display_number=f"#{number}", id=f"00000000-0000-4000-8000-{number:012d}")
    keep = {"id", "number", "display_number", "channel", "stage", "customer", "currency", "totals", "item_count",
            "placed_at", "updated_at", "version"}
    out = {k: v for k, v in detail.items() if k in keep}
    out.update(overrides)
    return out


class PagedRpc(FakeRpc):
    """``list_orders`` answers pages of ``orders`` by the cursor it gave (``"p1"``, ``"p2"``...)."""

    def __init__(self, orders: list[dict[str, Any]], page: int = 2) -> None:
        super().__init__()
        self.orders = orders
        self.page = page
        self.results["count_orders"] = {"count": len(orders), "capped": False}

    async def call(self, service: str, method: str, *args: Any, timeout: float | None = None, **kwargs: Any) -> Any:
        if method != "list_orders":
            return await super().call(service, method, *args, timeout=timeout, **kwargs)
        self.calls.append((service, method, args, kwargs))
        cursor = kwargs["query"].get("cursor")
        start = int(cursor[1:]) * self.page if cursor else 0
        end = start + self.page
        return {"items": self.orders[start:end],
                "next_cursor": f"p{end // self.page}" if end < len(self.orders) else None}


def make_client(rpc: FakeRpc) -> Iterator[TestClient]:
    app = create_app(GatewaySettings(), rpc=rpc, authenticator=FakeAuth(), idempotency=MemoryIdempotency())
    with TestClient(app, raise_server_exceptions=False, headers={"Authorization": f"Bearer {KEY}"}) as c:
        yield c


@pytest.fixture()
def rpc() -> PagedRpc:
    return PagedRpc([
        summary(1001, payment_status="paid", paid_at="2024-05-01T11:00:00+00:00"),
        summary(1002, currency="TND", totals={"subtotal": "44.535", "shipping": "0.000", "discount": "0.000",
                                              "tax": "0.000", "total": "44.535"}),
        summary(1003, customer={"name": "=HYPERLINK(\"http://evil\")", "phone": "+91 98450 12345",
                                "email": "a@b.example"}, test=True),
    ])


@pytest.fixture()
def client(rpc: PagedRpc) -> Iterator[TestClient]:
    yield from make_client(rpc)


def rows_of(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text.lstrip("\ufeff"))))


def list_calls(rpc: FakeRpc) -> list[dict[str, Any]]:
    return [kw["query"] for _s, m, _a, kw in rpc.calls if m == "list_orders"]


def test_the_export_is_every_page_one_row_per_order_under_a_header(client: TestClient, rpc: PagedRpc) -> None:
    response = client.get(f"{P}/orders/export.csv")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/csv")
    assert response.headers["x-total-count"] == "3"
    assert "attachment" in response.headers["content-disposition"]
    header = next(csv.reader(io.StringIO(response.text.lstrip("\ufeff"))))
    assert tuple(header) == COLUMNS
    rows = rows_of(response.text)
    assert [r["number"] for r in rows] == ["1001", "1002", "1003"]
    # two pages of two, followed by the cursor, each asked at the export's page size
    assert [q["cursor"] for q in list_calls(rpc)] == [None, "p1"]
    assert {q["limit"] for q in list_calls(rpc)} == {PAGE_SIZE}


def test_amounts_are_exact_and_cells_cannot_become_formulas(client: TestClient) -> None:
    rows = {r["number"]: r for r in rows_of(client.get(f"{P}/orders/export.csv").text)}
    assert rows["1002"]["total"] == "44.535" and rows["1002"]["currency"] == "TND"
    assert rows["1001"]["total"] == "29.90" and rows["1001"]["payment_status"] == "paid"
    assert rows["1002"]["payment_status"] == "unpaid"
    assert rows["1003"]["customer_name"].startswith("'=")
    assert rows["1003"]["customer_phone"] == "+91 98450 12345"  # a phone number is left as it is
    assert rows["1003"]["test"] == "yes" and rows["1001"]["test"] == "no"


def test_the_export_keeps_the_lists_filters_sort_and_search(client: TestClient, rpc: PagedRpc) -> None:
    response = client.get(f"{P}/orders/export.csv", params=[
        ("stage", "confirmed"), ("stage", "approved"), ("payment_status", "unpaid,in_progress"), ("q", "asha"),
        ("channel", "whatsapp"), ("test", "false"), ("sort", "paid_at"), ("direction", "asc")])
    assert response.status_code == 200, response.text
    for query in list_calls(rpc):
        assert query["stage"] == ["confirmed", "approved"]
        assert query["payment_status"] == ["unpaid", "in_progress"]
        assert query["q"] == "asha" and query["channel"] == ["whatsapp"] and query["test"] is False
        assert query["sort"] == "paid_at" and query["direction"] == "asc"
    counted = [kw["query"] for _s, m, _a, kw in rpc.calls if m == "count_orders"]
    assert counted and counted[0]["payment_status"] == ["unpaid", "in_progress"] and "cursor" not in counted[0]


def test_head_says_how_many_rows_without_them(client: TestClient, rpc: PagedRpc) -> None:
    response = client.head(f"{P}/orders/export.csv", params={"stage": "placed"})
    assert response.status_code == 200
    assert response.headers["x-total-count"] == "3"
    assert response.content == b""
    assert not list_calls(rpc)


def test_a_bad_filter_is_a_problem_naming_it_not_a_file(client: TestClient) -> None:
    problem = assert_problem(client.get(f"{P}/orders/export.csv", params={"payment_status": "free"}), 422)
    assert [e["field"] for e in problem["errors"]] == ["payment_status[0]"]


def test_the_export_needs_an_api_key_or_session() -> None:
    for c in make_client(PagedRpc([])):
        c.headers.pop("Authorization")
        assert_problem(c.get(f"{P}/orders/export.csv"), 401)


def test_an_empty_list_is_a_header_row_only(rpc: PagedRpc) -> None:
    for c in make_client(PagedRpc([])):
        response = c.get(f"{P}/orders/export.csv")
        assert response.status_code == 200 and response.headers["x-total-count"] == "0"
        assert rows_of(response.text) == []


def test_an_order_is_still_found_by_number_next_to_the_export(client: TestClient, rpc: PagedRpc) -> None:
    rpc.results["get_order"] = order_detail()
    assert client.get(f"{P}/orders/1001").json()["number"] == 1001


# ------------------------------------------------------------------------------------------------ views
def test_a_view_with_a_filter_the_list_does_not_know_is_refused_naming_it(client: TestClient) -> None:
    problem = assert_problem(client.post(f"{P}/views", json={"name": "Mine", "query": {"colour": "red"}}), 422)
    assert [e["field"] for e in problem["errors"]] == ["query.colour"]
    problem = assert_problem(client.post(f"{P}/views", json={"name": "Mine", "query": {"stage": ["nowhere"]}}), 422)
    assert any(e["field"].startswith("query.stage") for e in problem["errors"])
    problem = assert_problem(client.put(f"{P}/views/00000000-0000-4000-8000-000000000001",
                                        json={"name": "Mine", "query": {"cursor": "abc"}}), 422)
    assert [e["field"] for e in problem["errors"]] == ["query.cursor"]


def test_a_view_needs_a_name(client: TestClient) -> None:
    problem = assert_problem(client.post(f"{P}/views", json={"name": "  ", "query": {}}), 422)
    assert any(e["field"] == "name" for e in problem["errors"])


def test_a_view_holds_every_filter_of_the_list_but_the_page_position() -> None:
    assert {"stage", "channel", "payment_status", "fulfillment_status", "placed_from", "placed_to", "test", "q",
            "sort", "direction"} <= VIEW_FIELDS
    assert not {"cursor", "limit"} & VIEW_FIELDS


def test_the_payment_status_filter_speaks_the_payments_contracts_words() -> None:
    from typing import get_args

    from services.orders.contracts.schemas import PaymentStatusFilter
    from services.payments.contracts.vocabulary import PaymentStatus

    assert set(get_args(PaymentStatusFilter)) == {s.value for s in PaymentStatus}


def test_packing_slips_of_several_orders_are_one_fulfillment_call(client: TestClient, rpc: PagedRpc) -> None:
    import base64

    pdf = b"%PDF-1.7\n%%EOF"
    rpc.results["render_packing_slips"] = {"filename": "packing-slips-2.pdf", "content_type": "application/pdf",
                                           "encoding": "base64", "content": base64.b64encode(pdf).decode()}
    rpc.results["get_order"] = order_detail()
    ids = ["00000000-0000-4000-8000-000000001001", "1001"]
    response = client.post(f"{P}/documents/packing-slips.pdf", json={"orders": ids})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/pdf" and response.content == pdf
    calls = [kw for _s, m, _a, kw in rpc.calls if m == "render_packing_slips"]
    assert calls == [{"order_ids": [ids[0], order_detail()["id"]], "fmt": "pdf"}]
    assert_problem(client.post(f"{P}/documents/packing-slips.pdf", json={"orders": []}), 422)
    rpc.results["get_order"] = NotFound("No order 999.")
    assert_problem(client.post(f"{P}/documents/packing-slips.pdf", json={"orders": ["999"]}), 404)
