"""The notifications service over HTTP: message templates (list, edit with validation, reset, preview with a
real order), notification settings, customer messages (list, filter, one with its history, resend a failed
one), an order's timeline across services, the staff alerts (a page, and the live stream ``GET /alerts/stream``
as server-sent events) and the messaging providers' public webhooks (SMS status callbacks, WhatsApp
Cloud API webhooks and its subscription handshake).

Notifications know orders by id only: a route given an order number asks orders for the id first (as the
fulfillment routes do). Bodies and answers are the notifications contract's models
(``services.notifications.contracts``); each route makes one RPC call to ``notifications`` (plus the id lookup);
the live stream polls ``alerts_after`` (``services/gateway/sse.py``).
"""

from __future__ import annotations

import hmac
from typing import Annotated, Any
from uuid import UUID

from fastapi import Header, Path, Query, Request
from fastapi.responses import PlainTextResponse, Response, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from services.gateway.commands import execute
from services.gateway.order_refs import CATCH_UP_SECONDS, call_about_order, order_id_of
from services.gateway.problems import problem_response, problem_responses
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
from services.gateway.sse import SSE_HEADERS, AlertPoller, alert_events
from services.gateway.state import gateway
from services.gateway.views import render, view
from services.notifications.contracts.sandbox import (
    SMS_SIGNATURE_HEADER,
    SMS_WEBHOOK_PATH,
    WHATSAPP_SIGNATURE_HEADER,
    WHATSAPP_WEBHOOK_PATH,
)
from services.notifications.contracts.schemas import (
    AlertList,
    MessageList,
    MessageView,
    NotificationSettingsView,
    PreviewRequest,
    PreviewView,
    TemplateIn,
    TemplateList,
    TemplateView,
    Timeline,
    UpdateSettings,
    WebhookAck,
)
from services.notifications.contracts.vocabulary import AlertKind, MessageChannel, MessageStatus, tables
from shared.errors import InvalidRequest, NotFound, field_error, field_errors

public = public_router()
router = api_router()

SERVICE = "notifications"
TAGS: list[Any] = ["notifications"]
ALERT_TAGS: list[Any] = ["alerts"]

KindPath = Annotated[str, Path(min_length=1, max_length=64, description="The notification kind, e.g. `order_placed`"
                                                                         " (`GET /notifications/statuses`).")]
ChannelPath = Annotated[MessageChannel, Path(description="`email`, `sms` or `whatsapp`.")]
LanguagePath = Annotated[str, Path(pattern=r"^[a-z]{2}(-[A-Z]{2})?$", description="Language code, e.g. `en`.")]
MessageId = Annotated[UUID, Path(description="The message's id.")]
SSE_TYPE = {"text/event-stream": {"schema": {"type": "string"}}}


# ------------------------------------------------------------------------------------------- orders
_order_id = order_id_of

NOTIFICATIONS_CATCH_UP_SECONDS = CATCH_UP_SECONDS


async def _about_order(request: Request, order_id: str, method: str, /, **kwargs: Any) -> Any:
    """Call notifications about an order (``services.gateway.order_refs``: the wait while it catches up)."""
    return await call_about_order(request, SERVICE, order_id, method, catch_up=NOTIFICATIONS_CATCH_UP_SECONDS,
                                  **kwargs)


# ------------------------------------------------------------------------------------------- templates
class TemplateBody(BaseModel):
    """A template's editable parts (the path names kind, channel and language; if the body repeats them they
    must agree). Validated as the contract's ``TemplateIn``; the service then checks the syntax and that every
    variable is one the kind offers (an unknown one is a 422 naming it)."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    kind: str | None = None
    channel: MessageChannel | None = None
    language: str | None = None
    subject: str | None = Field(None, max_length=300, description="E-mail subject.")
    text: str = Field(min_length=1, max_length=4000,
                      description="The plain-text e-mail part, the SMS, or the WhatsApp free text.")
    html: str | None = Field(None, max_length=100_000, description="E-mail HTML part.")
    whatsapp_template: str | None = Field(None, max_length=100,
                                          description="Provider-approved template used outside the 24-hour window.")
    whatsapp_params: list[str] = Field(default_factory=list, description="Its parameters, as template expressions.")


def _template_command(kind: str, channel: MessageChannel, language: str, body: TemplateBody) -> dict[str, Any]:
    given = body.model_dump(exclude_unset=True)
    errors = [
        field_error(name, f"the path says {value!r}", "path_mismatch")
        for name, value in (("kind", kind), ("channel", channel.value), ("language", language))
        if given.get(name) is not None and str(given[name]) != value
    ]
    if errors:
        raise InvalidRequest("The body names another template than the path.", errors=errors)
    data = {**given, "kind": kind, "channel": channel.value, "language": language}
    try:
        return TemplateIn.model_validate(data).model_dump(mode="json")
    except ValidationError as exc:
        raise InvalidRequest("The template is invalid.", errors=field_errors(exc)) from None


@router.get("/notifications/templates", response_model=TemplateList, tags=TAGS, responses=READ_PROBLEMS,
            summary="Message templates per kind x channel x language: the stored ones and the shipped defaults")
async def list_templates(
    request: Request,
    kind: Annotated[str | None, Query(max_length=64)] = None,
    channel: MessageChannel | None = None,
    language: Annotated[str | None, Query(pattern=r"^[a-z]{2}(-[A-Z]{2})?$")] = None,
) -> Response:
    result = await gateway(request).rpc.call(SERVICE, "list_templates", kind=kind,
                                             channel=channel.value if channel else None, language=language)
    return render(TemplateList, result, "notifications.list_templates")


@router.get("/notifications/templates/{kind}/{channel}/{language}", response_model=TemplateView, tags=TAGS,
            responses=READ_PROBLEMS, summary="One template (the stored override, else the shipped default)")
async def get_template(request: Request, kind: KindPath, channel: ChannelPath, language: LanguagePath) -> Response:
    result = await gateway(request).rpc.call(SERVICE, "list_templates", kind=kind, channel=channel.value,
                                             language=language)
    page = view(TemplateList, result, "notifications.list_templates")
    found = next((t for t in page["items"]
                  if (t["kind"], t["channel"], t["language"]) == (kind, channel.value, language)), None)
    if found is None:
        raise NotFound(f"There is no {channel.value} template of {kind!r} in {language!r}.",
                       kind=kind, channel=channel.value, language=language)
    return render(TemplateView, found, "notifications.list_templates")


@router.put("/notifications/templates/{kind}/{channel}/{language}", response_model=TemplateView, tags=TAGS,
            responses=MUTATION_PROBLEMS, openapi_extra=IDEMPOTENCY_DOC,
            summary="Save a template (validated now: its syntax, and every variable must be one the kind offers)")
async def save_template(request: Request, kind: KindPath, channel: ChannelPath, language: LanguagePath,
                        body: TemplateBody, caller: Caller) -> Response:
    payload = _template_command(kind, channel, language, body)

    async def call(_key: str | None) -> Any:
        return await gateway(request).rpc.call(SERVICE, "save_template", command=payload, actor=caller.actor())

    return await execute(request, caller, payload, call, TemplateView, "notifications.save_template")


@router.delete("/notifications/templates/{kind}/{channel}/{language}", response_model=TemplateView, tags=TAGS,
               responses=MUTATION_PROBLEMS, openapi_extra=IDEMPOTENCY_DOC,
               summary="Reset a template to the shipped default (answers the default)")
async def reset_template(request: Request, kind: KindPath, channel: ChannelPath, language: LanguagePath,
                         caller: Caller) -> Response:
    payload = {"kind": kind, "channel": channel.value, "language": language}

    async def call(_key: str | None) -> Any:
        return await gateway(request).rpc.call(SERVICE, "reset_template", kind=kind, channel=channel.value,
                                               language=language, actor=caller.actor())

    return await execute(request, caller, payload, call, TemplateView, "notifications.reset_template")


@router.post("/notifications/templates/preview", response_model=PreviewView, tags=TAGS, responses=READ_PROBLEMS,
             summary="Render a template (the stored one, or an unsaved `draft`) with a real order; nothing is sent")
async def preview_template(request: Request, command: PreviewRequest) -> Response:
    payload = command.model_dump(mode="json")
    result = await _about_order(request, payload["order_id"], "preview_template", command=payload)
    return render(PreviewView, result, "notifications.preview_template")


# ------------------------------------------------------------------------------------------- settings
@router.get("/notifications/settings", response_model=NotificationSettingsView, tags=TAGS, responses=READ_PROBLEMS,
            summary="Which events notify the customer on which channels; language, store and test addresses")
async def get_settings(request: Request) -> Response:
    result = await gateway(request).rpc.call(SERVICE, "get_settings")
    return render(NotificationSettingsView, result, "notifications.get_settings")


@router.put("/notifications/settings", response_model=NotificationSettingsView, tags=TAGS,
            responses=MUTATION_PROBLEMS, openapi_extra=IDEMPOTENCY_DOC,
            summary="Change the notification settings (effective for the next event; kinds not named are kept)")
async def update_settings(request: Request, command: UpdateSettings, caller: Caller) -> Response:
    payload = command.model_dump(mode="json", exclude_unset=True)

    async def call(_key: str | None) -> Any:
        return await gateway(request).rpc.call(SERVICE, "update_settings", command=payload, actor=caller.actor())

    return await execute(request, caller, payload, call, NotificationSettingsView, "notifications.update_settings")


# ------------------------------------------------------------------------------------------- messages
def message_location(data: dict[str, Any]) -> str | None:
    return f"{API_PREFIX}/notifications/messages/{data['id']}" if data.get("id") else None


@router.get("/notifications/messages", response_model=MessageList, tags=TAGS, responses=READ_PROBLEMS,
            summary="Customer and staff messages, newest first, by order, status and channel")
async def list_messages(
    request: Request,
    order: Annotated[str | None, Query(min_length=1, max_length=64,
                                       description="Only this order's (id, number or #number).")] = None,
    status: MessageStatus | None = None,
    channel: MessageChannel | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    after: Annotated[str | None, Query(max_length=200, description="`next_after` of the previous page.")] = None,
) -> Response:
    order_id = await _order_id(request, order) if order else None
    result = await gateway(request).rpc.call(
        SERVICE, "list_messages", order_id=order_id, status=status.value if status else None,
        channel=channel.value if channel else None, limit=limit, after=after)
    return render(MessageList, result, "notifications.list_messages")


@router.get("/notifications/messages/{message_id}", response_model=MessageView, tags=TAGS, responses=READ_PROBLEMS,
            summary="One message with its delivery history (every status, receipt and attempt)")
async def get_message(request: Request, message_id: MessageId) -> Response:
    result = await gateway(request).rpc.call(SERVICE, "get_message", message_id=str(message_id))
    return render(MessageView, result, "notifications.get_message")


@router.post("/notifications/messages/{message_id}/resend", response_model=MessageView, tags=TAGS,
             responses=MUTATION_PROBLEMS, openapi_extra=IDEMPOTENCY_DOC,
             summary="Send a failed message again (queued anew; 409 unless it failed)")
async def resend_message(request: Request, message_id: MessageId, caller: Caller) -> Response:
    async def call(_key: str | None) -> Any:
        return await gateway(request).rpc.call(SERVICE, "resend_message", message_id=str(message_id),
                                               actor=caller.actor())

    return await execute(request, caller, {"message_id": str(message_id)}, call, MessageView,
                         "notifications.resend_message", locate=message_location)


@router.get("/orders/{ref}/messages", response_model=MessageList, tags=TAGS, responses=READ_PROBLEMS,
            summary="The messages sent about an order, with their delivery status")
async def order_messages(request: Request, ref: Ref, limit: Annotated[int, Query(ge=1, le=500)] = 50,
                         after: Annotated[str | None, Query(max_length=200)] = None) -> Response:
    order_id = await _order_id(request, ref)
    result = await gateway(request).rpc.call(SERVICE, "list_messages", order_id=order_id, status=None,
                                             channel=None, limit=limit, after=after)
    return render(MessageList, result, "notifications.list_messages")


@router.get("/orders/{ref}/timeline", response_model=Timeline, tags=TAGS, responses=READ_PROBLEMS,
            summary="The order's whole story in order: stages, payments, refunds, shipments, returns, messages "
                    "and their delivery, each with its actor and time")
async def order_timeline(request: Request, ref: Ref) -> Response:
    order_id = await _order_id(request, ref)
    result = await _about_order(request, order_id, "timeline", order_id=order_id)
    return render(Timeline, result, "notifications.timeline")


_tables: dict[str, Any] | None = None


@router.get("/notifications/statuses", tags=TAGS, responses=problem_responses(401, 500),
            summary="Message statuses and their machine, the notification kinds with their template variables, "
                    "the staff alert kinds")
async def notification_statuses() -> dict[str, Any]:
    global _tables
    if _tables is None:
        _tables = tables()
    return _tables


# ------------------------------------------------------------------------------------------- alerts
def _kinds(value: str | None) -> list[str] | None:
    """``?kinds=new_order,payment_update`` as a list (None: every kind); an unknown kind is a 422 naming it."""
    if value is None or not value.strip():
        return None
    kinds = [k.strip() for k in value.split(",") if k.strip()]
    known = {k.value for k in AlertKind}
    unknown = [k for k in kinds if k not in known]
    if unknown:
        raise InvalidRequest(
            f"Unknown alert kind(s): {', '.join(unknown)}; known: {', '.join(sorted(known))}.",
            errors=[field_error("kinds", f"unknown alert kind {k!r}", "unknown_alert_kind", "query") for k in unknown],
        )
    return list(dict.fromkeys(kinds))


def _resume_from(last_event_id: str | None, after: int | None) -> int:
    """Where a stream starts: after ``Last-Event-ID`` (what a reconnecting EventSource sends, so it wins over
    the URL's ``?after=``), else after ``?after=``, else after the newest alert (0 would replay them all)."""
    if last_event_id is not None and last_event_id.strip():
        try:
            value = int(last_event_id.strip())
            if value < 0:
                raise ValueError
            return value
        except ValueError:
            raise InvalidRequest(
                "Last-Event-ID must be the position of an alert (a whole number).",
                errors=[field_error("Last-Event-ID", "not an alert position", "invalid_event_id", "header")],
            ) from None
    return -1 if after is None else after


AfterQuery = Annotated[int | None, Query(ge=0, description="Only alerts with a greater stream position.")]
KindsQuery = Annotated[str | None, Query(max_length=500, description="Comma-separated alert kinds (default: all), "
                                                                      "e.g. `new_order,payment_update`.")]


@router.get("/alerts", response_model=AlertList, tags=ALERT_TAGS, responses=READ_PROBLEMS,
            summary="Staff alerts after a stream position, oldest first (the live stream's pages)")
async def list_alerts(request: Request, after: AfterQuery = None, kinds: KindsQuery = None,
                      limit: Annotated[int, Query(ge=1, le=500)] = 100) -> Response:
    result = await gateway(request).rpc.call(SERVICE, "alerts_after", after_id=after or 0, kinds=_kinds(kinds),
                                             limit=limit)
    return render(AlertList, result, "notifications.alerts_after")


@router.get("/alerts/stream", response_class=StreamingResponse, tags=ALERT_TAGS,
            responses={**READ_PROBLEMS, 200: {"content": SSE_TYPE, "description": "Server-sent events"}},
            summary="Live staff alerts (server-sent events: `id:` the alert's stream position, `event:` kind, "
                    "`data:` the alert); resumes after `Last-Event-ID` without a gap or a repeat")
async def alert_stream(
    request: Request, caller: Caller, after: AfterQuery = None, kinds: KindsQuery = None,
    last_event_id: Annotated[str | None, Header(alias="Last-Event-ID", max_length=40,
                                                description="The last alert received (sent by EventSource on "
                                                            "reconnect); the stream resumes after it.")] = None,
) -> Response:
    del caller  # authenticated like every /api/v1 route
    poller = AlertPoller(gateway(request).rpc, kinds=_kinds(kinds), after=_resume_from(last_event_id, after))
    first = await poller.start()  # the service is asked once before answering: unreachable -> 503, not a stream
    return StreamingResponse(alert_events(request, poller, first), media_type="text/event-stream",
                             headers=SSE_HEADERS)


# ------------------------------------------------------------------------------------------- provider webhooks
_WEBHOOK_HEADERS = (SMS_SIGNATURE_HEADER.lower(), WHATSAPP_SIGNATURE_HEADER.lower(), "content-type")
WEBHOOK_PROBLEMS = problem_responses(400, 404, 422, 500, 502, 503, 504)


async def _provider_webhook(request: Request, provider: str) -> Response:
    body = (await request.body()).decode("utf-8", "replace")
    headers = {k: v for k, v in request.headers.items() if k.lower() in _WEBHOOK_HEADERS}
    result = await gateway(request).rpc.call(SERVICE, "handle_provider_webhook", provider=provider, body=body,
                                             headers=headers, url=str(request.url))
    return render(WebhookAck, result, "notifications.handle_provider_webhook")


@public.post(SMS_WEBHOOK_PATH.removeprefix(API_PREFIX), response_model=WebhookAck, tags=TAGS,
             responses=WEBHOOK_PROBLEMS, openapi_extra={"requestBody": {"content": {
                 "application/x-www-form-urlencoded": {"schema": {"type": "object"}}}}},
             summary="The SMS provider's status callback (form body; authenticated by its signature, not an API key)")
async def sms_webhook(request: Request) -> Response:
    return await _provider_webhook(request, "sms")


@public.post(WHATSAPP_WEBHOOK_PATH.removeprefix(API_PREFIX), response_model=WebhookAck, tags=TAGS,
             responses=WEBHOOK_PROBLEMS, openapi_extra={"requestBody": {"content": {
                 "application/json": {"schema": {"type": "object"}}}}},
             summary="WhatsApp Cloud API webhook: receipts and inbound messages (authenticated by its signature)")
async def whatsapp_webhook(request: Request) -> Response:
    return await _provider_webhook(request, "whatsapp")


@public.get(WHATSAPP_WEBHOOK_PATH.removeprefix(API_PREFIX), response_class=PlainTextResponse, tags=TAGS,
            responses={**problem_responses(403, 422), 200: {"content": {"text/plain": {"schema": {"type": "string"}}},
                                                           "description": "The challenge, echoed"}},
            summary="WhatsApp's subscription handshake: echoes `hub.challenge` when `hub.verify_token` is "
                    "OMS_WHATSAPP_VERIFY_TOKEN")
async def whatsapp_verify(
    request: Request,
    mode: Annotated[str, Query(alias="hub.mode", max_length=40)],
    token: Annotated[str, Query(alias="hub.verify_token", max_length=500)],
    challenge: Annotated[str, Query(alias="hub.challenge", max_length=500)],
) -> Response:
    expected = gateway(request).settings.whatsapp_verify_token_value()
    if mode != "subscribe" or expected is None or not hmac.compare_digest(token.encode(), expected.encode()):
        return problem_response(403, "Forbidden", "The verify token does not match OMS_WHATSAPP_VERIFY_TOKEN.",
                                slug="forbidden", instance=request.url.path)
    return PlainTextResponse(challenge)


ROUTERS = (public, router)
