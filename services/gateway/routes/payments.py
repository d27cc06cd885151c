"""The payments service over HTTP: an order's payment summary, manual payments, card payment links and
capture, refunds (preview, refund, manual pay-outs) and the sandbox provider's webhook.

Payments know orders by id only: a route given an order number asks orders for the id first. Bodies and
answers are the payments contract's models (``services.payments.contracts``)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Body, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel

from services.gateway.auth import Principal
from services.gateway.commands import execute
from services.gateway.order_refs import CATCH_UP_SECONDS, call_about_order, order_by_ref, order_id_of
from services.gateway.problems import problem_responses
from services.gateway.routing import (
    IDEMPOTENCY_DOC,
    MUTATION_PROBLEMS,
    READ_PROBLEMS,
    Caller,
    Ref,
    api_router,
    public_router,
)
from services.gateway.state import gateway
from services.gateway.views import render
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

public = public_router()
router = api_router()


_payments_order = order_by_ref
_payments_order_id = order_id_of

PAYMENTS_CATCH_UP_SECONDS = CATCH_UP_SECONDS


async def _payments(request: Request, method: str, order_id: str, **kwargs: Any) -> Any:
    """Call payments about an order (``services.gateway.order_refs``: the wait while payments catch up)."""
    return await call_about_order(request, "payments", order_id, method, catch_up=PAYMENTS_CATCH_UP_SECONDS,
                                  order_id=order_id, **kwargs)


async def _payment_command(
    request: Request, caller: Principal, ref: str, method: str, payload: dict[str, Any], model: type[BaseModel]
) -> Response:
    """A state-changing payments call about one order (``command`` + ``actor``), with Idempotency-Key."""
    order_id = await _payments_order_id(request, ref)

    async def call(_key: str | None) -> Any:
        return await _payments(request, method, order_id, command=payload, actor=caller.actor())

    return await execute(request, caller, payload, call, model, f"payments.{method}")


@router.get("/orders/{ref}/payments", response_model=PaymentSummary, tags=["payments"], responses=READ_PROBLEMS,
            summary="The order's payment status, totals, payment attempts and ledger")
async def payment_summary(request: Request, ref: Ref) -> Response:
    order_id = await _payments_order_id(request, ref)
    result = await _payments(request, "summary", order_id)
    return render(PaymentSummary, result, "payments.summary")


@router.post("/orders/{ref}/payments/manual", response_model=PaymentSummary, tags=["payments"],
             responses=MUTATION_PROBLEMS, openapi_extra=IDEMPOTENCY_DOC,
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
             responses=MUTATION_PROBLEMS, openapi_extra=IDEMPOTENCY_DOC,
             summary="Create (or reuse) a card payment link for what is still due")
async def create_payment_link(
    request: Request, ref: Ref, caller: Caller, command: Annotated[CreatePaymentLink | None, Body()] = None
) -> Response:
    payload = (command or CreatePaymentLink()).model_dump(mode="json")
    return await _payment_command(request, caller, ref, "create_payment_link", payload, PaymentLinkView)


@router.post("/orders/{ref}/payments/capture", response_model=PaymentSummary, tags=["payments"],
             responses=MUTATION_PROBLEMS, openapi_extra=IDEMPOTENCY_DOC,
             summary="Capture authorized card money (all, or part: the rest is released)")
async def capture_payment(
    request: Request, ref: Ref, caller: Caller, command: Annotated[CapturePayment | None, Body()] = None
) -> Response:
    payload = (command or CapturePayment()).model_dump(mode="json")
    return await _payment_command(request, caller, ref, "capture_payment", payload, PaymentSummary)


@router.post("/orders/{ref}/refunds/preview", response_model=RefundPreviewView, tags=["payments"],
             responses=READ_PROBLEMS, summary="Exactly what a refund would give back (nothing is changed)")
async def refund_preview(request: Request, ref: Ref, command: RefundCommand) -> Response:
    order_id = await _payments_order_id(request, ref)
    result = await _payments(request, "refund_preview", order_id, command=command.model_dump(mode="json"))
    return render(RefundPreviewView, result, "payments.refund_preview")


@router.post("/orders/{ref}/refunds", response_model=RefundPreviewView, tags=["payments"],
             responses=MUTATION_PROBLEMS, openapi_extra=IDEMPOTENCY_DOC,
             summary="Refund by item quantities, shipping and adjustments (idempotent with Idempotency-Key)")
async def refund(request: Request, ref: Ref, command: RefundCommand, caller: Caller) -> Response:
    payload = command.model_dump(mode="json")
    order_id = await _payments_order_id(request, ref)

    async def call(key: str | None) -> Any:
        return await _payments(request, "refund", order_id, command=payload, actor=caller.actor(),
                               idempotency_key=f"{caller.id}:{key}" if key else None)

    return await execute(request, caller, payload, call, RefundPreviewView, "payments.refund")


@router.get("/payments/manual-refunds", response_model=ManualRefundList, tags=["payments"],
            responses=READ_PROBLEMS, summary="Refunds staff must pay out by hand (cash, transfer, POS), oldest first")
async def manual_refunds(
    request: Request,
    pending: Annotated[bool, Query(description="Only those not marked paid out yet.")] = True,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> Response:
    result = await gateway(request).rpc.call("payments", "manual_refunds", pending=pending, limit=limit)
    return render(ManualRefundList, result, "payments.manual_refunds")


@router.post("/orders/{ref}/refunds/paid-out", response_model=PaymentSummary, tags=["payments"],
             responses=MUTATION_PROBLEMS, openapi_extra=IDEMPOTENCY_DOC,
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
    return render(WebhookAck, result, "payments.handle_webhook")


ROUTERS = (public, router)
