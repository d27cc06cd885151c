"""The sandbox carrier: a small shipping carrier for development, tests, demos and benchmarks (never real parcels).

Its API is published in ``services.fulfillment.contracts.sandbox``. It behaves like a carrier in the ways that
matter to an integration:

* **rates** for three services (ground, express, overnight), priced by billable weight (the larger of the real
  and the volumetric weight, L x W x H / 5000, per started kg), domestic or international, and options
  (signature confirmation, insurance, dangerous goods: ground only; overnight only up to 30 kg a parcel), with
  an estimated delivery date counted in working days from the drop-off date. Rates expire after 24 hours.
* **labels** bought from a rate, with a tracking number and a 4x6 in PDF (WeasyPrint) showing carrier, service,
  tracking number, shipper and recipient. ``POST /v1/labels`` needs an ``Idempotency-Key``: the same key and
  body answer the first label again (``Idempotent-Replayed: true``), the same key with another body is a 422;
  a rate is bought once (another key for the same rate: 409 ``rate_already_purchased``).
* **void** until the parcel is in transit (``VOIDABLE_TRACKING``); then 409 ``label_in_transit``. Voiding a
  voided label answers ``voided: true`` again.
* **tracking** per label: ``GET /v1/tracking/{tracking_number}`` and a human page at ``/track/{tracking_number}``.
  The current status is the one of the latest event by ``occurred_at`` (a late event is recorded but does not
  move it back).
* **control** (no API key; tests and demos): ``POST /v1/sandbox/tracking/{tracking_number}`` sends a signed
  ``tracking.updated`` webhook now, before answering (``repeat`` copies under the same event id; an
  ``occurred_at`` in the past makes a late, out-of-order update) and answers the event and each delivery's HTTP
  status; a failing receiver (5xx, 429, unreachable) is retried a few times under the same event id.
  ``POST /v1/sandbox/outage`` {down: true} makes every API call answer 503 until {down: false}.
  Nothing else sends webhooks: buying or voiding a label does not (the caller has the answer already).

Errors are JSON ``{"error": {"code", "message", "field"?}}``.

Run: ``python -m services.fulfillment.carrier.sandbox`` (settings: ``CarrierSandboxSettings``, ``OMS_*``).
State is in memory; restart = empty carrier.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import html
import json
import logging
import math
import random
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from services.fulfillment.carrier.adapter import sign_webhook
from services.fulfillment.contracts.sandbox import (
    CARRIER_NAME,
    PACKAGE_PRESETS,
    SERVICES,
    SIGNATURE_HEADER,
    TRACKING_STATUSES,
    VOIDABLE_TRACKING,
)
from shared.logs import quiet_libraries
from shared.money import MoneyError, minor_unit, normalize_currency, parse_amount, quantize

log = logging.getLogger("oms.sandbox_carrier")

Result = tuple[int, dict[str, Any]]
Handler = Callable[[Request, dict[str, Any]], Awaitable[Result]]

RATE_TTL = timedelta(hours=24)
MAX_PARCEL_GRAMS = 70_000
OVERNIGHT_MAX_GRAMS = 30_000


@dataclass(frozen=True)
class Tariff:
    base: Decimal  # first kg, domestic, in a 2-decimal currency
    per_kg: Decimal  # each further started kg
    transit_days: int
    international_days: int


TARIFFS: dict[str, Tariff] = {
    "ground": Tariff(Decimal("6.00"), Decimal("1.20"), 4, 3),
    "express": Tariff(Decimal("14.00"), Decimal("2.80"), 2, 1),
    "overnight": Tariff(Decimal("29.00"), Decimal("4.50"), 1, 1),
}
SIGNATURE_FEE = Decimal("3.00")
DANGEROUS_GOODS_FEE = Decimal("35.00")  # per parcel
INSURANCE_RATE = Decimal("0.01")
INSURANCE_MINIMUM = Decimal("2.00")
INTERNATIONAL_FACTOR = Decimal(2)

DESCRIPTIONS: dict[str, str] = {
    "label_created": "Shipping label created",
    "picked_up": "Picked up by the carrier",
    "in_transit": "In transit",
    "out_for_delivery": "Out for delivery",
    "delivered": "Delivered",
    "failure": "Delivery attempt failed",
    "returned_to_sender": "Returned to sender",
    "voided": "Label voided",
}


def _new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(12)}"


def _error(status: int, code: str, message: str, field: str | None = None) -> Result:
    error: dict[str, Any] = {"code": code, "message": message}
    if field:
        error["field"] = field
    return status, {"error": error}


def _now() -> datetime:
    return datetime.now(UTC)


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def add_working_days(start: date, days: int) -> date:
    """``start`` plus ``days`` working days (Monday to Friday)."""
    day = start
    while days > 0:
        day += timedelta(days=1)
        if day.weekday() < 5:
            days -= 1
    return day


@dataclass
class Delivery:
    event_id: str
    attempt: int
    status_code: int | None
    error: str | None


@dataclass
class CarrierState:
    """Everything the carrier knows; ``app.state.carrier`` for tests and debugging."""

    webhook_url: str | None
    webhook_secret: str
    api_key: str | None
    retry_delays: tuple[float, ...]
    webhook_timeout: float
    rng: random.Random
    rates: dict[str, dict[str, Any]] = field(default_factory=dict)
    labels: dict[str, dict[str, Any]] = field(default_factory=dict)
    by_tracking: dict[str, str] = field(default_factory=dict)
    idempotency: dict[str, tuple[str, int, dict[str, Any]]] = field(default_factory=dict)
    pdfs: dict[str, bytes] = field(default_factory=dict)
    deliveries: list[Delivery] = field(default_factory=list)
    down: bool = False
    client: httpx.AsyncClient | None = None

    def tracking_number(self) -> str:
        while True:
            number = "SBX" + "".join(str(self.rng.randrange(10)) for _ in range(12))
            if number not in self.by_tracking:
                return number

    # -- webhooks --------------------------------------------------------------------------------------

    async def send(self, event: dict[str, Any]) -> list[Delivery]:
        """Deliver one webhook now (freshly signed at each attempt); retried on 5xx/429/transport errors."""
        if not self.webhook_url:
            return []
        if self.client is None:
            self.client = httpx.AsyncClient()
        body = json.dumps(event, separators=(",", ":")).encode()
        results: list[Delivery] = []
        for attempt, pause in enumerate((0.0, *self.retry_delays), start=1):
            if pause:
                await asyncio.sleep(pause)
            signed = sign_webhook(self.webhook_secret, body)
            headers = {"content-type": "application/json", SIGNATURE_HEADER: signed}
            try:
                resp = await self.client.post(
                    self.webhook_url, content=body, headers=headers, timeout=self.webhook_timeout
                )
            except httpx.TransportError as exc:
                results.append(Delivery(event["id"], attempt, None, f"{type(exc).__name__}: {exc}"))
                continue
            results.append(Delivery(event["id"], attempt, resp.status_code, None))
            if resp.status_code < 500 and resp.status_code != 429:
                if resp.status_code >= 300:
                    log.warning("webhook %s refused with HTTP %s; not retrying", event["id"], resp.status_code)
                break
        else:
            log.error("webhook %s: gave up after %d attempts", event["id"], len(results))
        self.deliveries.extend(results)
        return results

    async def aclose(self) -> None:
        if self.client is not None:
            await self.client.aclose()
            self.client = None


def _state(request: Request) -> CarrierState:
    state: CarrierState = request.app.state.carrier
    return state


def _fingerprint(request: Request, body: bytes) -> str:
    try:
        canonical = json.dumps(json.loads(body or b"{}"), sort_keys=True)
    except ValueError:
        canonical = body.decode("utf-8", "replace")
    return hashlib.sha256(f"{request.method} {request.url.path} {canonical}".encode()).hexdigest()


def _json_response(result: Result, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(result[1], status_code=result[0], headers=headers)


def _api(handler: Handler, *, idempotency: str = "none") -> Callable[[Request], Awaitable[Response]]:
    """Wrap an API handler with the API key check, the outage switch, JSON parsing and idempotency
    (``required``: the ``Idempotency-Key`` must be sent; ``optional``: honoured when sent)."""

    async def endpoint(request: Request) -> Response:
        st = _state(request)
        if st.api_key and request.headers.get("authorization") != f"Bearer {st.api_key}":
            return _json_response(_error(401, "unauthorized", "missing or invalid API key (Authorization: Bearer)"))
        if st.down:
            return _json_response(
                _error(503, "service_unavailable", "the carrier is down (sandbox outage)"), {"Retry-After": "1"}
            )
        body = await request.body()
        key = request.headers.get("idempotency-key") if idempotency != "none" else None
        if idempotency == "required" and not key:
            return _json_response(_error(400, "idempotency_key_required", "send an Idempotency-Key header"))
        fingerprint = _fingerprint(request, body)
        if key:
            stored = st.idempotency.get(key)
            if stored is not None:
                if stored[0] != fingerprint:
                    return _json_response(
                        _error(422, "idempotency_key_reused", "this Idempotency-Key was used with another request")
                    )
                return _json_response((stored[1], stored[2]), {"Idempotent-Replayed": "true"})
        try:
            data = json.loads(body) if body else {}
        except ValueError:
            data = None
        if not isinstance(data, dict):
            result = _error(400, "invalid_json", "the body must be a JSON object")
        else:
            result = await handler(request, data)
        if key and result[0] < 500:
            st.idempotency[key] = (fingerprint, result[0], result[1])
        return _json_response(result)

    return endpoint


# -- rates ---------------------------------------------------------------------------------------------


class Invalid(Exception):
    def __init__(self, field: str, message: str, code: str = "invalid_request") -> None:
        super().__init__(message)
        self.field = field
        self.code = code


def _party(data: dict[str, Any], name: str) -> dict[str, Any]:
    party = data.get(name)
    if not isinstance(party, dict) or not isinstance(party.get("name"), str) or not party["name"].strip():
        raise Invalid(name, f"{name} must be an object with a name and an address")
    address = party.get("address")
    if not isinstance(address, dict):
        raise Invalid(f"{name}.address", f"{name}.address is required")
    country = address.get("country")
    if not isinstance(country, str) or len(country.strip()) != 2 or not country.strip().isalpha():
        raise Invalid(f"{name}.address.country", "country must be a 2-letter ISO 3166 code")
    for part in ("line1", "city"):
        if not isinstance(address.get(part), str) or not address[part].strip():
            raise Invalid(f"{name}.address.{part}", f"{name}.address.{part} is required")
    return party


def _billable_grams(package: Any, index: int) -> int:
    where = f"packages[{index}]"
    if not isinstance(package, dict):
        raise Invalid(where, "each package must be an object")
    weight = package.get("weight_grams")
    if not isinstance(weight, int) or isinstance(weight, bool) or weight < 1:
        raise Invalid(f"{where}.weight_grams", "weight_grams must be a whole number of grams, at least 1")
    if weight > MAX_PARCEL_GRAMS:
        raise Invalid(f"{where}.weight_grams", f"a parcel weighs at most {MAX_PARCEL_GRAMS} g", "package_too_heavy")
    preset = package.get("preset")
    if preset is not None:
        if preset not in PACKAGE_PRESETS:
            raise Invalid(f"{where}.preset", f"unknown preset {preset!r}; known: {', '.join(PACKAGE_PRESETS)}")
        dims: Sequence[Any] = PACKAGE_PRESETS[preset]
    else:
        dims = [package.get(k) for k in ("length_cm", "width_cm", "height_cm")]
        if not all(isinstance(d, int) and not isinstance(d, bool) and 1 <= d <= 500 for d in dims):
            raise Invalid(where, "give a preset or length_cm, width_cm and height_cm (whole cm, 1 to 500)")
    volumetric = math.prod(int(d) for d in dims) * 1000 // 5000  # grams
    return max(weight, volumetric)


def _money(data: dict[str, Any], name: str, currency: str) -> Decimal | None:
    raw = data.get(name)
    if raw is None:
        return None
    if not isinstance(raw, str):
        raise Invalid(name, f'{name} must be a decimal string, e.g. "120.00"')
    try:
        amount = parse_amount(raw, currency, field=name)
    except (MoneyError, TypeError) as exc:
        raise Invalid(name, str(exc)) from None
    if amount < 0:
        raise Invalid(name, f"{name} must not be negative")
    return amount


def quote(data: dict[str, Any], today: date) -> tuple[str, list[dict[str, Any]], dict[str, Any]]:
    """Validate a rate request and price it: (currency, [{service, amount, transit_days, estimated_delivery}],
    the normalized request). Raises ``Invalid``."""
    try:
        currency = normalize_currency(data.get("currency"))
    except MoneyError as exc:
        raise Invalid("currency", str(exc)) from None
    shipper, recipient = _party(data, "shipper"), _party(data, "recipient")
    packages = data.get("packages")
    if not isinstance(packages, list) or not 1 <= len(packages) <= 20:
        raise Invalid("packages", "packages must be a list of 1 to 20 parcels")
    grams = [_billable_grams(p, i) for i, p in enumerate(packages)]
    insurance = _money(data, "insurance", currency)
    declared_value = _money(data, "declared_value", currency)
    if insurance is not None and declared_value is not None and insurance > declared_value:
        raise Invalid("insurance", "insurance cannot exceed the declared value")
    drop_off = today
    if data.get("drop_off_date") is not None:
        try:
            drop_off = date.fromisoformat(str(data["drop_off_date"]))
        except ValueError:
            raise Invalid("drop_off_date", "drop_off_date must be a date, YYYY-MM-DD") from None
        if drop_off < today:
            raise Invalid("drop_off_date", "drop_off_date cannot be in the past")
    flags = {k: data.get(k, False) for k in ("signature_confirmation", "dangerous_goods")}
    for name, value in flags.items():
        if not isinstance(value, bool):
            raise Invalid(name, f"{name} must be true or false")
    international = shipper["address"]["country"].strip().upper() != recipient["address"]["country"].strip().upper()
    scale = Decimal(10) ** (2 - minor_unit(currency))  # 6.00 EUR is 600 JPY
    quotes = []
    for service, tariff in TARIFFS.items():
        if flags["dangerous_goods"] and service != "ground":
            continue  # dangerous goods do not fly
        if service == "overnight" and max(grams) > OVERNIGHT_MAX_GRAMS:
            continue
        price = sum((tariff.base + tariff.per_kg * (math.ceil(g / 1000) - 1) for g in grams), Decimal(0))
        if international:
            price *= INTERNATIONAL_FACTOR
        if flags["signature_confirmation"]:
            price += SIGNATURE_FEE
        if flags["dangerous_goods"]:
            price += DANGEROUS_GOODS_FEE * len(grams)
        amount = quantize(price * scale, currency)
        if insurance:
            amount += max(quantize(insurance * INSURANCE_RATE, currency), quantize(INSURANCE_MINIMUM * scale, currency))
        days = tariff.transit_days + (tariff.international_days if international else 0)
        quotes.append(
            {
                "service": service,
                "amount": amount,
                "transit_days": days,
                "estimated_delivery": add_working_days(drop_off, days),
            }
        )
    normalized = {
        "shipper": shipper,
        "recipient": recipient,
        "packages": packages,
        "billable_grams": grams,
        "international": international,
        **flags,
    }
    return currency, quotes, normalized


async def create_rates(request: Request, data: dict[str, Any]) -> Result:
    st = _state(request)
    try:
        currency, quotes, normalized = quote(data, _now().date())
    except Invalid as exc:
        return _error(400, exc.code, str(exc), exc.field)
    if not quotes:
        return _error(422, "no_service", "no service carries this shipment (weight or dangerous goods)")
    expires_at = _now() + RATE_TTL
    rates = []
    for q in quotes:
        rate = {
            "rate_id": _new_id("rate"),
            "carrier": CARRIER_NAME,
            "service": q["service"],
            "amount": str(q["amount"]),
            "currency": currency,
            "estimated_delivery": q["estimated_delivery"].isoformat(),
            "transit_days": q["transit_days"],
        }
        st.rates[rate["rate_id"]] = {**rate, "request": normalized, "expires_at": expires_at, "label_id": None}
        rates.append(rate)
    return 200, {"rates": rates, "expires_at": _iso(expires_at)}


# -- labels --------------------------------------------------------------------------------------------


def _event(
    label: dict[str, Any], status: str, description: str | None, location: str | None, at: datetime
) -> dict[str, Any]:
    return {
        "id": _new_id("evt"),
        "type": "tracking.updated",
        "tracking_number": label["tracking_number"],
        "label_id": label["label_id"],
        "status": status,
        "description": description or DESCRIPTIONS[status],
        "location": location,
        "occurred_at": _iso(at),
    }


def _record(label: dict[str, Any], event: dict[str, Any]) -> None:
    """Add a tracking event; the label's status is the latest event's by ``occurred_at`` (ties: the later one)."""
    label["events"].append(event)
    latest = max(enumerate(label["events"]), key=lambda ie: (ie[1]["occurred_at"], ie[0]))[1]
    label["status"] = latest["status"]


def _label_view(label: dict[str, Any]) -> dict[str, Any]:
    keys = ("label_id", "tracking_number", "tracking_url", "carrier", "service", "amount", "currency", "label_url",
            "status", "reference")
    return {k: label[k] for k in keys}


async def buy_label(request: Request, data: dict[str, Any]) -> Result:
    st = _state(request)
    rate_id, reference = data.get("rate_id"), data.get("reference")
    if not isinstance(rate_id, str) or not rate_id:
        return _error(400, "invalid_request", "rate_id is required", "rate_id")
    if reference is not None and not isinstance(reference, str):
        return _error(400, "invalid_request", "reference must be a string", "reference")
    rate = st.rates.get(rate_id)
    if rate is None:
        return _error(404, "rate_not_found", f"no rate {rate_id}", "rate_id")
    if rate["label_id"] is not None:
        return _error(409, "rate_already_purchased", f"rate {rate_id} was bought already (label {rate['label_id']})")
    if _now() > rate["expires_at"]:
        return _error(410, "rate_expired", "this rate expired; ask for rates again", "rate_id")
    base = str(request.base_url).rstrip("/")
    label_id = _new_id("lbl")
    tracking_number = st.tracking_number()
    label = {
        "label_id": label_id,
        "tracking_number": tracking_number,
        "tracking_url": f"{base}/track/{tracking_number}",
        "carrier": rate["carrier"],
        "service": rate["service"],
        "amount": rate["amount"],
        "currency": rate["currency"],
        "label_url": f"{base}/v1/labels/{label_id}/pdf",
        "status": "label_created",
        "reference": reference,
        "request": rate["request"],
        "estimated_delivery": rate["estimated_delivery"],
        "created_at": _iso(_now()),
        "events": [],
    }
    _record(label, _event(label, "label_created", None, None, _now()))
    rate["label_id"] = label_id
    st.labels[label_id] = label
    st.by_tracking[tracking_number] = label_id
    return 200, _label_view(label)


async def void_label(request: Request, data: dict[str, Any]) -> Result:
    st = _state(request)
    label = st.labels.get(request.path_params["label_id"])
    if label is None:
        return _error(404, "label_not_found", "no such label")
    if label["status"] == "voided":
        return 200, {"label_id": label["label_id"], "voided": True}
    if label["status"] not in VOIDABLE_TRACKING:
        return _error(409, "label_in_transit", f"the parcel is {label['status']}: the label can no longer be voided")
    _record(label, _event(label, "voided", None, None, _now()))
    return 200, {"label_id": label["label_id"], "voided": True}


def _tracking_view(label: dict[str, Any]) -> dict[str, Any]:
    return {
        "tracking_number": label["tracking_number"],
        "label_id": label["label_id"],
        "status": label["status"],
        "estimated_delivery": label["estimated_delivery"],
        "events": list(label["events"]),
    }


async def get_tracking(request: Request, data: dict[str, Any]) -> Result:
    st = _state(request)
    label_id = st.by_tracking.get(request.path_params["tracking_number"])
    if label_id is None:
        return _error(404, "tracking_not_found", "no parcel with this tracking number")
    return 200, _tracking_view(st.labels[label_id])


# -- label PDF -----------------------------------------------------------------------------------------

_LABEL_HTML = """<!doctype html><html><head><meta charset="utf-8"><style>
@page {{ size: 4in 6in; margin: 0.2in; }}
body {{ font-family: "DejaVu Sans", sans-serif; font-size: 10pt; margin: 0; }}
.box {{ border: 2px solid #000; padding: 6pt; margin-bottom: 6pt; }}
h1 {{ font-size: 16pt; margin: 0; }} .service {{ font-size: 20pt; font-weight: bold; text-transform: uppercase; }}
.to {{ font-size: 13pt; }} .tn {{ font-family: "DejaVu Sans Mono", monospace; font-size: 15pt; font-weight: bold; }}
.bars {{ height: 48pt; background: repeating-linear-gradient(90deg, #000 0 2pt, #fff 2pt 3pt, #000 3pt 4pt,
  #fff 4pt 7pt); margin: 4pt 0; }}
small {{ color: #444; }}
</style></head><body>
<div class="box"><h1>{carrier}</h1><div class="service">{service}</div><small>{service_name}</small></div>
<div class="box"><small>FROM</small><br>{shipper}</div>
<div class="box to"><small>SHIP TO</small><br>{recipient}</div>
<div class="box"><small>TRACKING NUMBER</small><div class="bars"></div><div class="tn">{tracking_number}</div></div>
<div><small>{parcels} parcel(s), billable {kilos} kg{options} &middot; ref {reference} &middot;
estimated delivery {estimated_delivery}</small></div>
<p><small>SANDBOX LABEL: NOT VALID FOR SHIPPING</small></p>
</body></html>"""


def _party_html(party: dict[str, Any]) -> str:
    address = party.get("address") or {}
    city_line = " ".join(str(address[k]) for k in ("postal_code", "city") if address.get(k))
    if address.get("region"):
        city_line += f", {address['region']}"
    lines = [party.get("name"), party.get("company"), address.get("line1"), address.get("line2"), city_line,
             str(address.get("country", "")).upper(), party.get("phone")]
    return "<br>".join(html.escape(str(line)) for line in lines if line)


def label_html(label: dict[str, Any]) -> str:
    req = label["request"]
    options = "".join(
        text for flag, text in (("signature_confirmation", ", signature required"),
                                ("dangerous_goods", ", DANGEROUS GOODS")) if req.get(flag)
    )
    return _LABEL_HTML.format(
        carrier=html.escape(label["carrier"]),
        service=html.escape(label["service"]),
        service_name=html.escape(SERVICES.get(label["service"], label["service"])),
        shipper=_party_html(req["shipper"]),
        recipient=_party_html(req["recipient"]),
        tracking_number=html.escape(label["tracking_number"]),
        parcels=len(req["billable_grams"]),
        kilos=f"{sum(req['billable_grams']) / 1000:.1f}",
        options=options,
        reference=html.escape(label["reference"] or "-"),
        estimated_delivery=html.escape(label["estimated_delivery"]),
    )


def render_label_pdf(label: dict[str, Any]) -> bytes:
    from weasyprint import HTML  # imported on first use: it is slow to import and only labels need it

    pdf: bytes = HTML(string=label_html(label)).write_pdf()
    return pdf


async def label_pdf(request: Request) -> Response:
    st = _state(request)
    if st.api_key and request.headers.get("authorization") != f"Bearer {st.api_key}":
        return _json_response(_error(401, "unauthorized", "missing or invalid API key (Authorization: Bearer)"))
    if st.down:
        return _json_response(_error(503, "service_unavailable", "the carrier is down (sandbox outage)"),
                              {"Retry-After": "1"})
    label = st.labels.get(request.path_params["label_id"])
    if label is None:
        return _json_response(_error(404, "label_not_found", "no such label"))
    pdf = st.pdfs.get(label["label_id"])
    if pdf is None:
        pdf = await run_in_threadpool(render_label_pdf, label)  # rendering takes a while: not on the event loop
        st.pdfs[label["label_id"]] = pdf
    return Response(pdf, media_type="application/pdf",
                    headers={"Content-Disposition": f'inline; filename="{label["tracking_number"]}.pdf"'})


# -- control (tests, demos) ------------------------------------------------------------------------------


async def _control_body(request: Request) -> dict[str, Any] | None:
    try:
        data = json.loads(await request.body() or b"{}")
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


async def send_tracking(request: Request) -> Response:
    """Record a tracking event for a parcel and send its signed webhook now, ``repeat`` times."""
    st = _state(request)
    label_id = st.by_tracking.get(request.path_params["tracking_number"])
    if label_id is None:
        return _json_response(_error(404, "tracking_not_found", "no parcel with this tracking number"))
    data = await _control_body(request)
    if data is None:
        return _json_response(_error(400, "invalid_json", "the body must be a JSON object"))
    status = data.get("status")
    if status not in TRACKING_STATUSES:
        return _json_response(
            _error(400, "invalid_status", f"status must be one of {', '.join(TRACKING_STATUSES)}", "status")
        )
    repeat = data.get("repeat", 1)
    if not isinstance(repeat, int) or isinstance(repeat, bool) or not 1 <= repeat <= 10:
        return _json_response(_error(400, "invalid_request", "repeat must be a whole number from 1 to 10", "repeat"))
    occurred_at = _now()
    if data.get("occurred_at") is not None:
        try:
            occurred_at = datetime.fromisoformat(str(data["occurred_at"]).replace("Z", "+00:00"))
        except ValueError:
            return _json_response(_error(400, "invalid_request", "occurred_at must be an ISO 8601 time", "occurred_at"))
        if occurred_at.tzinfo is None:
            occurred_at = occurred_at.replace(tzinfo=UTC)
    for name in ("description", "location"):
        if data.get(name) is not None and not isinstance(data[name], str):
            return _json_response(_error(400, "invalid_request", f"{name} must be a string", name))
    label = st.labels[label_id]
    event = _event(label, status, data.get("description"), data.get("location"), occurred_at)
    _record(label, event)
    deliveries: list[Delivery] = []
    for _ in range(repeat):
        deliveries.extend(await st.send(event))
    return JSONResponse(
        {
            "event": event,
            "status": label["status"],
            "webhook_url": st.webhook_url,
            "deliveries": [
                {"attempt": d.attempt, "status_code": d.status_code, "error": d.error} for d in deliveries
            ],
        }
    )


async def outage(request: Request) -> Response:
    data = await _control_body(request)
    if data is None or not isinstance(data.get("down"), bool):
        return _json_response(_error(400, "invalid_request", 'send {"down": true} or {"down": false}', "down"))
    _state(request).down = data["down"]
    return JSONResponse({"down": data["down"]})


async def tracking_page(request: Request) -> Response:
    st = _state(request)
    label_id = st.by_tracking.get(request.path_params["tracking_number"])
    if label_id is None:
        return HTMLResponse("<h1>Unknown tracking number</h1>", status_code=404)
    label = st.labels[label_id]
    rows = "".join(
        f"<tr><td>{html.escape(e['occurred_at'])}</td><td>{html.escape(e['description'] or '')}</td>"
        f"<td>{html.escape(e['location'] or '')}</td></tr>"
        for e in sorted(label["events"], key=lambda e: e["occurred_at"], reverse=True)
    )
    return HTMLResponse(
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(label['tracking_number'])}</title>"
        "</head><body style='font-family:sans-serif;max-width:40rem;margin:2rem auto'>"
        f"<h1>{html.escape(CARRIER_NAME)}: {html.escape(label['tracking_number'])}</h1>"
        f"<p>Status: <b>{html.escape(DESCRIPTIONS[label['status']])}</b>. Estimated delivery "
        f"{html.escape(label['estimated_delivery'])}.</p><table>{rows}</table></body></html>"
    )


# -- app -----------------------------------------------------------------------------------------------


def create_app(
    webhook_url: str | None,
    webhook_secret: str,
    api_key: str | None = None,
    *,
    retry_delays: Sequence[float] = (0.2, 0.5, 1.0),
    webhook_timeout: float = 5.0,
    seed: int | None = None,
) -> Starlette:
    """Build the sandbox carrier app. ``api_key``: what callers must send (none required if unset);
    ``retry_delays``: pauses between webhook delivery attempts; ``seed`` makes tracking numbers repeatable."""
    if not webhook_secret:
        raise ValueError("the webhook secret must not be empty")
    state = CarrierState(
        webhook_url=webhook_url,
        webhook_secret=webhook_secret,
        api_key=api_key,
        retry_delays=tuple(retry_delays),
        webhook_timeout=webhook_timeout,
        rng=random.Random(seed),
    )

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        state.client = httpx.AsyncClient()
        try:
            yield
        finally:
            await state.aclose()

    routes = [
        Route("/v1/rates", _api(create_rates), methods=["POST"]),
        Route("/v1/labels", _api(buy_label, idempotency="required"), methods=["POST"]),
        Route("/v1/labels/{label_id}/pdf", label_pdf, methods=["GET"]),
        Route("/v1/labels/{label_id}/void", _api(void_label, idempotency="optional"), methods=["POST"]),
        Route("/v1/tracking/{tracking_number}", _api(get_tracking), methods=["GET"]),
        Route("/v1/sandbox/tracking/{tracking_number}", send_tracking, methods=["POST"]),
        Route("/v1/sandbox/outage", outage, methods=["POST"]),
        Route("/track/{tracking_number}", tracking_page, methods=["GET"]),
    ]
    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.carrier = state
    return app


def main(argv: Sequence[str] | None = None) -> None:
    # With no arguments (``oms run``) it works with the local gateway: ``CarrierSandboxSettings`` give the port,
    # where webhooks go, the API key and the secret (the development ones only in development).
    from services.fulfillment.carrier.settings import get_carrier_sandbox_settings

    settings = get_carrier_sandbox_settings()
    parser = argparse.ArgumentParser(description="Sandbox shipping carrier (tests and demos only)")
    parser.add_argument("--host", default=settings.sandbox_carrier_host)
    parser.add_argument("--port", type=int, default=settings.sandbox_carrier_port)
    parser.add_argument("--webhook-url", default=settings.webhook_url(), help="empty: record, do not send")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    quiet_libraries(logging.INFO)
    api_key, secret = settings.api_key(), settings.webhook_secret()  # refuse a production run without them
    if not args.webhook_url:
        log.warning("no webhook URL: tracking events are recorded but not sent")
    app = create_app(args.webhook_url or None, secret, api_key)
    log.info("sandbox carrier on http://%s:%s, webhooks to %s", args.host, args.port, args.webhook_url)
    import uvicorn

    uvicorn.run(app, host=args.host, port=args.port, log_level="info")


if __name__ == "__main__":
    main()
