"""The orders service over HTTP: place (one by one or as test orders), search, read, and every command on an
order (stage moves, address, payment method, customer, notes), plus the stage machine (``GET /stages``).

Bodies and answers are the orders contract's models (``services.orders.contracts``); each route makes one
RPC call to ``orders``."""

from __future__ import annotations

from typing import Annotated, Any
from uuid import UUID

from fastapi import Body, Query, Request
from fastapi.responses import Response

from services.gateway.auth import Principal
from services.gateway.commands import CommandHandler, command_route, execute
from services.gateway.problems import problem_responses
from services.gateway.routing import (
    API_PREFIX,
    IDEMPOTENCY_DOC,
    MUTATION_PROBLEMS,
    READ_PROBLEMS,
    Caller,
    Ref,
    api_router,
)
from services.gateway.sample_orders import TestOrderOptions, build_test_order
from services.gateway.state import gateway
from services.gateway.views import render
from services.orders.contracts.schemas import (
    AddNote,
    ChangeCustomer,
    EditNote,
    OrderDetail,
    OrderPage,
    OrderQuery,
    PlaceOrder,
    SetAddress,
    SetCustomerNote,
    SetPaymentMethod,
    Transition,
)

router = api_router()


def order_location(data: dict[str, Any]) -> str | None:
    """Every answer that is an order says where it lives (``Location``)."""
    return f"{API_PREFIX}/orders/{data['id']}" if data.get("id") else None


async def _placed(request: Request, caller: Principal, payload: dict[str, Any], fingerprint_body: Any) -> Response:
    """Place through the batcher (concurrent placements share one RPC call); 201 with the order."""

    async def call(key: str | None) -> Any:
        return await gateway(request).placements.place(payload, caller.actor(), key)

    return await execute(request, caller, fingerprint_body, call, OrderDetail, "orders.place_order", 201,
                         locate=order_location)


@router.post("/orders", status_code=201, response_model=OrderDetail, tags=["orders"],
             responses=MUTATION_PROBLEMS, openapi_extra=IDEMPOTENCY_DOC, summary="Place an order")
async def place_order(request: Request, command: PlaceOrder, caller: Caller) -> Response:
    payload = command.model_dump(mode="json")
    return await _placed(request, caller, payload, payload)


@router.post("/test-orders", status_code=201, response_model=OrderDetail, tags=["orders"],
             responses=MUTATION_PROBLEMS, openapi_extra=IDEMPOTENCY_DOC,
             summary="Place a realistic test order (channel `test`, `test=true`)")
async def place_test_order(
    request: Request, caller: Caller, options: Annotated[TestOrderOptions | None, Body()] = None
) -> Response:
    payload = build_test_order(options).model_dump(mode="json")
    return await _placed(request, caller, payload, options.model_dump(mode="json") if options else None)


@router.get("/orders", response_model=OrderPage, tags=["orders"], responses=READ_PROBLEMS,
            summary="Search, filter and page through orders")
async def list_orders(request: Request, query: Annotated[OrderQuery, Query()]) -> Response:
    result = await gateway(request).rpc.call("orders", "list_orders", query=query.model_dump(mode="json"))
    return render(OrderPage, result, "orders.list_orders")


@router.get("/orders/{ref}", response_model=OrderDetail, tags=["orders"], responses=READ_PROBLEMS,
            summary="One order with items, notes, history and the stages it can move to")
async def get_order(request: Request, ref: Ref) -> Response:
    result = await gateway(request).rpc.call("orders", "get_order", ref=ref)
    return render(OrderDetail, result, "orders.get_order")


def _order_command(method_name: str, summary: str) -> CommandHandler:
    return command_route("orders", method_name, OrderDetail, summary, locate=order_location)


_transition = _order_command("transition", "Move the order to another stage")
_set_address = _order_command("set_address", "Set or correct the shipping address")
_set_payment = _order_command("set_payment_method", "Record how the customer pays")
_set_note = _order_command("set_customer_note", "Record the customer's note (or that they skipped it)")
_change_customer = _order_command("change_customer", "Replace the order's customer")
_add_note = _order_command("add_note", "Add a staff note")


@router.post("/orders/{ref}/transitions", response_model=OrderDetail, tags=["orders"],
             responses=MUTATION_PROBLEMS, openapi_extra=IDEMPOTENCY_DOC, summary="Move the order to another stage")
async def transition(request: Request, ref: Ref, command: Transition, caller: Caller) -> Response:
    return await _transition(request, ref, command, caller)


@router.put("/orders/{ref}/address", response_model=OrderDetail, tags=["orders"],
            responses=MUTATION_PROBLEMS, openapi_extra=IDEMPOTENCY_DOC, summary="Set the shipping address")
async def set_address(request: Request, ref: Ref, command: SetAddress, caller: Caller) -> Response:
    return await _set_address(request, ref, command, caller)


@router.put("/orders/{ref}/payment-method", response_model=OrderDetail, tags=["orders"],
            responses=MUTATION_PROBLEMS, openapi_extra=IDEMPOTENCY_DOC, summary="Record how the customer pays")
async def set_payment_method(request: Request, ref: Ref, command: SetPaymentMethod, caller: Caller) -> Response:
    return await _set_payment(request, ref, command, caller)


@router.put("/orders/{ref}/customer-note", response_model=OrderDetail, tags=["orders"],
            responses=MUTATION_PROBLEMS, openapi_extra=IDEMPOTENCY_DOC,
            summary="Record the customer's note, or that they skipped it")
async def set_customer_note(request: Request, ref: Ref, command: SetCustomerNote, caller: Caller) -> Response:
    return await _set_note(request, ref, command, caller)


@router.put("/orders/{ref}/customer", response_model=OrderDetail, tags=["orders"],
            responses=MUTATION_PROBLEMS, openapi_extra=IDEMPOTENCY_DOC, summary="Replace the order's customer")
async def change_customer(request: Request, ref: Ref, command: ChangeCustomer, caller: Caller) -> Response:
    return await _change_customer(request, ref, command, caller)


@router.post("/orders/{ref}/notes", status_code=200, response_model=OrderDetail, tags=["notes"],
             responses=MUTATION_PROBLEMS, openapi_extra=IDEMPOTENCY_DOC, summary="Add a staff note")
async def add_note(request: Request, ref: Ref, command: AddNote, caller: Caller) -> Response:
    return await _add_note(request, ref, command, caller)


@router.patch("/orders/{ref}/notes/{note_id}", response_model=OrderDetail, tags=["notes"],
              responses=MUTATION_PROBLEMS, openapi_extra=IDEMPOTENCY_DOC, summary="Edit a staff note")
async def edit_note(request: Request, ref: Ref, note_id: UUID, command: EditNote, caller: Caller) -> Response:
    payload = command.model_dump(mode="json")

    async def call(_key: str | None) -> Any:
        return await gateway(request).rpc.call(
            "orders", "edit_note", ref=ref, note_id=str(note_id), command=payload, actor=caller.actor()
        )

    return await execute(request, caller, payload, call, OrderDetail, "orders.edit_note", locate=order_location)


@router.delete("/orders/{ref}/notes/{note_id}", response_model=OrderDetail, tags=["notes"],
               responses=MUTATION_PROBLEMS, openapi_extra=IDEMPOTENCY_DOC, summary="Delete a staff note")
async def delete_note(request: Request, ref: Ref, note_id: UUID, caller: Caller) -> Response:
    async def call(_key: str | None) -> Any:
        return await gateway(request).rpc.call(
            "orders", "delete_note", ref=ref, note_id=str(note_id), actor=caller.actor()
        )

    return await execute(request, caller, None, call, OrderDetail, "orders.delete_note", locate=order_location)


_stage_table: dict[str, Any] | None = None


@router.get("/stages", tags=["orders"], responses=problem_responses(401, 500),
            summary="The stage machine: every stage, the moves allowed from it and the automatic rules")
async def stages() -> dict[str, Any]:
    global _stage_table
    if _stage_table is None:
        from services.orders.contracts.stages import status_machine_table

        _stage_table = status_machine_table()
    return _stage_table


ROUTERS = (router,)
