"""The sandbox messaging provider: an SMS API shaped like Twilio's Messages resource and the WhatsApp Business
Cloud API in one small server, for development, tests and demos (never a real phone).

Its API is published in ``services.notifications.contracts.sandbox``. It behaves like the real providers in the
ways that matter to an integration:

* **sends** are authenticated (SMS: HTTP Basic account SID + auth token, the SID also in the path; WhatsApp:
  Bearer access token) and **idempotent**: a second request with an ``Idempotency-Key`` the provider accepted
  before answers the first message again (``Idempotent-Replayed: true``) and sends nothing; a refused request
  is not remembered (the retry of a refused free text as a template may carry the same key). A send without a
  key is always a new message.
* **receipts** follow each accepted message by webhook, ``OMS_SANDBOX_MESSAGING_RECEIPT_DELAY`` seconds apart:
  SMS sent, delivered (status callback to the message's ``StatusCallback``, else the configured SMS webhook
  URL, form-encoded, ``X-Twilio-Signature``); WhatsApp sent, delivered, read (to the configured WhatsApp
  webhook URL, JSON, ``X-Hub-Signature-256``). With chaos on (``OMS_SANDBOX_MESSAGING_CHAOS``) each receipt
  may come twice and the receipts of a message come in any order. A receiver answering 5xx/429 or not
  answering gets the same webhook again a few times.
* the **24-hour customer-service window** per number: free text to a WhatsApp number that has not written in
  the last 24 hours is refused with error 131047; templates always go. An inbound message (``POST
  /sandbox/inbound``) opens the window and is sent to the webhook like a real customer's message.
* **switches** (no credentials; tests and demos): ``POST /sandbox/outage`` {down} makes every send answer 503;
  ``POST /sandbox/latency`` {seconds} makes sends answer that much later (the message is accepted, and reaches
  the phone, first: a client killed while waiting has sent it); ``POST /sandbox/fail`` {to, code, reason}
  makes that number's next messages accepted and then failed by receipt with this error (``code: null``
  clears it); ``POST /sandbox/receipts`` {message_id, status, repeat} sends one receipt now.
* ``GET /sandbox/messages?to=`` lists what the "phones" received (JSON list, oldest first), each with
  ``requests``: how many send requests its idempotency key made (a replay is not a second message).

Errors: SMS ``{code, message, more_info, status}`` like Twilio; WhatsApp ``{error: {message, type, code,
error_data?}}`` like the Graph API; control endpoints ``{error: {code, message, field?}}``.

Run: ``python -m services.notifications.provider.sandbox`` (settings: ``MessagingSandboxSettings``).
State is in memory; restart = empty provider.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import binascii
import contextlib
import json
import logging
import random
import secrets
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any
from urllib.parse import parse_qsl, urlencode

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from services.notifications.channels.sms import sms_signature
from services.notifications.channels.whatsapp import API_VERSION, wa_number, whatsapp_signature
from services.notifications.contracts.sandbox import (
    CUSTOMER_SERVICE_WINDOW_HOURS,
    SMS_SIGNATURE_HEADER,
    WHATSAPP_REENGAGEMENT_ERROR,
    WHATSAPP_SIGNATURE_HEADER,
)
from shared.logs import quiet_libraries

log = logging.getLogger("oms.sandbox_messaging")

WINDOW = timedelta(hours=CUSTOMER_SERVICE_WINDOW_HOURS)
SMS_STATUSES = ("sent", "delivered", "undelivered", "failed")
WHATSAPP_STATUSES = ("sent", "delivered", "read", "failed")
RANK = {"queued": 0, "accepted": 0, "sent": 1, "delivered": 2, "read": 3, "undelivered": 4, "failed": 4}
DEFAULT_SMS_ERROR = 30008  # "Unknown error"
DEFAULT_WHATSAPP_ERROR = 131026  # "Message undeliverable"
WABA_ID = "sandbox-waba"


def _now() -> datetime:
    return datetime.now(UTC)


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def valid_number(number: str) -> bool:
    """E.164-ish: an optional +, then 7 to 15 digits (spaces, dashes, dots and brackets ignored), no leading 0."""
    compact = "".join(ch for ch in number if ch not in " -.()")
    digits = compact.removeprefix("+")
    return digits.isdigit() and 7 <= len(digits) <= 15 and not digits.startswith("0")


@dataclass
class Delivery:
    message_id: str | None
    attempt: int
    status_code: int | None
    error: str | None


@dataclass
class MessagingState:
    """Everything the provider knows; ``app.state.messaging`` for tests and debugging."""

    sms_account_sid: str
    sms_auth_token: str
    whatsapp_access_token: str
    whatsapp_app_secret: str
    sms_webhook_url: str | None
    whatsapp_webhook_url: str | None
    receipt_delay: float
    chaos: bool
    rng: random.Random
    retry_delays: tuple[float, ...]
    webhook_timeout: float
    messages: dict[str, dict[str, Any]] = field(default_factory=dict)  # id -> record, in arrival order
    idempotency: dict[tuple[str, str], str] = field(default_factory=dict)  # (api, key) -> message id
    windows: dict[str, datetime] = field(default_factory=dict)  # digits -> last inbound message
    failures: dict[str, dict[str, Any]] = field(default_factory=dict)  # digits -> {code, reason}
    deliveries: list[Delivery] = field(default_factory=list)
    down: bool = False
    latency: float = 0.0
    client: httpx.AsyncClient | None = None
    tasks: set[asyncio.Task[None]] = field(default_factory=set)

    # -- webhooks --------------------------------------------------------------------------------------

    async def post(self, message_id: str | None, url: str, body: bytes, headers: dict[str, str]) -> list[Delivery]:
        """Deliver one webhook now; retried on 5xx/429/transport errors (the same body each time)."""
        if self.client is None:
            self.client = httpx.AsyncClient()
        results: list[Delivery] = []
        for attempt, pause in enumerate((0.0, *self.retry_delays), start=1):
            if pause:
                await asyncio.sleep(pause)
            try:
                resp = await self.client.post(url, content=body, headers=headers, timeout=self.webhook_timeout)
            except httpx.TransportError as exc:
                results.append(Delivery(message_id, attempt, None, f"{type(exc).__name__}: {exc}"))
                continue
            results.append(Delivery(message_id, attempt, resp.status_code, None))
            if resp.status_code < 500 and resp.status_code != 429:
                if resp.status_code >= 300:
                    log.warning("webhook to %s refused with HTTP %s; not retrying", url, resp.status_code)
                break
        else:
            log.error("webhook to %s: gave up after %d attempts", url, len(results))
        self.deliveries.extend(results)
        return results

    async def send_receipt(self, record: dict[str, Any], status: str) -> list[Delivery]:
        """Send one receipt of ``record`` now and note it on the record (its status only moves forward)."""
        record["receipts"].append(status)
        if RANK[status] >= RANK[record["status"]]:
            record["status"] = status
        if record["channel"] == "sms":
            return await self._sms_receipt(record, status)
        return await self._whatsapp_receipt(record, status)

    async def _sms_receipt(self, record: dict[str, Any], status: str) -> list[Delivery]:
        url = record["status_callback"] or self.sms_webhook_url
        if not url:
            return []
        params = {
            "AccountSid": self.sms_account_sid,
            "ApiVersion": "2010-04-01",
            "From": record["from"],
            "MessageSid": record["id"],
            "MessageStatus": status,
            "SmsSid": record["id"],
            "SmsStatus": status,
            "To": record["to"],
        }
        if status in ("undelivered", "failed"):
            failure = record.get("failure") or {"code": DEFAULT_SMS_ERROR, "reason": None}
            params["ErrorCode"] = str(failure["code"])
            if failure.get("reason"):
                params["ErrorMessage"] = str(failure["reason"])
        headers = {
            "content-type": "application/x-www-form-urlencoded",
            SMS_SIGNATURE_HEADER: sms_signature(self.sms_auth_token, url, params),
        }
        return await self.post(record["id"], url, urlencode(params).encode(), headers)

    def _whatsapp_envelope(self, phone_number_id: str, value: dict[str, Any]) -> bytes:
        payload = {
            "object": "whatsapp_business_account",
            "entry": [{
                "id": WABA_ID,
                "changes": [{
                    "field": "messages",
                    "value": {
                        "messaging_product": "whatsapp",
                        "metadata": {"display_phone_number": phone_number_id, "phone_number_id": phone_number_id},
                        **value,
                    },
                }],
            }],
        }
        return json.dumps(payload, separators=(",", ":")).encode()

    async def _post_whatsapp(self, message_id: str | None, body: bytes) -> list[Delivery]:
        if not self.whatsapp_webhook_url:
            return []
        headers = {
            "content-type": "application/json",
            WHATSAPP_SIGNATURE_HEADER: whatsapp_signature(self.whatsapp_app_secret, body),
        }
        return await self.post(message_id, self.whatsapp_webhook_url, body, headers)

    async def _whatsapp_receipt(self, record: dict[str, Any], status: str) -> list[Delivery]:
        entry: dict[str, Any] = {
            "id": record["id"],
            "status": status,
            "timestamp": str(int(_now().timestamp())),
            "recipient_id": wa_number(record["to"]),
        }
        if status == "failed":
            failure = record.get("failure") or {"code": DEFAULT_WHATSAPP_ERROR, "reason": "Message undeliverable"}
            entry["errors"] = [{"code": failure["code"], "title": failure.get("reason") or "Message failed"}]
        body = self._whatsapp_envelope(record["phone_number_id"], {"statuses": [entry]})
        return await self._post_whatsapp(record["id"], body)

    async def inbound(self, number: str, text: str, phone_number_id: str) -> tuple[dict[str, Any], list[Delivery]]:
        at = _now()
        self.windows[wa_number(number)] = at
        message = {
            "from": wa_number(number),
            "id": "wamid." + secrets.token_urlsafe(24),
            "timestamp": str(int(at.timestamp())),
            "type": "text",
            "text": {"body": text},
        }
        body = self._whatsapp_envelope(
            phone_number_id,
            {"contacts": [{"profile": {"name": "Sandbox customer"}, "wa_id": message["from"]}], "messages": [message]},
        )
        return message, await self._post_whatsapp(None, body)

    # -- receipts after a send --------------------------------------------------------------------------

    def schedule_receipts(self, record: dict[str, Any], first_delay: float) -> None:
        if record.get("failure"):
            statuses = ["failed"]
        elif record["channel"] == "sms":
            statuses = ["sent", "delivered"]
        else:
            statuses = ["sent", "delivered", "read"]
        if self.chaos:
            statuses = [s for s in statuses for _ in range(self.rng.choice((1, 2)))]
            self.rng.shuffle(statuses)

        async def run() -> None:
            await asyncio.sleep(first_delay)
            for status in statuses:
                await asyncio.sleep(self.receipt_delay)
                try:
                    await self.send_receipt(record, status)
                except Exception:  # noqa: BLE001 - a broken receiver must not kill the sandbox
                    log.exception("receipt %s of %s failed", status, record["id"])

        task = asyncio.get_running_loop().create_task(run())
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def aclose(self) -> None:
        for task in list(self.tasks):
            task.cancel()
        for task in list(self.tasks):
            with contextlib.suppress(BaseException):
                await task
        if self.client is not None:
            await self.client.aclose()
            self.client = None

    # -- messages ----------------------------------------------------------------------------------------

    def record(self, channel: str, key: str | None, **data: Any) -> dict[str, Any]:
        digits = wa_number(data["to"])
        failure = self.failures.get(digits)
        record: dict[str, Any] = {
            "id": data.pop("id"),
            "channel": channel,
            "status": "queued" if channel == "sms" else "accepted",
            "receipts": [],
            "idempotency_key": key,
            "requests": 1,
            "created_at": _iso(_now()),
            "failure": dict(failure) if failure else None,
            **data,
        }
        self.messages[record["id"]] = record
        if key:
            self.idempotency[(channel, key)] = record["id"]
        return record

    def replay(self, channel: str, key: str | None) -> dict[str, Any] | None:
        if not key:
            return None
        message_id = self.idempotency.get((channel, key))
        if message_id is None:
            return None
        record = self.messages[message_id]
        record["requests"] += 1
        return record


def _state(request: Request) -> MessagingState:
    state: MessagingState = request.app.state.messaging
    return state


# -- SMS (Twilio-shaped) -----------------------------------------------------------------------------------


def _sms_error(status: int, code: int, message: str) -> JSONResponse:
    return JSONResponse(
        {"code": code, "message": message, "more_info": f"https://www.twilio.com/docs/errors/{code}", "status": status},
        status_code=status,
    )


def _basic(request: Request) -> tuple[str, str] | None:
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        user, sep, password = base64.b64decode(value, validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return None
    return (user, password) if sep else None


def _sms_view(record: dict[str, Any]) -> dict[str, Any]:
    created = datetime.fromisoformat(record["created_at"].replace("Z", "+00:00"))
    return {
        "sid": record["id"],
        "account_sid": record["account_sid"],
        "to": record["to"],
        "from": record["from"],
        "body": record["body"],
        "status": record["status"],
        "direction": "outbound-api",
        "num_segments": str(max(1, -(-len(record["body"]) // 160))),
        "date_created": format_datetime(created),
        "uri": f"/2010-04-01/Accounts/{record['account_sid']}/Messages/{record['id']}.json",
    }


async def sms_send(request: Request) -> Response:
    st = _state(request)
    sid = request.path_params["account_sid"]
    credentials = _basic(request)
    if credentials != (st.sms_account_sid, st.sms_auth_token) or sid != st.sms_account_sid:
        return _sms_error(401, 20003, "Authentication Error - invalid username or password")
    if st.down:
        return _sms_error(503, 20503, "Service unavailable (sandbox outage)")
    key = request.headers.get("idempotency-key") or None
    params = dict(parse_qsl((await request.body()).decode("utf-8", "replace"), keep_blank_values=True))
    replayed = st.replay("sms", key)
    if replayed is not None:
        return JSONResponse(_sms_view(replayed), status_code=201, headers={"Idempotent-Replayed": "true"})
    to, sender, body = params.get("To", ""), params.get("From", ""), params.get("Body", "")
    if not to:
        return _sms_error(400, 21604, "A 'To' phone number is required.")
    if not valid_number(to):
        return _sms_error(400, 21211, f"The 'To' number {to} is not a valid phone number.")
    if not sender:
        return _sms_error(400, 21603, "A 'From' phone number is required.")
    if not body.strip():
        return _sms_error(400, 21602, "Message body is required.")
    if len(body) > 1600:
        return _sms_error(400, 21617, "The concatenated message body exceeds the 1600 character limit.")
    record = st.record("sms", key, id="SM" + secrets.token_hex(16), to=to, body=body, type="text", template=None,
                       status_callback=params.get("StatusCallback") or None, account_sid=sid, phone_number_id=None,
                       **{"from": sender})
    log.info("SMS %s to %s: %s", record["id"], to, body[:60])
    latency = st.latency
    st.schedule_receipts(record, latency)
    if latency:
        await asyncio.sleep(latency)
    return JSONResponse(_sms_view(record), status_code=201)


# -- WhatsApp (Cloud API) ---------------------------------------------------------------------------------


def _wa_error(status: int, code: int, message: str, details: str | None = None,
              kind: str = "OAuthException") -> JSONResponse:
    error: dict[str, Any] = {"message": message, "type": kind, "code": code, "fbtrace_id": secrets.token_hex(8)}
    if details:
        error["error_data"] = {"messaging_product": "whatsapp", "details": details}
    return JSONResponse({"error": error}, status_code=status)


def _wa_view(record: dict[str, Any]) -> dict[str, Any]:
    return {
        "messaging_product": "whatsapp",
        "contacts": [{"input": record["to"], "wa_id": wa_number(record["to"])}],
        "messages": [{"id": record["id"]}],
    }


def _template(data: dict[str, Any]) -> tuple[dict[str, Any], str] | str:
    """(template record, what the phone shows) or the name of the invalid parameter."""
    template = data.get("template")
    if not isinstance(template, dict) or not isinstance(template.get("name"), str) or not template["name"]:
        return "template.name"
    language = template.get("language")
    if not isinstance(language, dict) or not isinstance(language.get("code"), str) or not language["code"]:
        return "template.language.code"
    params: list[str] = []
    components = template.get("components") or []
    if not isinstance(components, list):
        return "template.components"
    for component in components:
        if not isinstance(component, dict) or not isinstance(component.get("parameters", []), list):
            return "template.components"
        for parameter in component.get("parameters", []):
            if not isinstance(parameter, dict) or not isinstance(parameter.get("text"), str):
                return "template.components.parameters"
            params.append(parameter["text"])
    shown = f"[{template['name']}/{language['code']}] " + " | ".join(params)
    return {"name": template["name"], "language": language["code"], "params": params}, shown.strip()


async def whatsapp_send(request: Request) -> Response:
    st = _state(request)
    if request.headers.get("authorization") != f"Bearer {st.whatsapp_access_token}":
        return _wa_error(401, 190, "Invalid OAuth access token - Cannot parse access token")
    if st.down:
        return _wa_error(503, 2, "Service temporarily unavailable (sandbox outage)")
    try:
        data = json.loads(await request.body() or b"null")
    except ValueError:
        data = None
    if not isinstance(data, dict):
        return _wa_error(400, 100, "Invalid parameter", "the body must be a JSON object")
    if data.get("messaging_product") != "whatsapp":
        return _wa_error(400, 100, "Invalid parameter", "messaging_product must be whatsapp")
    key = request.headers.get("idempotency-key") or None
    replayed = st.replay("whatsapp", key)
    if replayed is not None:
        return JSONResponse(_wa_view(replayed), headers={"Idempotent-Replayed": "true"})
    to = data.get("to")
    if not isinstance(to, str) or not valid_number(to):
        return _wa_error(400, 100, "Invalid parameter", "to must be a phone number in international format")
    kind = data.get("type", "text")
    template: dict[str, Any] | None = None
    if kind == "text":
        text = data.get("text")
        if not isinstance(text, dict) or not isinstance(text.get("body"), str) or not text["body"].strip():
            return _wa_error(400, 100, "Invalid parameter", "text.body is required")
        opened = st.windows.get(wa_number(to))
        if opened is None or _now() - opened > WINDOW:
            return _wa_error(
                400, WHATSAPP_REENGAGEMENT_ERROR, "Re-engagement message",
                f"Message failed to send because more than {CUSTOMER_SERVICE_WINDOW_HOURS} hours have passed since "
                "the customer last replied to this number.",
            )
        shown = text["body"]
    elif kind == "template":
        parsed = _template(data)
        if isinstance(parsed, str):
            return _wa_error(400, 100, "Invalid parameter", f"{parsed} is missing or invalid")
        template, shown = parsed
    else:
        return _wa_error(400, 100, "Invalid parameter", f"the sandbox sends text and template messages, not {kind!r}")
    record = st.record("whatsapp", key, id="wamid." + secrets.token_urlsafe(24), to=to, body=shown, type=kind,
                       template=template, status_callback=None, account_sid=None,
                       phone_number_id=request.path_params["phone_number_id"], **{"from": "whatsapp-business"})
    log.info("WhatsApp %s to %s: %s", record["id"], to, shown[:60])
    latency = st.latency
    st.schedule_receipts(record, latency)
    if latency:
        await asyncio.sleep(latency)
    return JSONResponse(_wa_view(record))


# -- control (tests, demos) ---------------------------------------------------------------------------------


def _control_error(status: int, code: str, message: str, field_name: str | None = None) -> JSONResponse:
    error: dict[str, Any] = {"code": code, "message": message}
    if field_name:
        error["field"] = field_name
    return JSONResponse({"error": error}, status_code=status)


async def _control_body(request: Request) -> dict[str, Any] | None:
    try:
        data = json.loads(await request.body() or b"{}")
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


def _deliveries(deliveries: list[Delivery]) -> list[dict[str, Any]]:
    return [{"attempt": d.attempt, "status_code": d.status_code, "error": d.error} for d in deliveries]


async def outage(request: Request) -> Response:
    data = await _control_body(request)
    if data is None or not isinstance(data.get("down"), bool):
        return _control_error(400, "invalid_request", 'send {"down": true} or {"down": false}', "down")
    _state(request).down = data["down"]
    return JSONResponse({"down": data["down"]})


async def latency(request: Request) -> Response:
    data = await _control_body(request)
    seconds = None if data is None else data.get("seconds")
    if not isinstance(seconds, int | float) or isinstance(seconds, bool) or not 0 <= seconds <= 300:
        return _control_error(400, "invalid_request", "seconds must be a number from 0 to 300", "seconds")
    _state(request).latency = float(seconds)
    return JSONResponse({"seconds": float(seconds)})


async def fail(request: Request) -> Response:
    data = await _control_body(request)
    if data is None or not isinstance(data.get("to"), str) or not valid_number(data["to"]):
        return _control_error(400, "invalid_request", "to must be a phone number", "to")
    st, digits = _state(request), wa_number(data["to"])
    code = data.get("code")
    if code is None:
        st.failures.pop(digits, None)
        return JSONResponse({"to": data["to"], "code": None, "reason": None})
    if not isinstance(code, int | str) or isinstance(code, bool):
        return _control_error(400, "invalid_request", "code must be a provider error code or null", "code")
    reason = data.get("reason")
    if reason is not None and not isinstance(reason, str):
        return _control_error(400, "invalid_request", "reason must be a string", "reason")
    st.failures[digits] = {"code": code, "reason": reason}
    return JSONResponse({"to": data["to"], "code": code, "reason": reason})


async def inbound(request: Request) -> Response:
    data = await _control_body(request)
    if data is None or not isinstance(data.get("from"), str) or not valid_number(data["from"]):
        return _control_error(400, "invalid_request", "from must be a phone number", "from")
    text = data.get("text", "")
    if not isinstance(text, str):
        return _control_error(400, "invalid_request", "text must be a string", "text")
    phone_number_id = data.get("phone_number_id") or "sandbox"
    message, deliveries = await _state(request).inbound(data["from"], text, str(phone_number_id))
    return JSONResponse({"message": message, "webhook_url": _state(request).whatsapp_webhook_url,
                         "deliveries": _deliveries(deliveries)})


async def receipts(request: Request) -> Response:
    st = _state(request)
    data = await _control_body(request)
    if data is None:
        return _control_error(400, "invalid_json", "the body must be a JSON object")
    record = st.messages.get(str(data.get("message_id")))
    if record is None:
        return _control_error(404, "message_not_found", "no message with this id", "message_id")
    allowed = SMS_STATUSES if record["channel"] == "sms" else WHATSAPP_STATUSES
    if data.get("status") not in allowed:
        return _control_error(400, "invalid_status", f"status must be one of {', '.join(allowed)}", "status")
    repeat = data.get("repeat", 1)
    if not isinstance(repeat, int) or isinstance(repeat, bool) or not 1 <= repeat <= 10:
        return _control_error(400, "invalid_request", "repeat must be a whole number from 1 to 10", "repeat")
    deliveries: list[Delivery] = []
    for _ in range(repeat):
        deliveries.extend(await st.send_receipt(record, data["status"]))
    return JSONResponse({"message_id": record["id"], "status": record["status"],
                         "deliveries": _deliveries(deliveries)})


def _public(record: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in record.items() if k not in ("failure", "account_sid")}


async def messages(request: Request) -> Response:
    st = _state(request)
    to = request.query_params.get("to")
    wanted = wa_number(to) if to else None
    return JSONResponse([_public(r) for r in st.messages.values() if wanted is None or wa_number(r["to"]) == wanted])


async def index(request: Request) -> Response:
    st = _state(request)
    return JSONResponse({"name": "sandbox messaging provider", "down": st.down, "latency": st.latency,
                         "chaos": st.chaos, "messages": len(st.messages)})


# -- app -----------------------------------------------------------------------------------------------


def create_app(
    *,
    sms_account_sid: str,
    sms_auth_token: str,
    whatsapp_access_token: str,
    whatsapp_app_secret: str,
    sms_webhook_url: str | None = None,
    whatsapp_webhook_url: str | None = None,
    receipt_delay: float = 0.3,
    chaos: bool = False,
    seed: int | None = None,
    retry_delays: Sequence[float] = (0.5, 1.0, 2.0),
    webhook_timeout: float = 5.0,
) -> Starlette:
    """Build the sandbox messaging provider. Webhook URLs ``None``: receipts are recorded, not sent (SMS: unless
    the message named a ``StatusCallback``)."""
    if not sms_auth_token or not whatsapp_app_secret:
        raise ValueError("the SMS auth token and the WhatsApp app secret must not be empty")
    state = MessagingState(
        sms_account_sid=sms_account_sid,
        sms_auth_token=sms_auth_token,
        whatsapp_access_token=whatsapp_access_token,
        whatsapp_app_secret=whatsapp_app_secret,
        sms_webhook_url=sms_webhook_url,
        whatsapp_webhook_url=whatsapp_webhook_url,
        receipt_delay=receipt_delay,
        chaos=chaos,
        rng=random.Random(seed),
        retry_delays=tuple(retry_delays),
        webhook_timeout=webhook_timeout,
    )

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        state.client = httpx.AsyncClient()
        try:
            yield
        finally:
            await state.aclose()

    routes = [
        Route("/", index, methods=["GET"]),
        Route("/2010-04-01/Accounts/{account_sid}/Messages.json", sms_send, methods=["POST"]),
        Route(f"/{API_VERSION}/{{phone_number_id}}/messages", whatsapp_send, methods=["POST"]),
        Route("/sandbox/outage", outage, methods=["POST"]),
        Route("/sandbox/latency", latency, methods=["POST"]),
        Route("/sandbox/fail", fail, methods=["POST"]),
        Route("/sandbox/inbound", inbound, methods=["POST"]),
        Route("/sandbox/receipts", receipts, methods=["POST"]),
        Route("/sandbox/messages", messages, methods=["GET"]),
    ]
    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.messaging = state
    return app


def main(argv: Sequence[str] | None = None) -> None:
    # With no arguments (``oms run``) it works with the local gateway: ``MessagingSandboxSettings`` give the port,
    # the webhook URLs and the credentials (the development ones only in development).
    from services.notifications.provider.settings import get_messaging_sandbox_settings

    settings = get_messaging_sandbox_settings()
    parser = argparse.ArgumentParser(description="Sandbox messaging provider: SMS and WhatsApp (tests and demos)")
    parser.add_argument("--host", default=settings.sandbox_messaging_host)
    parser.add_argument("--port", type=int, default=settings.sandbox_messaging_port)
    parser.add_argument("--sms-webhook-url", default=settings.sms_webhook_url(), help="empty: do not send")
    parser.add_argument("--whatsapp-webhook-url", default=settings.whatsapp_webhook_url(), help="empty: do not send")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    quiet_libraries(logging.INFO)
    app = create_app(  # the *_value() calls refuse a production run without the secrets
        sms_account_sid=settings.sms_account_sid,
        sms_auth_token=settings.sms_auth_token_value(),
        whatsapp_access_token=settings.whatsapp_access_token_value(),
        whatsapp_app_secret=settings.whatsapp_app_secret_value(),
        sms_webhook_url=args.sms_webhook_url or None,
        whatsapp_webhook_url=args.whatsapp_webhook_url or None,
        receipt_delay=settings.sandbox_messaging_receipt_delay,
        chaos=settings.sandbox_messaging_chaos,
    )
    log.info("sandbox messaging provider on http://%s:%s; SMS callbacks to %s, WhatsApp webhooks to %s%s",
             args.host, args.port, args.sms_webhook_url or "(none)", args.whatsapp_webhook_url or "(none)",
             " (chaos)" if settings.sandbox_messaging_chaos else "")
    import uvicorn

    uvicorn.run(app, host=args.host, port=args.port, log_level="info")


if __name__ == "__main__":
    main()
