"""The HTTP API: a stateless FastAPI app in front of the Nameko services (``create_app``).

Every route is a thin translation: authenticate the API key, validate the body with the orders contract
(``services.orders.contracts.schemas``), make one RPC call, validate the reply against the response model and answer.
Errors of every kind are RFC 9457 problem documents (``problems.py``). All state lives in Postgres (schema
``gateway``: API keys, idempotency records), so any number of gateway processes can run side by side.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from decimal import Decimal
from typing import Annotated, Any, Protocol
from uuid import UUID

from fastapi import APIRouter, Body, Depends, FastAPI, Path, Query, Request, Security
from fastapi.responses import JSONResponse, Response
from fastapi.security import APIKeyHeader, HTTPBearer
from psycopg_pool import AsyncConnectionPool
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from services.gateway.auth import ApiKeyAuthenticator, Authenticator, Principal, key_from_headers
from services.gateway.batching import PlacementBatcher
from services.gateway.idempotency import (
    HEADER as IDEMPOTENCY_HEADER,
)
from services.gateway.idempotency import (
    REPLAYED_HEADER,
    IdempotencyStore,
    PgIdempotencyStore,
    StoredResponse,
    check_key,
    request_hash,
)
from services.gateway.problems import (
    PROBLEM_JSON,
    domain_error_body,
    install_problem_handlers,
    install_problem_openapi,
    problem_response,
    problem_responses,
    register_route_methods,
)
from services.gateway.rpc import AsyncRpcClient, RemoteServiceError, ServiceUnavailable
from services.orders.contracts.schemas import (
    AddNote,
    Address,
    ChangeCustomer,
    Channel,
    Customer,
    EditNote,
    LineItemIn,
    OrderDetail,
    OrderPage,
    OrderQuery,
    PaymentMethodChoice,
    PlaceOrder,
    SetAddress,
    SetCustomerNote,
    SetPaymentMethod,
    Transition,
)
from services.payments.contracts.schemas import (
    CapturePayment,
    CreatePaymentLink,
    ManualRefundList,
    MarkRefundPaidOut,
    PaymentLinkView,
    PaymentSummary,
    RecordManualPayment,
    RefundCommand,
    RefundPreviewView,
    WebhookAck,
)
from shared.config import Settings, get_settings
from shared.errors import DomainError, NotFound

log = logging.getLogger(__name__)

API_PREFIX = "/api/v1"
PURGE_INTERVAL_SECONDS = 900.0


class RpcClient(Protocol):
    async def call(self, service: str, method: str, *args: Any, timeout: float | None = None,
                   **kwargs: Any) -> Any: ...

    @property
    def connected(self) -> bool: ...


# ------------------------------------------------------------------------------------------------ state
class Gateway:
    """What the routes need: settings, the RPC client, the DB pool, the authenticator, the idempotency store.

    Anything not passed in is created from the settings when the app starts (tests pass stand-ins)."""

    def __init__(
        self,
        settings: Settings,
        *,
        rpc: RpcClient | None = None,
        pool: AsyncConnectionPool[Any] | None = None,
        authenticator: Authenticator | None = None,
        idempotency: IdempotencyStore | None = None,
    ) -> None:
        self.settings = settings
        self._own_rpc = rpc is None
        self._own_pool = pool is None and (authenticator is None or idempotency is None)
        self.rpc: RpcClient = rpc or AsyncRpcClient(settings.amqp_url, timeout=settings.rpc_timeout_seconds)
        self.placements = PlacementBatcher(self.rpc)
        self.pool = pool
        if self._own_pool:
            self.pool = AsyncConnectionPool(
                settings.database_url,
                min_size=settings.db_pool_size,
                max_size=settings.db_pool_size,
                kwargs={"autocommit": True, "application_name": "oms-gateway"},
                open=False,
                name="oms-gateway",
            )
        self.authenticator: Authenticator = authenticator or ApiKeyAuthenticator(self._require_pool())
        self.idempotency: IdempotencyStore = idempotency or PgIdempotencyStore(
            self._require_pool(), stale_after=max(60.0, 2 * settings.rpc_timeout_seconds)
        )
        self._purger: asyncio.Task[None] | None = None
        self._revocations: asyncio.Task[None] | None = None

    def _require_pool(self) -> AsyncConnectionPool[Any]:
        assert self.pool is not None, "a database pool is needed"
        return self.pool

    async def start(self) -> None:
        if self._own_pool and self.pool is not None:
            await self.pool.open(wait=False)  # connects in the background; /health reports it
        if self._own_rpc and isinstance(self.rpc, AsyncRpcClient):
            await self.rpc.start(wait=5.0)
        if isinstance(self.idempotency, PgIdempotencyStore):
            self._purger = asyncio.create_task(self._purge_forever(self.idempotency), name="idempotency-purge")
        if isinstance(self.authenticator, ApiKeyAuthenticator):
            self._revocations = asyncio.create_task(
                self.authenticator.watch_revocations(self.settings.database_url), name="api-key-revocations"
            )

    async def stop(self) -> None:
        for task in (self._purger, self._revocations):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        await self.placements.close()
        if self._own_rpc and isinstance(self.rpc, AsyncRpcClient):
            await self.rpc.close()
        if self._own_pool and self.pool is not None:
            await self.pool.close()

    @staticmethod
    async def _purge_forever(store: PgIdempotencyStore) -> None:
        while True:
            await asyncio.sleep(PURGE_INTERVAL_SECONDS * random.uniform(0.5, 1.0))
            try:
                removed = await store.purge_expired()
                if removed:
                    log.info("purged %d expired idempotency keys", removed)
            except Exception as exc:
                log.warning("purging idempotency keys failed: %s", exc)


def gateway(request: Request) -> Gateway:
    gw: Gateway = request.app.state.gateway
    return gw


# ------------------------------------------------------------------------------------------------ auth
_bearer = HTTPBearer(auto_error=False, scheme_name="bearer", description="`Authorization: Bearer oms_...`")
_api_key = APIKeyHeader(name="X-API-Key", auto_error=False, scheme_name="apiKey", description="`X-API-Key: oms_...`")


async def authenticated(
    request: Request,
    _bearer_doc: Annotated[Any, Security(_bearer)] = None,
    _key_doc: Annotated[Any, Security(_api_key)] = None,
) -> Principal:
    """The caller's API key (401 problem if missing, unknown or revoked)."""
    headers = request.headers
    key = key_from_headers(headers.get("authorization"), headers.get("x-api-key"))
    principal = await gateway(request).authenticator.authenticate(key)
    request.state.principal = principal
    return principal


Caller = Annotated[Principal, Depends(authenticated)]
Ref = Annotated[str, Path(min_length=1, max_length=64, description="Order id (UUID), number (`1001`) or `#1001`.")]


# ------------------------------------------------------------------------------------------------ responses
def _view(model: type[BaseModel], result: Any, service_call: str) -> dict[str, Any]:
    try:
        return model.model_validate(result).model_dump(mode="json")
    except ValidationError as exc:
        log.error("%s returned a result that is not a valid %s: %s", service_call, model.__name__, exc)
        raise RemoteServiceError(f"{service_call} returned a malformed result.") from None


def _render(model: type[BaseModel], result: Any, service_call: str, status: int = 200) -> Response:
    try:
        content = model.model_validate(result).model_dump_json().encode()
    except ValidationError as exc:
        log.error("%s returned a result that is not a valid %s: %s", service_call, model.__name__, exc)
        raise RemoteServiceError(f"{service_call} returned a malformed result.") from None
    return Response(content, status_code=status, media_type="application/json")


def _location(model: type[BaseModel], data: dict[str, Any]) -> dict[str, str]:
    if model is OrderDetail and data.get("id"):
        return {"Location": f"{API_PREFIX}/orders/{data['id']}"}
    return {}


async def execute(
    request: Request,
    principal: Principal,
    body: Any,
    call: Callable[[str | None], Awaitable[Any]],
    model: type[BaseModel],
    service_call: str,
    status: int = 200,
) -> Response:
    """Run a state-changing RPC call, honouring ``Idempotency-Key``; ``call`` gets the client's key (or None).
    The key is forwarded as is: ``orders.place_order`` scopes it by the actor id itself."""
    raw_key = request.headers.get(IDEMPOTENCY_HEADER)
    if raw_key is None:
        data = _view(model, await call(None), service_call)
        return JSONResponse(data, status_code=status, headers=_location(model, data))

    key = check_key(raw_key)
    store = gateway(request).idempotency
    path = request.url.path
    fingerprint = request_hash(request.method, path, body)
    stored = await store.begin(principal.id, key, request.method, path, fingerprint)
    if stored is not None:
        return _replay(stored)
    try:
        try:
            data = _view(model, await call(key), service_call)
            answer = StoredResponse(status, data, {"Content-Type": "application/json", **_location(model, data)})
        except DomainError as exc:  # a definite answer about this request: replay it too
            answer = StoredResponse(exc.status, domain_error_body(exc, path), {"Content-Type": PROBLEM_JSON})
    except BaseException:
        # Maybe transient (503/504/crash): free the key so the client can retry.
        with contextlib.suppress(Exception):
            await store.abandon(principal.id, key)
        raise
    try:
        await store.finish(principal.id, key, answer)
    except Exception as exc:  # the change is made: answer it anyway; a retry within stale_after gets 409
        log.error("could not store the answer for Idempotency-Key %r: %s", key, exc)
    return _answer(answer, replayed=False)


def _answer(stored: StoredResponse, *, replayed: bool) -> Response:
    headers = dict(stored.headers)
    media_type = headers.pop("Content-Type", "application/json")
    if replayed:
        headers[REPLAYED_HEADER] = "true"
    content = json.dumps(stored.body, separators=(",", ":"), ensure_ascii=False).encode()
    return Response(content, status_code=stored.status_code, headers=headers, media_type=media_type)


def _replay(stored: StoredResponse) -> Response:
    return _answer(stored, replayed=True)


# ------------------------------------------------------------------------------------------------ test orders
class TestOrderOptions(BaseModel):
    """Overrides for a generated test order; everything is optional. Pass ``shipping_address: null`` or
    ``payment_method: null`` to leave them open (the order then stays ``placed``)."""

    __test__ = False  # not a pytest test class
    model_config = ConfigDict(extra="forbid")

    customer: Customer | None = None
    items: Annotated[list[LineItemIn], Field(min_length=1, max_length=500)] | None = None
    currency: Annotated[str, Field(pattern=r"^[A-Za-z]{3}$")] | None = None
    shipping_address: Address | None = None
    payment_method: PaymentMethodChoice | None = None
    customer_note: Annotated[str, Field(max_length=5000)] | None = None


_CATALOGUE = [
    ("TEE-BLK-M", "Organic cotton T-shirt, black, M", "24.90"),
    ("HOOD-GRY-L", "Hoodie, heather grey, L", "59.00"),
    ("MUG-CER-01", "Ceramic mug 350 ml", "12.50"),
    ("CAP-NVY", "Baseball cap, navy", "19.95"),
    ("SOCK-3PK", "Merino socks, 3-pack", "17.40"),
    ("TOTE-NAT", "Canvas tote bag", "9.90"),
]


def build_test_order(options: TestOrderOptions | None) -> PlaceOrder:
    """A realistic order from the ``test`` channel, marked ``test=true``, with the caller's overrides."""
    opts = options or TestOrderOptions()
    given = opts.model_fields_set
    picks = random.sample(_CATALOGUE, k=random.randint(1, 3))
    items = opts.items or [
        LineItemIn(sku=sku, name=name, quantity=random.randint(1, 3), unit_price=Decimal(price))
        for sku, name, price in picks
    ]
    address = opts.shipping_address if "shipping_address" in given else Address(
        line1="Teststraße 1", city="Berlin", postal_code="10115", country="DE"
    )
    payment = opts.payment_method if "payment_method" in given else PaymentMethodChoice.cash_on_delivery
    return PlaceOrder(
        channel=Channel.test,
        customer=opts.customer or Customer(name="Test Customer", phone="+49 30 1234567",
                                           email="test.customer@example.com"),
        items=items,
        currency=(opts.currency or "EUR").upper(),
        shipping=Decimal("4.90"),
        shipping_address=address,
        payment_method=payment,
        customer_note=opts.customer_note,
        test=True,
    )


# ------------------------------------------------------------------------------------------------ routes
public = APIRouter(prefix=API_PREFIX)
router = APIRouter(prefix=API_PREFIX, dependencies=[Depends(authenticated)])

_MUTATION_PROBLEMS = problem_responses(401, 404, 409, 422, 500, 502, 503, 504)
_READ_PROBLEMS = problem_responses(401, 404, 422, 500, 502, 503, 504)
_IDEMPOTENCY_DOC = {
    "parameters": [
        {
            "name": IDEMPOTENCY_HEADER,
            "in": "header",
            "required": False,
            "description": "Any unique string (e.g. a UUID) per logical request. A retry with the same key and body "
            "gets the first answer replayed (header `Idempotent-Replayed: true`); another body gets 422; while "
            "the first is still running, 409. Keys expire after 24 hours.",
            "schema": {"type": "string", "maxLength": 255},
        }
    ]
}


class HealthCheck(BaseModel):
    status: str = Field(description="`ok` or `unavailable`.")
    checks: dict[str, str]


@public.get("/health", response_model=HealthCheck, tags=["health"], responses=problem_responses(503),
            summary="Is the gateway able to reach the database and the message broker?")
async def health(request: Request) -> Response:
    gw = gateway(request)
    checks: dict[str, str] = {}
    if gw.pool is not None:
        try:
            async with gw.pool.connection(timeout=2.0) as conn:
                await conn.execute("SELECT 1")
            checks["database"] = "ok"
        except Exception as exc:
            checks["database"] = f"unreachable: {type(exc).__name__}"
    checks["broker"] = "ok" if gw.rpc.connected else "unreachable"
    if all(v == "ok" for v in checks.values()):
        return JSONResponse({"status": "ok", "checks": checks})
    return problem_response(503, "Service unavailable", "A dependency of the gateway is unreachable.",
                            slug="unhealthy", instance=request.url.path, extra={"checks": checks})


@router.post("/orders", status_code=201, response_model=OrderDetail, tags=["orders"],
             responses=_MUTATION_PROBLEMS, openapi_extra=_IDEMPOTENCY_DOC, summary="Place an order")
async def place_order(request: Request, command: PlaceOrder, caller: Caller) -> Response:
    payload = command.model_dump(mode="json")

    async def call(key: str | None) -> Any:
        return await gateway(request).placements.place(payload, caller.actor(), key)

    return await execute(request, caller, payload, call, OrderDetail, "orders.place_order", 201)


@router.post("/test-orders", status_code=201, response_model=OrderDetail, tags=["orders"],
             responses=_MUTATION_PROBLEMS, openapi_extra=_IDEMPOTENCY_DOC,
             summary="Place a realistic test order (channel `test`, `test=true`)")
async def place_test_order(
    request: Request, caller: Caller, options: Annotated[TestOrderOptions | None, Body()] = None
) -> Response:
    command = build_test_order(options)
    payload = command.model_dump(mode="json")
    fingerprint_body = options.model_dump(mode="json") if options else None

    async def call(key: str | None) -> Any:
        return await gateway(request).placements.place(payload, caller.actor(), key)

    return await execute(request, caller, fingerprint_body, call, OrderDetail, "orders.place_order", 201)


@router.get("/orders", response_model=OrderPage, tags=["orders"], responses=_READ_PROBLEMS,
            summary="Search, filter and page through orders")
async def list_orders(request: Request, query: Annotated[OrderQuery, Query()]) -> Response:
    result = await gateway(request).rpc.call("orders", "list_orders", query=query.model_dump(mode="json"))
    return _render(OrderPage, result, "orders.list_orders")


@router.get("/orders/{ref}", response_model=OrderDetail, tags=["orders"], responses=_READ_PROBLEMS,
            summary="One order with items, notes, history and the stages it can move to")
async def get_order(request: Request, ref: Ref) -> Response:
    result = await gateway(request).rpc.call("orders", "get_order", ref=ref)
    return _render(OrderDetail, result, "orders.get_order")


def _command_route(method_name: str, summary: str) -> Callable[..., Any]:
    """``PUT/POST /orders/{ref}/...`` -> ``orders.<method_name>(ref, command, actor)``."""

    async def handler(request: Request, ref: str, command: BaseModel, caller: Principal) -> Response:
        payload = command.model_dump(mode="json")

        async def call(_key: str | None) -> Any:
            return await gateway(request).rpc.call(
                "orders", method_name, ref=ref, command=payload, actor=caller.actor()
            )

        return await execute(request, caller, payload, call, OrderDetail, f"orders.{method_name}")

    handler.__doc__ = summary
    return handler


_transition = _command_route("transition", "Move the order to another stage")
_set_address = _command_route("set_address", "Set or correct the shipping address")
_set_payment = _command_route("set_payment_method", "Record how the customer pays")
_set_note = _command_route("set_customer_note", "Record the customer's note (or that they skipped it)")
_change_customer = _command_route("change_customer", "Replace the order's customer")
_add_note = _command_route("add_note", "Add a staff note")


@router.post("/orders/{ref}/transitions", response_model=OrderDetail, tags=["orders"],
             responses=_MUTATION_PROBLEMS, openapi_extra=_IDEMPOTENCY_DOC, summary="Move the order to another stage")
async def transition(request: Request, ref: Ref, command: Transition, caller: Caller) -> Response:
    return await _transition(request, ref, command, caller)


@router.put("/orders/{ref}/address", response_model=OrderDetail, tags=["orders"],
            responses=_MUTATION_PROBLEMS, openapi_extra=_IDEMPOTENCY_DOC, summary="Set the shipping address")
async def set_address(request: Request, ref: Ref, command: SetAddress, caller: Caller) -> Response:
    return await _set_address(request, ref, command, caller)


@router.put("/orders/{ref}/payment-method", response_model=OrderDetail, tags=["orders"],
            responses=_MUTATION_PROBLEMS, openapi_extra=_IDEMPOTENCY_DOC, summary="Record how the customer pays")
async def set_payment_method(request: Request, ref: Ref, command: SetPaymentMethod, caller: Caller) -> Response:
    return await _set_payment(request, ref, command, caller)


@router.put("/orders/{ref}/customer-note", response_model=OrderDetail, tags=["orders"],
            responses=_MUTATION_PROBLEMS, openapi_extra=_IDEMPOTENCY_DOC,
            summary="Record the customer's note, or that they skipped it")
async def set_customer_note(request: Request, ref: Ref, command: SetCustomerNote, caller: Caller) -> Response:
    return await _set_note(request, ref, command, caller)


@router.put("/orders/{ref}/customer", response_model=OrderDetail, tags=["orders"],
            responses=_MUTATION_PROBLEMS, openapi_extra=_IDEMPOTENCY_DOC, summary="Replace the order's customer")
async def change_customer(request: Request, ref: Ref, command: ChangeCustomer, caller: Caller) -> Response:
    return await _change_customer(request, ref, command, caller)


@router.post("/orders/{ref}/notes", status_code=200, response_model=OrderDetail, tags=["notes"],
             responses=_MUTATION_PROBLEMS, openapi_extra=_IDEMPOTENCY_DOC, summary="Add a staff note")
async def add_note(request: Request, ref: Ref, command: AddNote, caller: Caller) -> Response:
    return await _add_note(request, ref, command, caller)


@router.patch("/orders/{ref}/notes/{note_id}", response_model=OrderDetail, tags=["notes"],
              responses=_MUTATION_PROBLEMS, openapi_extra=_IDEMPOTENCY_DOC, summary="Edit a staff note")
async def edit_note(request: Request, ref: Ref, note_id: UUID, command: EditNote, caller: Caller) -> Response:
    payload = command.model_dump(mode="json")

    async def call(_key: str | None) -> Any:
        return await gateway(request).rpc.call(
            "orders", "edit_note", ref=ref, note_id=str(note_id), command=payload, actor=caller.actor()
        )

    return await execute(request, caller, payload, call, OrderDetail, "orders.edit_note")


@router.delete("/orders/{ref}/notes/{note_id}", response_model=OrderDetail, tags=["notes"],
               responses=_MUTATION_PROBLEMS, openapi_extra=_IDEMPOTENCY_DOC, summary="Delete a staff note")
async def delete_note(request: Request, ref: Ref, note_id: UUID, caller: Caller) -> Response:
    async def call(_key: str | None) -> Any:
        return await gateway(request).rpc.call(
            "orders", "delete_note", ref=ref, note_id=str(note_id), actor=caller.actor()
        )

    return await execute(request, caller, None, call, OrderDetail, "orders.delete_note")


# ------------------------------------------------------------------------------------------------ payments
async def _payments_order(request: Request, ref: str) -> dict[str, Any]:
    """The order for a ref (id, number or #number): payments know orders by id only."""
    order: dict[str, Any] = await gateway(request).rpc.call("orders", "get_order", ref=ref)
    return order


async def _payments_order_id(request: Request, ref: str) -> str:
    """An order id as is (no round trip to orders: payments check it); a number is looked up in orders."""
    try:
        return str(UUID(ref))
    except ValueError:
        return str((await _payments_order(request, ref))["id"])


PAYMENTS_CATCH_UP_SECONDS = 3.0


async def _payments(request: Request, method: str, order_id: str, **kwargs: Any) -> Any:
    """Call payments about an order the orders service has just shown us.

    Payments learn of an order from its ``order.placed`` event, a few milliseconds after orders commit it.
    A client that places an order and at once asks for a payment link would otherwise get a confusing 404:
    for an order that exists, "not found" is that lag, so wait for it (bounded), then say so with a 503.
    Payments raise ``NotFound`` before changing anything, so calling again is safe.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + PAYMENTS_CATCH_UP_SECONDS
    delay = 0.02
    known_to_orders = False
    while True:
        try:
            return await gateway(request).rpc.call("payments", method, order_id=order_id, **kwargs)
        except NotFound as exc:
            if exc.extra.get("order_id") != order_id:
                raise
            if not known_to_orders:  # an id nobody placed is a plain 404 (orders say so), not a wait
                await _payments_order(request, order_id)
                known_to_orders = True
            if loop.time() > deadline:
                raise ServiceUnavailable(
                    f"Payments have not caught up with order {order_id} yet; try again in a moment.",
                    headers={"Retry-After": "1"}, order_id=order_id,
                ) from None
        await asyncio.sleep(delay)
        delay = min(delay * 2, 0.25)


async def _payment_command(
    request: Request, caller: Principal, ref: str, method: str, payload: dict[str, Any], model: type[BaseModel]
) -> Response:
    """A state-changing payments call about one order (``command`` + ``actor``), with Idempotency-Key."""
    order_id = await _payments_order_id(request, ref)

    async def call(_key: str | None) -> Any:
        return await _payments(request, method, order_id, command=payload, actor=caller.actor())

    return await execute(request, caller, payload, call, model, f"payments.{method}")


@router.get("/orders/{ref}/payments", response_model=PaymentSummary, tags=["payments"], responses=_READ_PROBLEMS,
            summary="The order's payment status, totals, payment attempts and ledger")
async def payment_summary(request: Request, ref: Ref) -> Response:
    order_id = await _payments_order_id(request, ref)
    result = await _payments(request, "summary", order_id)
    return _render(PaymentSummary, result, "payments.summary")


@router.post("/orders/{ref}/payments/manual", response_model=PaymentSummary, tags=["payments"],
             responses=_MUTATION_PROBLEMS, openapi_extra=_IDEMPOTENCY_DOC,
             summary="Record money received by hand (cash, bank transfer, POS), in full or in part")
async def record_manual_payment(request: Request, ref: Ref, command: RecordManualPayment, caller: Caller) -> Response:
    payload = command.model_dump(mode="json")
    order = await _payments_order(request, ref)
    order_id = str(order["id"])
    # The method the order shows now, in case payments have not seen its payment_method_set event yet.
    sent = {**payload, "method": payload.get("method") or order.get("payment_method")}

    async def call(_key: str | None) -> Any:
        return await _payments(request, "record_manual_payment", order_id, command=sent, actor=caller.actor())

    return await execute(request, caller, payload, call, PaymentSummary, "payments.record_manual_payment")


@router.post("/orders/{ref}/payments/link", response_model=PaymentLinkView, tags=["payments"],
             responses=_MUTATION_PROBLEMS, openapi_extra=_IDEMPOTENCY_DOC,
             summary="Create (or reuse) a card payment link for what is still due")
async def create_payment_link(
    request: Request, ref: Ref, caller: Caller, command: Annotated[CreatePaymentLink | None, Body()] = None
) -> Response:
    payload = (command or CreatePaymentLink()).model_dump(mode="json")
    return await _payment_command(request, caller, ref, "create_payment_link", payload, PaymentLinkView)


@router.post("/orders/{ref}/payments/capture", response_model=PaymentSummary, tags=["payments"],
             responses=_MUTATION_PROBLEMS, openapi_extra=_IDEMPOTENCY_DOC,
             summary="Capture authorized card money (all, or part: the rest is released)")
async def capture_payment(
    request: Request, ref: Ref, caller: Caller, command: Annotated[CapturePayment | None, Body()] = None
) -> Response:
    payload = (command or CapturePayment()).model_dump(mode="json")
    return await _payment_command(request, caller, ref, "capture_payment", payload, PaymentSummary)


@router.post("/orders/{ref}/refunds/preview", response_model=RefundPreviewView, tags=["payments"],
             responses=_READ_PROBLEMS, summary="Exactly what a refund would give back (nothing is changed)")
async def refund_preview(request: Request, ref: Ref, command: RefundCommand) -> Response:
    order_id = await _payments_order_id(request, ref)
    result = await _payments(request, "refund_preview", order_id, command=command.model_dump(mode="json"))
    return _render(RefundPreviewView, result, "payments.refund_preview")


@router.post("/orders/{ref}/refunds", response_model=RefundPreviewView, tags=["payments"],
             responses=_MUTATION_PROBLEMS, openapi_extra=_IDEMPOTENCY_DOC,
             summary="Refund by item quantities, shipping and adjustments (idempotent with Idempotency-Key)")
async def refund(request: Request, ref: Ref, command: RefundCommand, caller: Caller) -> Response:
    payload = command.model_dump(mode="json")
    order_id = await _payments_order_id(request, ref)

    async def call(key: str | None) -> Any:
        return await _payments(request, "refund", order_id, command=payload, actor=caller.actor(),
                               idempotency_key=f"{caller.id}:{key}" if key else None)

    return await execute(request, caller, payload, call, RefundPreviewView, "payments.refund")


@router.get("/payments/manual-refunds", response_model=ManualRefundList, tags=["payments"],
            responses=_READ_PROBLEMS, summary="Refunds staff must pay out by hand (cash, transfer, POS), oldest first")
async def manual_refunds(
    request: Request,
    pending: Annotated[bool, Query(description="Only those not marked paid out yet.")] = True,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> Response:
    result = await gateway(request).rpc.call("payments", "manual_refunds", pending=pending, limit=limit)
    return _render(ManualRefundList, result, "payments.manual_refunds")


@router.post("/orders/{ref}/refunds/paid-out", response_model=PaymentSummary, tags=["payments"],
             responses=_MUTATION_PROBLEMS, openapi_extra=_IDEMPOTENCY_DOC,
             summary="Mark a manual refund as paid out (the money was handed back by hand)")
async def mark_refund_paid_out(request: Request, ref: Ref, command: MarkRefundPaidOut, caller: Caller) -> Response:
    payload = command.model_dump(mode="json")
    return await _payment_command(request, caller, ref, "mark_refund_paid_out", payload, PaymentSummary)


_WEBHOOK_HEADERS = ("webhook-id", "webhook-timestamp", "webhook-signature", "content-type")


@public.post("/payments/webhooks/sandbox", response_model=WebhookAck, tags=["payments"],
             responses=problem_responses(400, 404, 500, 502, 503, 504),
             summary="Provider webhook (authenticated by its signature, not an API key)")
async def sandbox_webhook(request: Request) -> Response:
    body = (await request.body()).decode("utf-8", "replace")
    headers = {k: v for k, v in request.headers.items() if k.lower() in _WEBHOOK_HEADERS}
    result = await gateway(request).rpc.call("payments", "handle_webhook", body=body, headers=headers)
    return _render(WebhookAck, result, "payments.handle_webhook")


_stage_table: dict[str, Any] | None = None


@router.get("/stages", tags=["orders"], responses=problem_responses(401, 500),
            summary="The stage machine: every stage, the moves allowed from it and the automatic rules")
async def stages() -> dict[str, Any]:
    global _stage_table
    if _stage_table is None:
        from services.orders.contracts.stages import status_machine_table

        _stage_table = status_machine_table()
    return _stage_table


# ------------------------------------------------------------------------------------------------ app
def create_app(
    settings: Settings | None = None,
    *,
    rpc: RpcClient | None = None,
    pool: AsyncConnectionPool[Any] | None = None,
    authenticator: Authenticator | None = None,
    idempotency: IdempotencyStore | None = None,
) -> FastAPI:
    """The gateway app. Pass only ``settings`` in production; the keyword arguments replace a dependency
    (tests: an in-process RPC stand-in, a pool of a throwaway database...)."""
    settings = settings or get_settings()
    gw = Gateway(settings, rpc=rpc, pool=pool, authenticator=authenticator, idempotency=idempotency)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        await gw.start()
        try:
            yield
        finally:
            await gw.stop()

    app = FastAPI(
        title="OMS API",
        version="1.0.0",
        description=(
            "Order management API. Authenticate with an API key (`Authorization: Bearer oms_...` or "
            "`X-API-Key`). Errors are RFC 9457 `application/problem+json` documents. State-changing requests "
            "accept an `Idempotency-Key` header (kept 24 hours)."
        ),
        openapi_url=f"{API_PREFIX}/openapi.json",
        docs_url=f"{API_PREFIX}/docs",
        redoc_url=f"{API_PREFIX}/redoc",
        lifespan=lifespan,
    )
    app.state.gateway = gw
    install_problem_handlers(app)
    install_problem_openapi(app)
    app.include_router(public)
    app.include_router(router)
    register_route_methods(app, [*public.routes, *router.routes])
    return app


__all__ = ["Gateway", "build_test_order", "create_app", "execute"]
