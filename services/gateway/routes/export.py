"""The order list as CSV: ``GET /orders/export.csv`` with the list's own filters, sort and search.

The file is streamed: the gateway asks orders for one page at a time (following the list's cursor) and sends
its rows before asking for the next, so an export of 100,000 orders holds one page in memory and the first
bytes leave at once. One row per order under a header row; amounts are the API's exact decimal strings (never
floats), in the order's currency. How many rows are coming is counted first and sent as ``X-Total-Count``
(also answered alone by ``HEAD``), so the page can show a progress bar while it downloads.

Cells that a spreadsheet would run as a formula (text a customer typed that starts with ``=``, ``+``, ``-``,
``@``...) are prefixed with ``'`` (OWASP's CSV injection advice); a phone number stays as it is.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import Query, Request
from fastapi.responses import Response, StreamingResponse

from services.gateway.routing import READ_PROBLEMS, api_router
from services.gateway.state import gateway
from services.gateway.views import view
from services.orders.contracts.schemas import OrderPage, OrderQuery

router = api_router()
TAGS: list[Any] = ["orders"]

PAGE_SIZE = 200
COLUMNS = ("number", "placed_at", "channel", "stage", "payment_status", "paid_at", "fulfillment_status",
           "customer_name", "customer_phone", "customer_email", "items", "currency", "subtotal", "shipping",
           "discount", "tax", "total", "test", "id")

_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_PHONE = re.compile(r"^\+?[0-9][0-9 ().-]*$")


def _safe(value: str) -> str:
    if value.startswith(_FORMULA_START) and not _PHONE.fullmatch(value):
        return "'" + value
    return value


def csv_row(order: dict[str, Any]) -> list[str]:
    """One order (an ``OrderSummary`` as JSON) as the export's row, in ``COLUMNS`` order."""
    customer = order.get("customer") or {}
    totals = order.get("totals") or {}
    return [
        str(order["number"]), order["placed_at"], order["channel"], order["stage"],
        order.get("payment_status") or "unpaid", order.get("paid_at") or "", order.get("fulfillment_status") or "",
        _safe(customer.get("name") or ""), _safe(customer.get("phone") or ""), _safe(customer.get("email") or ""),
        str(order.get("item_count", "")), order["currency"],
        totals.get("subtotal", ""), totals.get("shipping", ""), totals.get("discount", ""), totals.get("tax", ""),
        totals.get("total", ""), "yes" if order.get("test") else "no", order["id"],
    ]


def _line(values: list[str] | tuple[str, ...]) -> bytes:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\r\n").writerow(values)
    return buf.getvalue().encode("utf-8")


async def _count(request: Request, query: OrderQuery) -> dict[str, Any]:
    result: dict[str, Any] = await gateway(request).rpc.call(
        "orders", "count_orders", query=query.model_dump(mode="json", exclude={"cursor", "limit"}))
    return result


def _headers(count: dict[str, Any]) -> dict[str, str]:
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    headers = {
        "Content-Disposition": f'attachment; filename="orders-{stamp}.csv"',
        "X-Total-Count": str(int(count.get("count", 0))),
        "Cache-Control": "no-store",
        "X-Accel-Buffering": "no",  # a proxy passes the rows on as they come
    }
    if count.get("capped"):
        headers["X-Total-Count-Capped"] = "true"
    return headers


@router.get("/orders/export.csv", response_class=StreamingResponse, tags=TAGS, responses={
    **READ_PROBLEMS, 200: {"content": {"text/csv": {"schema": {"type": "string"}}},
                           "description": "One row per order under a header row; `X-Total-Count`: how many"}},
    summary="Export the filtered order list as CSV (streamed; the row count first in `X-Total-Count`)")
async def export_orders(request: Request, query: Annotated[OrderQuery, Query()]) -> StreamingResponse:
    count = await _count(request, query)
    rpc = gateway(request).rpc
    # The first page is read before answering, so a failing service is a problem document, not a cut file.
    first = view(OrderPage, await rpc.call("orders", "list_orders", query=_page_query(query, None)),
                 "orders.list_orders")

    async def rows() -> AsyncIterator[bytes]:
        page: dict[str, Any] = first
        yield "\ufeff".encode() + _line(COLUMNS)  # the BOM: spreadsheets then read the names as UTF-8
        while True:
            chunk = b"".join(_line(csv_row(o)) for o in page["items"])
            if chunk:
                yield chunk
            cursor = page.get("next_cursor")
            if not cursor or await request.is_disconnected():
                return
            page = view(OrderPage, await rpc.call("orders", "list_orders", query=_page_query(query, cursor)),
                        "orders.list_orders")

    return StreamingResponse(rows(), media_type="text/csv; charset=utf-8", headers=_headers(count))


@router.head("/orders/export.csv", include_in_schema=False)
async def export_count(request: Request, query: Annotated[OrderQuery, Query()]) -> Response:
    """How many rows the export would have (``X-Total-Count``), without them."""
    count = await _count(request, query)
    return Response(status_code=200, media_type="text/csv; charset=utf-8", headers=_headers(count))


def _page_query(query: OrderQuery, cursor: str | None) -> dict[str, Any]:
    return {**query.model_dump(mode="json", exclude={"limit"}), "limit": PAGE_SIZE, "cursor": cursor}


ROUTERS = (router,)
