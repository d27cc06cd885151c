"""Notification templates: one per kind x channel x language, rendered by Jinja2's sandboxed environment.

The shipped defaults (``defaults/``) cover every kind of ``NOTIFICATION_KINDS`` on every channel in ``LANGUAGES``
(``en`` is the fallback); staff overrides are stored by the service and validated here before they are saved:
a syntax error or a variable the kind does not offer is refused then, naming the field, never at send time.

How a template is read:

* Every part is a Jinja2 template run by a ``SandboxedEnvironment`` (a template typed by staff cannot reach
  Python internals) with ``StrictUndefined``: a name or key the context lacks is an error, never an empty
  string. ``None`` prints as nothing (``{{ shipment.tracking_url }}`` of a shipment without tracking).
* Only ``html`` is autoescaped (a customer named ``<b>x</b>`` is printed, not interpreted); ``subject``,
  ``text`` (the plain e-mail part, the SMS, the WhatsApp free text) are not: they are not HTML.
* ``whatsapp_params`` are expressions (``order.number``, ``customer.first_name``), one per parameter of the
  provider-approved template ``whatsapp_template`` used outside the 24-hour window.
* Filters beyond Jinja2's: ``datetime`` / ``date`` (a ``datetime``, a ``date`` or an ISO string ->
  ``2025-03-14 18:00`` / ``2025-03-14``), ``stage_label(language)`` and ``shipment_label(language)`` (an order
  stage or a shipment status in the message's language: the context's labels are English).

``check`` validates (syntax with the line, undeclared variables against ``ORDER_VARIABLES | kind.variables``,
the parts the channel needs, and a trial render with ``sample_context(kind)`` so a misspelt key such as
``order.nubmer`` is refused at save time too); ``render`` renders (``RenderError`` when the context does not
fit the template).

Besides the customer kinds, the staff kind ``new_order_staff`` (the new-order e-mail to the store address,
e-mail only) is known here (``STAFF_KINDS``): it uses ``ORDER_VARIABLES`` only.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from datetime import date, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

from jinja2 import StrictUndefined, TemplateError, TemplateSyntaxError, meta, nodes
from jinja2.parser import Parser
from jinja2.sandbox import SandboxedEnvironment

from services.notifications.contracts.schemas import TemplateIn
from services.notifications.contracts.vocabulary import (
    KIND_BY_NAME,
    LANGUAGES,
    NOTIFICATION_KINDS,
    ORDER_VARIABLES,
    MessageChannel,
)

__all__ = [
    "Rendered", "TemplateProblem", "RenderError", "check", "render", "default_templates", "default_for",
    "sample_context", "kind_variables", "STAFF_KINDS", "SMS_MAX_CHARS", "DEFAULTS_DIR",
]

DEFAULTS_DIR = Path(__file__).parent / "defaults"
"""One TOML file per language (``en.toml``...): ``[<kind>.<channel>]`` tables with the parts, and a ``[_layout]``
table whose ``html`` wraps every e-mail's ``body_html`` (package data: ``defaults/*.toml``)."""

SMS_MAX_CHARS = 1600
"""The longest SMS providers accept (concatenated segments); checked on the render of the sample context."""

STAFF_KINDS: dict[str, tuple[frozenset[str], frozenset[MessageChannel]]] = {
    "new_order_staff": (frozenset(), frozenset({MessageChannel.email})),
}
"""Staff message kinds: name -> (variables beyond ORDER_VARIABLES, the channels it may use)."""

_WHATSAPP_NAME = re.compile(r"^[a-z0-9_]{1,100}$")


@dataclass(frozen=True)
class Rendered:
    subject: str | None
    text: str
    html: str | None
    whatsapp_template: str | None = None
    whatsapp_params: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class TemplateProblem:
    field: str  # "text", "subject", "html", "whatsapp_params[0]", "kind", "channel"
    reason: str  # e.g. "unknown variable 'ordr' (known: customer, order, store, test, shipment)"


class RenderError(Exception):
    """The context does not fit the template (a missing key, a value a filter refuses): ``field`` and ``reason``
    say where and why. ``check`` reports the same problems against the sample context at save time."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


# --- the environments -----------------------------------------------------------------------------------------

def _finalize(value: Any) -> Any:
    return "" if value is None else value


def _as_datetime(value: Any) -> datetime | date | None:
    if value is None or value == "":
        return None
    if isinstance(value, datetime | date):
        return value
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value)
        except ValueError:
            return None
    return None


def _datetime_filter(value: Any) -> str:
    moment = _as_datetime(value)
    if moment is None:
        return "" if value is None else str(value)
    if not isinstance(moment, datetime):
        return moment.isoformat()
    text = moment.strftime("%Y-%m-%d %H:%M")
    offset = moment.utcoffset()
    if offset is not None:
        text += " UTC" if not offset else moment.strftime(" UTC%z")
    return text


def _date_filter(value: Any) -> str:
    moment = _as_datetime(value)
    if moment is None:
        return "" if value is None else str(value)
    return (moment.date() if isinstance(moment, datetime) else moment).isoformat()


_STAGE_LABELS: dict[str, dict[str, str]] = {
    "en": {"placed": "Placed", "abandoned": "Abandoned", "confirmed": "Confirmed", "on_hold": "On hold",
           "rejected": "Rejected", "cancelled": "Cancelled", "approved": "Approved", "processed": "Processed",
           "shipped": "Shipped", "delivered": "Delivered", "returned": "Returned", "archived": "Archived"},
    "fr": {"placed": "reçue", "abandoned": "abandonnée", "confirmed": "confirmée", "on_hold": "en attente",
           "rejected": "refusée", "cancelled": "annulée", "approved": "validée", "processed": "préparée",
           "shipped": "expédiée", "delivered": "livrée", "returned": "retournée", "archived": "archivée"},
    "es": {"placed": "recibido", "abandoned": "abandonado", "confirmed": "confirmado", "on_hold": "en espera",
           "rejected": "rechazado", "cancelled": "cancelado", "approved": "aprobado", "processed": "preparado",
           "shipped": "enviado", "delivered": "entregado", "returned": "devuelto", "archived": "archivado"},
    "ar": {"placed": "مُستلَم", "abandoned": "متروك", "confirmed": "مؤكَّد", "on_hold": "قيد الانتظار",
           "rejected": "مرفوض", "cancelled": "ملغى", "approved": "مقبول", "processed": "جاهز",
           "shipped": "تم الشحن", "delivered": "تم التسليم", "returned": "مُرجَع", "archived": "مؤرشف"},
}

_SHIPMENT_LABELS: dict[str, dict[str, str]] = {
    "en": {"awaiting_shipment": "Awaiting shipment", "shipped": "Shipped", "in_transit": "In transit",
           "out_for_delivery": "Out for delivery", "delivered": "Delivered", "delivery_failed": "Delivery failed",
           "canceled": "Canceled", "picked_up": "Picked up"},
    "fr": {"awaiting_shipment": "en attente d'expédition", "shipped": "expédié", "in_transit": "en transit",
           "out_for_delivery": "en cours de livraison", "delivered": "livré", "delivery_failed": "livraison échouée",
           "canceled": "annulé", "picked_up": "retiré"},
    "es": {"awaiting_shipment": "pendiente de envío", "shipped": "enviado", "in_transit": "en tránsito",
           "out_for_delivery": "en reparto", "delivered": "entregado", "delivery_failed": "entrega fallida",
           "canceled": "cancelado", "picked_up": "recogido"},
    "ar": {"awaiting_shipment": "في انتظار الشحن", "shipped": "تم الشحن", "in_transit": "في الطريق",
           "out_for_delivery": "خرج للتوصيل", "delivered": "تم التسليم", "delivery_failed": "تعذّر التوصيل",
           "canceled": "ملغاة", "picked_up": "تم الاستلام"},
}


def _label(table: dict[str, dict[str, str]]) -> Any:
    def label(value: Any, language: str = "en") -> str:
        key = "" if value is None else str(value)
        return table.get(language, table["en"]).get(key) or table["en"].get(key) or key.replace("_", " ")

    return label


class _Environment(SandboxedEnvironment):
    """Keys before attributes on dicts: ``order.items`` is the order's items, not ``dict.items``."""

    def getattr(self, obj: Any, attribute: str) -> Any:
        if isinstance(obj, dict) and attribute in obj:
            return obj[attribute]
        return super().getattr(obj, attribute)


def _environment(autoescape: bool) -> SandboxedEnvironment:
    env = _Environment(autoescape=autoescape, undefined=StrictUndefined, finalize=_finalize,
                               trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=False)
    env.filters["datetime"] = _datetime_filter
    env.filters["date"] = _date_filter
    env.filters["stage_label"] = _label(_STAGE_LABELS)
    env.filters["shipment_label"] = _label(_SHIPMENT_LABELS)
    return env


_TEXT_ENV = _environment(autoescape=False)
_HTML_ENV = _environment(autoescape=True)


# --- kinds ----------------------------------------------------------------------------------------------------

def kind_variables(kind: str) -> frozenset[str] | None:
    """Every variable a template of ``kind`` may use; ``None`` for an unknown kind."""
    if kind in KIND_BY_NAME:
        return ORDER_VARIABLES | KIND_BY_NAME[kind].variables
    if kind in STAFF_KINDS:
        return ORDER_VARIABLES | STAFF_KINDS[kind][0]
    return None


def _kind_channels(kind: str) -> frozenset[MessageChannel]:
    return STAFF_KINDS[kind][1] if kind in STAFF_KINDS else frozenset(MessageChannel)


def _known_kinds() -> list[str]:
    return [k.name for k in NOTIFICATION_KINDS] + list(STAFF_KINDS)


# --- check ----------------------------------------------------------------------------------------------------

def _parse_expression(source: str) -> nodes.Template:
    """``source`` as one expression, wrapped in a template (``{{ source }}``) so ``meta`` can read it."""
    parser = Parser(_TEXT_ENV, source, state="variable")
    expr = parser.parse_expression()
    if not parser.stream.eos:
        raise TemplateSyntaxError("one expression expected (e.g. order.number)", parser.stream.current.lineno)
    template = nodes.Template([nodes.Output([expr], lineno=1)], lineno=1)
    template.set_environment(_TEXT_ENV)
    return template


def _syntax_reason(exc: TemplateSyntaxError) -> str:
    return f"syntax error on line {exc.lineno}: {exc.message}"


def _unknown(ast: nodes.Template, allowed: frozenset[str], fieldname: str) -> list[TemplateProblem]:
    known = ", ".join(sorted(allowed))
    return [TemplateProblem(fieldname, f"unknown variable '{name}' (known: {known})")
            for name in sorted(meta.find_undeclared_variables(ast) - allowed)]


def check(template: TemplateIn) -> list[TemplateProblem]:
    """Every problem of a template (syntax, unknown variables, missing parts for the channel); empty: valid."""
    allowed = kind_variables(template.kind)
    if allowed is None:
        return [TemplateProblem("kind", f"unknown kind '{template.kind}' (known: {', '.join(_known_kinds())})")]
    try:
        channel = MessageChannel(template.channel)
    except ValueError:
        known = ", ".join(c.value for c in MessageChannel)
        return [TemplateProblem("channel", f"unknown channel '{template.channel}' (known: {known})")]
    if channel not in _kind_channels(template.kind):
        offered = ", ".join(sorted(c.value for c in _kind_channels(template.kind)))
        return [TemplateProblem("channel", f"'{template.kind}' is sent by {offered} only, not {channel.value}")]

    problems: list[TemplateProblem] = []
    parts = _parts(template)
    if channel is MessageChannel.email:
        if not (template.subject or "").strip():
            problems.append(TemplateProblem("subject", "an e-mail needs a subject"))
    else:
        for name in ("subject", "html"):
            if getattr(template, name):
                problems.append(TemplateProblem(name, f"only e-mails have a {name}; leave it empty for {channel}"))
                parts.pop(name, None)
    if channel is MessageChannel.whatsapp:
        name = template.whatsapp_template or ""
        if not name:
            problems.append(TemplateProblem(
                "whatsapp_template", "a WhatsApp message needs the approved template's name (used outside the "
                                     "24-hour window)"))
        elif not _WHATSAPP_NAME.match(name):
            problems.append(TemplateProblem(
                "whatsapp_template", "a WhatsApp template name has lowercase letters, digits and '_' only"))
    else:
        if template.whatsapp_template:
            problems.append(TemplateProblem("whatsapp_template", "only WhatsApp messages name a template"))
        if template.whatsapp_params:
            problems.append(TemplateProblem("whatsapp_params", "only WhatsApp messages have template parameters"))
    if not template.text.strip():
        problems.append(TemplateProblem("text", "the text is empty"))

    parsed_ok = True
    for fieldname, (source, is_expression) in parts.items():
        try:
            ast = _parse_expression(source) if is_expression else _env(fieldname).parse(source)
        except TemplateSyntaxError as exc:
            problems.append(TemplateProblem(fieldname, _syntax_reason(exc)))
            parsed_ok = False
            continue
        unknown = _unknown(ast, allowed, fieldname)
        problems.extend(unknown)
        parsed_ok = parsed_ok and not unknown
    if not parsed_ok:
        return problems

    # A trial render with every variable the kind offers: a misspelt key (order.nubmer), a filter misused.
    try:
        rendered = render(template, sample_context(template.kind))
    except RenderError as exc:
        problems.append(TemplateProblem(exc.field, exc.reason))
        return problems
    if channel is MessageChannel.sms and len(rendered.text) > SMS_MAX_CHARS:
        problems.append(TemplateProblem(
            "text", f"an SMS is at most {SMS_MAX_CHARS} characters; this one renders {len(rendered.text)} with "
                    "the sample order"))
    return problems


def _env(fieldname: str) -> SandboxedEnvironment:
    return _HTML_ENV if fieldname == "html" else _TEXT_ENV


def _parts(template: TemplateIn) -> dict[str, tuple[str, bool]]:
    """Field name -> (source, is an expression) of every part present."""
    parts: dict[str, tuple[str, bool]] = {}
    if template.subject is not None:
        parts["subject"] = (template.subject, False)
    parts["text"] = (template.text, False)
    if template.html is not None:
        parts["html"] = (template.html, False)
    for i, expr in enumerate(template.whatsapp_params):
        parts[f"whatsapp_params[{i}]"] = (expr, True)
    return parts


# --- render ---------------------------------------------------------------------------------------------------

@lru_cache(maxsize=2048)
def _compiled(fieldname: str, source: str) -> Any:
    return _env(fieldname).from_string(source)


@lru_cache(maxsize=2048)
def _compiled_expression(source: str) -> Any:
    _parse_expression(source)  # the same grammar check() applies: one expression, nothing after it
    return _TEXT_ENV.compile_expression(source, undefined_to_none=False)


def _render_part(fieldname: str, source: str, context: dict[str, Any]) -> str:
    try:
        return str(_compiled(fieldname, source).render(context))
    except TemplateSyntaxError as exc:
        raise RenderError(fieldname, _syntax_reason(exc)) from exc
    except TemplateError as exc:  # UndefinedError, SecurityError, ...
        raise RenderError(fieldname, exc.message or type(exc).__name__) from exc
    except (TypeError, ValueError, ArithmeticError, LookupError, AttributeError) as exc:
        raise RenderError(fieldname, f"{type(exc).__name__}: {exc}") from exc


def _render_expression(fieldname: str, source: str, context: dict[str, Any]) -> str:
    try:
        value = _compiled_expression(source)(**context)
        return "" if value is None else str(value)  # str() of a StrictUndefined raises UndefinedError
    except TemplateSyntaxError as exc:
        raise RenderError(fieldname, _syntax_reason(exc)) from exc
    except TemplateError as exc:
        raise RenderError(fieldname, exc.message or type(exc).__name__) from exc
    except (TypeError, ValueError, ArithmeticError, LookupError, AttributeError) as exc:
        raise RenderError(fieldname, f"{type(exc).__name__}: {exc}") from exc


def render(template: TemplateIn, context: dict[str, Any]) -> Rendered:
    """The message for ``context`` (see n-design: the template context); HTML is autoescaped, text is not.

    Raises ``RenderError`` (field, reason) when the context lacks a key the template uses."""
    subject = None
    if template.subject is not None:
        # a header: one line, no surrounding blanks
        subject = " ".join(_render_part("subject", template.subject, context).split())
    text = _render_part("text", template.text, context).strip()
    html = _render_part("html", template.html, context) if template.html is not None else None
    params = [_render_expression(f"whatsapp_params[{i}]", expr, context)
              for i, expr in enumerate(template.whatsapp_params)]
    return Rendered(subject=subject, text=text, html=html, whatsapp_template=template.whatsapp_template,
                    whatsapp_params=params)


# --- the shipped defaults -------------------------------------------------------------------------------------

@lru_cache(maxsize=1)
def _defaults() -> dict[tuple[str, str, str], TemplateIn]:
    found: dict[tuple[str, str, str], TemplateIn] = {}
    for language in LANGUAGES:
        path = DEFAULTS_DIR / f"{language}.toml"
        if not path.exists():
            continue
        data = tomllib.loads(path.read_text(encoding="utf-8"))
        layout = data.pop("_layout", {}).get("html")
        for kind, channels in data.items():
            for channel, parts in channels.items():
                html = parts.get("html")
                if html is None and parts.get("body_html") is not None and layout is not None:
                    html = layout.replace("{# body #}", parts["body_html"].strip())
                found[(kind, channel, language)] = TemplateIn(
                    kind=kind, channel=MessageChannel(channel), language=language,
                    subject=parts.get("subject"), text=parts["text"].strip(), html=html,
                    whatsapp_template=(f"oms_{kind}" if channel == MessageChannel.whatsapp else None),
                    whatsapp_params=list(parts.get("params", [])),
                )
    return found


def default_templates() -> list[TemplateIn]:
    """The shipped defaults: every kind x channel x language (the staff kind: e-mail, English)."""
    return list(_defaults().values())


def default_for(kind: str, channel: str, language: str) -> TemplateIn:
    """The shipped default for this kind and channel in ``language`` (falls back to ``en``).

    ``language`` may be a regional tag (``fr-TN`` -> ``fr``). ``KeyError`` for a kind/channel with no default."""
    defaults = _defaults()
    channel = MessageChannel(channel).value
    for lang in (language, language.split("-")[0].lower(), "en"):
        found = defaults.get((kind, channel, lang))
        if found is not None:
            return found
    raise KeyError(f"no default template for {kind} by {channel}")


# --- the sample context ---------------------------------------------------------------------------------------

def _sample_order() -> dict[str, Any]:
    return {
        "id": "0b9c7f7e-3f5d-4c61-9a57-4c2f7f0e1a01",
        "number": 1001,
        "placed_at": "2025-03-14T10:32:00+00:00",
        "channel": "web",
        "stage": "confirmed",
        "stage_label": "Confirmed",
        "currency": "TND",
        "total": "44.535 TND",
        "items": [
            {"sku": "TSHIRT-BLUE-M", "name": "T-shirt, blue, M", "quantity": 2, "line_total": "39.800 TND"},
            {"sku": "SOCKS-01", "name": "Cotton socks", "quantity": 1, "line_total": "4.735 TND"},
        ],
        "shipping_address": {"line1": "12 rue de Marseille", "line2": None, "city": "Tunis", "region": "Tunis",
                             "postal_code": "1000", "country": "TN"},
    }


def _sample_shipment() -> dict[str, Any]:
    return {
        "number": "1001-S1",
        "carrier": "Aramex",
        "tracking_number": "AX123456789TN",
        "tracking_url": "https://track.example.com/AX123456789TN",
        "expected_delivery": "2025-03-17",
        "status": "in_transit",
        "status_label": "In transit",
        "shipping_point": "local",
    }


_SAMPLE_BY_KIND: dict[str, dict[str, Any]] = {
    "order_stage_changed": {"from_stage": "confirmed", "to_stage": "shipped", "to_stage_label": "Shipped",
                            "reason": None},
    "payment_link": {"payment_url": "https://pay.example.com/l/3f9a2c", "amount": "44.535 TND",
                     "expires_at": "2025-03-15T10:32:00+00:00"},
    "payment_received": {"amount": "44.535 TND", "method": "card"},
    "payment_failed": {"amount": "44.535 TND", "reason": "The card was declined."},
    "refund_completed": {"amount": "4.735 TND", "reference": "RF-20250314-0007"},
    "shipment_created": {},
    "shipment_updated": {"status": "in_transit", "status_label": "In transit"},
    "return_recorded": {"lines": [{"sku": "SOCKS-01", "name": "Cotton socks", "quantity": 1}]},
}


def sample_context(kind: str) -> dict[str, Any]:
    """A full context for ``kind`` with sample values (tests; the defaults are checked against it).

    It has every key the kind's templates may use, the way the service builds them: money already formatted
    (``"44.535 TND"``), times as ISO strings, ``None`` where a value is unknown (an address line 2)."""
    context: dict[str, Any] = {
        "order": _sample_order(),
        "customer": {"name": "Amira Ben Salah", "first_name": "Amira", "phone": "+21620123456",
                     "email": "amira@example.com"},
        "store": {"name": "Dar Zitouna", "email": "orders@darzitouna.example", "phone": "+21671000000"},
        "test": False,
    }
    variables = kind_variables(kind) or ORDER_VARIABLES
    extra = dict(_SAMPLE_BY_KIND.get(kind, {}))
    if "shipment" in variables:
        extra["shipment"] = _sample_shipment()
    context.update({k: v for k, v in extra.items() if k in variables})
    return context
