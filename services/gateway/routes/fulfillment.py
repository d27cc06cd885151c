"""The fulfillment service over HTTP: an order's fulfillment (status, lines, shipments, returns), manual and
carrier shipments (rates, labels), shipment edits and moves, stock per SKU and location with its movement
history, the printed documents (packing slip, invoice, order details as HTML and PDF), the status tables and
the carrier's signed tracking webhook.

Fulfillment knows orders by id only: a route given an order number asks orders for the id first (as the
payments routes do). Bodies and answers are the fulfillment contract's models
(``services.fulfillment.contracts``); each route makes one RPC call to ``fulfillment`` (plus the id lookup).
"""

from __future__ import annotations

import base64
import binascii
import logging
import re
from typing import Annotated, Any
from uuid import UUID

from fastapi import Body, Path, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, ValidationError

from services.fulfillment.contracts.sandbox import SIGNATURE_HEADER, WEBHOOK_PATH
from services.fulfillment.contracts.schemas import (
    AdjustStock,
    BuyLabel,
    CancelShipment,
    CarrierFulfill,
    DocumentFile,
    DocumentFormat,
    DocumentKind,
    EditShipment,
    FulfillmentView,
    ManualFulfill,
    MarkDelivered,
    MovementList,
    PackingSlipsRequest,
    RateList,
    ReconcileReport,
    ReturnCommand,
    ReturnView,
    SetStock,
    ShipmentView,
    StockItemView,
    StockList,
    WebhookAck,
)
from services.fulfillment.contracts.vocabulary import status_tables
from services.gateway.auth import Principal
from services.gateway.commands import Locator, execute
from services.gateway.order_refs import CATCH_UP_SECONDS, call_about_order, order_by_ref, order_id_of
from services.gateway.problems import problem_responses
from services.gateway.routing import (
    API_PREFIX,
    IDEMPOTENCY_DOC,
    MUTATION_PROBLEMS,
    READ_PROBLEMS,
    Caller,
    Ref,
    api_router,
    public_router,
)
from services.gateway.rpc import RemoteServiceError
from services.gateway.state import gateway
from services.gateway.views import render, view
from shared.errors import NotFound

log = logging.getLogger(__name__)

public = public_router()
router = api_router()

SERVICE = "fulfillment"
TAGS: list[str | Any] = ["fulfillment"]
STOCK_TAGS: list[str | Any] = ["stock"]

ShipmentId = Annotated[UUID, Path(description="The shipment's id (`id` of a shipment in the order's fulfillment).")]
SkuPath = Annotated[str, Path(min_length=1, max_length=100, description="The SKU (stock keeping unit).")]
FormatPath = Annotated[DocumentFormat, Path(description="`html` (print-friendly page) or `pdf`.")]

# Problems of a route that may call the carrier (rates, labels, cancelling a carrier shipment).
CARRIER_PROBLEMS = problem_responses(401, 404, 409, 422, 500, 502, 503, 504)
DOCUMENT_TYPES = {"text/html": {"schema": {"type": "string"}},
                  "application/pdf": {"schema": {"type": "string", "format": "binary"}}}
PDF_TYPE = {"application/pdf": {"schema": {"type": "string", "format": "binary"}}}


# ------------------------------------------------------------------------------------------- orders
_order = order_by_ref
_order_id = order_id_of

FULFILLMENT_CATCH_UP_SECONDS = CATCH_UP_SECONDS


async def _about_order(request: Request, about: str, method: str, /, **kwargs: Any) -> Any:
    """Call fulfillment about an order (``services.gateway.order_refs``: the wait while fulfillment catches up)."""
    return await call_about_order(request, SERVICE, about, method, catch_up=FULFILLMENT_CATCH_UP_SECONDS, **kwargs)


def shipment_location(data: dict[str, Any]) -> str | None:
    return f"{API_PREFIX}/shipments/{data['id']}" if data.get("id") else None


async def _order_command(
    request: Request, caller: Principal, ref: str, method: str, payload: dict[str, Any] | None,
    model: type[BaseModel], status: int = 200, *, locate: Locator | None = None, idempotent_call: bool = False,
) -> Response:
    """A state-changing fulfillment call about one order (``command`` + ``actor``), with Idempotency-Key.
    ``idempotent_call``: the service also gets the client's key (scoped by the caller) to make its own
    external call (a carrier label) once."""
    order_id = await _order_id(request, ref)

    async def call(key: str | None) -> Any:
        kwargs: dict[str, Any] = {"order_id": order_id, "actor": caller.actor()}
        if payload is not None:
            kwargs["command"] = payload
        if idempotent_call:
            kwargs["idempotency_key"] = f"{caller.id}:{key}" if key else None
        return await _about_order(request, order_id, method, **kwargs)

    return await execute(request, caller, payload, call, model, f"{SERVICE}.{method}", status, locate=locate)


@router.get("/orders/{ref}/fulfillment", response_model=FulfillmentView, tags=TAGS, responses=READ_PROBLEMS,
            summary="The order's fulfillment status, lines (ordered, shipped, delivered, returned), shipments and "
                    "returns, and whether it may be fulfilled now")
async def get_fulfillment(request: Request, ref: Ref) -> Response:
    order_id = await _order_id(request, ref)
    result = await _about_order(request, order_id, "get_fulfillment", order_id=order_id)
    return render(FulfillmentView, result, "fulfillment.get_fulfillment")


@router.post("/orders/{ref}/fulfillment/pack", response_model=FulfillmentView, tags=TAGS,
             responses=MUTATION_PROBLEMS, openapi_extra=IDEMPOTENCY_DOC,
             summary="Mark the order packed: ready to hand to the delivery company (fulfillment status dispatched)")
async def mark_packed(request: Request, ref: Ref, caller: Caller) -> Response:
    return await _order_command(request, caller, ref, "mark_packed", None, FulfillmentView)


@router.post("/orders/{ref}/fulfillment/reserve", response_model=FulfillmentView, tags=TAGS,
             responses=MUTATION_PROBLEMS, openapi_extra=IDEMPOTENCY_DOC,
             summary="Try again to reserve the order's stock (after restocking an order held out of stock)")
async def retry_reservation(request: Request, ref: Ref, caller: Caller) -> Response:
    return await _order_command(request, caller, ref, "retry_reservation", None, FulfillmentView)


@router.post("/orders/{ref}/shipments", status_code=201, response_model=ShipmentView, tags=TAGS,
             responses=MUTATION_PROBLEMS, openapi_extra=IDEMPOTENCY_DOC,
             summary="Manual fulfill: chosen lines and units become one shipment (split delivery)")
async def create_shipment(request: Request, ref: Ref, caller: Caller,
                          command: Annotated[ManualFulfill | None, Body()] = None) -> Response:
    payload = (command or ManualFulfill()).model_dump(mode="json")
    return await _order_command(request, caller, ref, "create_shipment", payload, ShipmentView, 201,
                                locate=shipment_location)


@router.post("/orders/{ref}/shipments/rates", response_model=RateList, tags=TAGS, responses=CARRIER_PROBLEMS,
             summary="Carrier fulfill, step 1: the carrier's rates (prices, estimated delivery) for these parcels "
                     "(nothing is bought)")
async def carrier_rates(request: Request, ref: Ref, command: CarrierFulfill) -> Response:
    order_id = await _order_id(request, ref)
    result = await _about_order(request, order_id, "carrier_rates", order_id=order_id,
                                command=command.model_dump(mode="json"))
    return render(RateList, result, "fulfillment.carrier_rates")


@router.post("/orders/{ref}/shipments/label", status_code=201, response_model=ShipmentView, tags=TAGS,
             responses=CARRIER_PROBLEMS, openapi_extra=IDEMPOTENCY_DOC,
             summary="Carrier fulfill, step 2: buy the label of a rate; a shipment with the carrier's tracking "
                     "number and label (send an Idempotency-Key: a retry never buys twice)")
async def buy_label(request: Request, ref: Ref, command: BuyLabel, caller: Caller) -> Response:
    return await _order_command(request, caller, ref, "buy_label", command.model_dump(mode="json"), ShipmentView,
                                201, locate=shipment_location, idempotent_call=True)


@router.post("/orders/{ref}/returns", status_code=201, response_model=ReturnView, tags=TAGS,
             responses=MUTATION_PROBLEMS, openapi_extra=IDEMPOTENCY_DOC,
             summary="Record units that came back after delivery (restock per line); offered in the refund preview")
async def record_return(request: Request, ref: Ref, command: ReturnCommand, caller: Caller) -> Response:
    return await _order_command(request, caller, ref, "record_return", command.model_dump(mode="json"),
                                ReturnView, 201)


# ------------------------------------------------------------------------------------------- shipments
async def _shipment_command(
    request: Request, caller: Principal, shipment_id: UUID, method: str, payload: dict[str, Any]
) -> Response:
    async def call(_key: str | None) -> Any:
        return await gateway(request).rpc.call(SERVICE, method, shipment_id=str(shipment_id), command=payload,
                                               actor=caller.actor())

    return await execute(request, caller, payload, call, ShipmentView, f"{SERVICE}.{method}",
                         locate=shipment_location)


@router.get("/shipments/{shipment_id}", response_model=ShipmentView, tags=TAGS, responses=READ_PROBLEMS,
            summary="One shipment with its tracking history (late or duplicated updates shown, not applied)")
async def get_shipment(request: Request, shipment_id: ShipmentId) -> Response:
    result = await gateway(request).rpc.call(SERVICE, "get_shipment", shipment_id=str(shipment_id))
    return render(ShipmentView, result, "fulfillment.get_shipment")


@router.patch("/shipments/{shipment_id}", response_model=ShipmentView, tags=TAGS, responses=MUTATION_PROBLEMS,
              openapi_extra=IDEMPOTENCY_DOC,
              summary="Edit a manual shipment: carrier, tracking number, expected delivery, status (forward only); "
                      "a carrier shipment refuses (409)")
async def edit_shipment(request: Request, shipment_id: ShipmentId, command: EditShipment, caller: Caller) -> Response:
    payload = command.model_dump(mode="json", exclude_unset=True)
    return await _shipment_command(request, caller, shipment_id, "edit_shipment", payload)


@router.post("/shipments/{shipment_id}/deliver", response_model=ShipmentView, tags=TAGS,
             responses=MUTATION_PROBLEMS, openapi_extra=IDEMPOTENCY_DOC,
             summary="Mark a manual shipment delivered (a pickup shipment: collected in store)")
async def mark_delivered(request: Request, shipment_id: ShipmentId, caller: Caller,
                         command: Annotated[MarkDelivered | None, Body()] = None) -> Response:
    payload = (command or MarkDelivered()).model_dump(mode="json")
    return await _shipment_command(request, caller, shipment_id, "mark_delivered", payload)


@router.post("/shipments/{shipment_id}/cancel", response_model=ShipmentView, tags=TAGS,
             responses=CARRIER_PROBLEMS, openapi_extra=IDEMPOTENCY_DOC,
             summary="Void/cancel a shipment before delivery: its units are unfulfilled again; a carrier label is "
                     "voided at the carrier first (409 with the carrier's reason if it refuses)")
async def cancel_shipment(request: Request, shipment_id: ShipmentId, caller: Caller,
                          command: Annotated[CancelShipment | None, Body()] = None) -> Response:
    payload = (command or CancelShipment()).model_dump(mode="json")
    return await _shipment_command(request, caller, shipment_id, "cancel_shipment", payload)


# ------------------------------------------------------------------------------------------- documents
_UNSAFE_FILENAME = re.compile(r"[^A-Za-z0-9._-]+")


def _document(result: Any, service_call: str) -> Response:
    """A ``DocumentFile`` as the file itself: its content type and a ``Content-Disposition`` filename."""
    try:
        doc = DocumentFile.model_validate(result)
        content = base64.b64decode(doc.content, validate=True) if doc.encoding == "base64" \
            else doc.content.encode("utf-8")
    except (ValidationError, binascii.Error) as exc:
        log.error("%s returned a document that cannot be decoded: %s", service_call, exc)
        raise RemoteServiceError(f"{service_call} returned a malformed document.") from None
    filename = _UNSAFE_FILENAME.sub("_", doc.filename).strip("._") or "document"
    media_type = doc.content_type
    if media_type.startswith("text/") and "charset" not in media_type:
        media_type += "; charset=utf-8"
    return Response(content, media_type=media_type,
                    headers={"Content-Disposition": f'inline; filename="{filename}"'})


async def _order_document(request: Request, ref: str, kind: DocumentKind, fmt: str) -> Response:
    order_id = await _order_id(request, ref)
    result = await _about_order(request, order_id, "render_document", kind=kind, ref=order_id, fmt=fmt)
    return _document(result, f"fulfillment.render_document({kind})")


@router.get("/orders/{ref}/invoice.{fmt}", response_class=Response, tags=TAGS, responses={
    **READ_PROBLEMS, 200: {"content": DOCUMENT_TYPES, "description": "The invoice"}},
    summary="The order's invoice (numbered at first print; one section per delivery method), HTML or PDF")
async def invoice(request: Request, ref: Ref, fmt: FormatPath) -> Response:
    return await _order_document(request, ref, "invoice", fmt)


@router.get("/orders/{ref}/details.{fmt}", response_class=Response, tags=TAGS, responses={
    **READ_PROBLEMS, 200: {"content": DOCUMENT_TYPES, "description": "The order details"}},
    summary="Print the order details (items, totals, customer, shipments, note), HTML or PDF")
async def order_details(request: Request, ref: Ref, fmt: FormatPath) -> Response:
    return await _order_document(request, ref, "order_details", fmt)


@router.get("/shipments/{shipment_id}/packing-slip.{fmt}", response_class=Response, tags=TAGS, responses={
    **READ_PROBLEMS, 200: {"content": DOCUMENT_TYPES, "description": "The packing slip"}},
    summary="The shipment's packing slip (lines and units, no prices), HTML or PDF")
async def packing_slip(request: Request, shipment_id: ShipmentId, fmt: FormatPath) -> Response:
    result = await gateway(request).rpc.call(SERVICE, "render_document", kind="packing_slip",
                                             ref=str(shipment_id), fmt=fmt)
    return _document(result, "fulfillment.render_document(packing_slip)")


@router.post("/documents/packing-slips.{fmt}", response_class=Response, tags=TAGS, responses={
    **READ_PROBLEMS, 200: {"content": DOCUMENT_TYPES, "description": "Every slip, each on a new page"}},
    summary="Packing slips of several orders as ONE document (every open or handed-over shipment, a page each)")
async def packing_slips(request: Request, body: PackingSlipsRequest, fmt: FormatPath) -> Response:
    order_ids = [await _order_id(request, ref) for ref in body.orders]
    result = await gateway(request).rpc.call(SERVICE, "render_packing_slips", order_ids=order_ids, fmt=fmt)
    return _document(result, "fulfillment.render_packing_slips")


@router.get("/shipments/{shipment_id}/label.pdf", response_class=Response, tags=TAGS, responses={
    **problem_responses(401, 404, 409, 422, 500, 502, 503, 504),
    200: {"content": PDF_TYPE, "description": "The carrier's label"}},
    summary="The carrier's printable label of a carrier shipment (PDF)")
async def shipment_label(request: Request, shipment_id: ShipmentId) -> Response:
    result = await gateway(request).rpc.call(SERVICE, "shipment_label", shipment_id=str(shipment_id))
    return _document(result, "fulfillment.shipment_label")


# ------------------------------------------------------------------------------------------- stock
@router.get("/stock", response_model=StockList, tags=STOCK_TAGS, responses=READ_PROBLEMS,
            summary="Stock per SKU: on hand, reserved and available, per location")
async def list_stock(
    request: Request,
    sku: Annotated[str | None, Query(max_length=100, description="Only this SKU.")] = None,
    location: Annotated[str | None, Query(max_length=64, description="Only this location.")] = None,
    low: Annotated[bool, Query(description="Only SKUs with nothing available.")] = False,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    after: Annotated[str | None, Query(max_length=200, description="`next_after` of the previous page.")] = None,
) -> Response:
    result = await gateway(request).rpc.call(SERVICE, "list_stock", sku=sku, location=location, low=low,
                                             limit=limit, after=after)
    return render(StockList, result, "fulfillment.list_stock")


@router.get("/stock/{sku}", response_model=StockItemView, tags=STOCK_TAGS, responses=READ_PROBLEMS,
            summary="One SKU's stock at every location (404: the SKU is not stock-tracked)")
async def get_stock(request: Request, sku: SkuPath) -> Response:
    result = await gateway(request).rpc.call(SERVICE, "list_stock", sku=sku, location=None, low=False,
                                             limit=100, after=None)
    page = view(StockList, result, "fulfillment.list_stock")
    item = next((i for i in page["items"] if i["sku"] == sku), None)
    if item is None:
        raise NotFound(f"No stock is recorded for SKU {sku!r}: it is not stock-tracked.", sku=sku)
    return render(StockItemView, item, "fulfillment.list_stock")


@router.put("/stock/{sku}", response_model=StockItemView, tags=STOCK_TAGS, responses=MUTATION_PROBLEMS,
            openapi_extra=IDEMPOTENCY_DOC,
            summary="Count a SKU's units on hand at a location (a stock take; never below what is reserved)")
async def set_stock(request: Request, sku: SkuPath, command: SetStock, caller: Caller) -> Response:
    return await _stock_command(request, caller, sku, "set_stock", command)


@router.post("/stock/{sku}/adjustments", response_model=StockItemView, tags=STOCK_TAGS,
             responses=MUTATION_PROBLEMS, openapi_extra=IDEMPOTENCY_DOC,
             summary="Add (received) or remove (damaged, lost) units at a location, with a reason")
async def adjust_stock(request: Request, sku: SkuPath, command: AdjustStock, caller: Caller) -> Response:
    return await _stock_command(request, caller, sku, "adjust_stock", command)


async def _stock_command(request: Request, caller: Principal, sku: str, method: str, command: BaseModel) -> Response:
    payload = command.model_dump(mode="json")

    async def call(_key: str | None) -> Any:
        return await gateway(request).rpc.call(SERVICE, method, sku=sku, command=payload, actor=caller.actor())

    return await execute(request, caller, payload, call, StockItemView, f"{SERVICE}.{method}")


@router.get("/stock/{sku}/movements", response_model=MovementList, tags=STOCK_TAGS, responses=READ_PROBLEMS,
            summary="The SKU's movement history, newest first: every change with its reason, actor and order")
async def stock_movements(
    request: Request, sku: SkuPath, limit: Annotated[int, Query(ge=1, le=1000)] = 100
) -> Response:
    result = await gateway(request).rpc.call(SERVICE, "stock_movements", sku=sku, limit=limit)
    return render(MovementList, result, "fulfillment.stock_movements")


@router.post("/stock/reconcile", response_model=ReconcileReport, tags=STOCK_TAGS, responses=MUTATION_PROBLEMS,
             openapi_extra=IDEMPOTENCY_DOC,
             summary="Recompute reserved quantities from the reservations and report drift (`fix=true` corrects it)")
async def reconcile_stock(
    request: Request, caller: Caller,
    fix: Annotated[bool, Query(description="Correct the recorded reserved quantities.")] = False,
) -> Response:
    async def call(_key: str | None) -> Any:
        return await gateway(request).rpc.call(SERVICE, "reconcile_stock", fix=fix)

    return await execute(request, caller, {"fix": fix}, call, ReconcileReport, "fulfillment.reconcile_stock")


# ------------------------------------------------------------------------------------------- tables, webhook
_status_tables: dict[str, Any] | None = None


@router.get("/fulfillment/statuses", tags=TAGS, responses=problem_responses(401, 500),
            summary="The fulfillment statuses and the rules that compute them; the shipment status machine")
async def fulfillment_statuses() -> dict[str, Any]:
    global _status_tables
    if _status_tables is None:
        _status_tables = status_tables()
    return _status_tables


_WEBHOOK_HEADERS = (SIGNATURE_HEADER.lower(), "content-type")


@public.post(WEBHOOK_PATH.removeprefix(API_PREFIX), response_model=WebhookAck, tags=TAGS,
             responses=problem_responses(400, 404, 500, 502, 503, 504),
             summary="The carrier's tracking webhook (authenticated by its signature, not an API key)")
async def carrier_webhook(request: Request) -> Response:
    body = (await request.body()).decode("utf-8", "replace")
    headers = {k: v for k, v in request.headers.items() if k.lower() in _WEBHOOK_HEADERS}
    result = await gateway(request).rpc.call(SERVICE, "handle_carrier_webhook", body=body, headers=headers)
    return render(WebhookAck, result, "fulfillment.handle_carrier_webhook")


ROUTERS = (public, router)
