"""Printed documents: the packing slip of a shipment, the invoice of an order, the order details.

One Jinja2 template per kind (``templates/<kind>.html``, on the shared layout ``templates/base.html``) renders
the print-friendly HTML; the PDF is that same HTML rendered by WeasyPrint, so the two never differ. Amounts come
exact from ``DocumentData`` and are printed with ``shared.money.format_amount`` (the currency's decimal places:
44.535 TND, 1200 JPY).

Customers type names, addresses and notes: the templates autoescape every value, and WeasyPrint is given a URL
fetcher that refuses every URL, so nothing a customer writes can make a document load anything. The documents
name no external font, image or style sheet (DejaVu Sans from the machine's fonts, CSS inline): they print the
same with no network.
"""

from __future__ import annotations

import re
from datetime import date, datetime
from decimal import Decimal
from functools import lru_cache
from pathlib import Path
from typing import Any, NoReturn

from jinja2 import Environment, FileSystemLoader, StrictUndefined
from markupsafe import Markup

from services.fulfillment.contracts.vocabulary import (
    FULFILLMENT_LABELS,
    SHIPMENT_LABELS,
    FulfillmentStatus,
    ShipmentStatus,
)
from services.fulfillment.documents.model import DocLine, DocParty, DocShipment, DocumentData
from shared.money import currency_name, format_amount

__all__ = ["DocLine", "DocParty", "DocShipment", "DocumentData", "render", "KINDS", "FORMATS", "TITLES"]

TEMPLATES = Path(__file__).parent / "templates"

TITLES: dict[str, str] = {
    "packing_slip": "Packing slip",
    "invoice": "Invoice",
    "order_details": "Order details",
}
"""Document kind -> the title printed on it (one template per kind, named after the kind)."""

KINDS = frozenset(TITLES)
FORMATS = frozenset({"html", "pdf"})

SHIPPING_POINT_LABELS: dict[str, str] = {
    "local": "Local delivery",
    "international": "International shipping",
    "pickup": "In-store pickup",
}


def render(data: DocumentData, fmt: str) -> bytes:
    """The document as ``html`` (UTF-8 bytes) or ``pdf`` (WeasyPrint of that same HTML).

    A packing slip needs ``data.shipment``; an unknown kind or format is a programming error (the RPC body
    already restricts both), so it raises ``ValueError``.
    """
    if fmt not in FORMATS:
        raise ValueError(f"fmt: {fmt!r} is not a document format ({', '.join(sorted(FORMATS))})")
    html = render_html(data)
    if fmt == "html":
        return html.encode("utf-8")
    return html_to_pdf(html)


def render_html(data: DocumentData) -> str:
    if data.kind not in KINDS:
        raise ValueError(f"kind: {data.kind!r} is not a document kind ({', '.join(sorted(KINDS))})")
    if data.kind == "packing_slip" and data.shipment is None:
        raise ValueError("kind: a packing slip is the slip of one shipment; DocumentData.shipment is missing")
    template = _environment().get_template(f"{data.kind}.html")
    return template.render(d=data, s=data.shipment, title=TITLES[data.kind])


def html_to_pdf(html: str) -> bytes:
    """Lay out ``html`` as A4 pages. Imported here: WeasyPrint (and Pango behind it) loads in about a second,
    and only the processes that print pay for it."""
    from weasyprint import HTML
    from weasyprint.urls import URLFetcher

    class RefuseEveryUrl(URLFetcher):  # type: ignore[misc]
        """Documents are self-contained: WeasyPrint opens no URL (http, file, data), whatever the HTML says."""

        def fetch(self, url: str, headers: Any = None) -> NoReturn:
            raise ValueError(f"documents load nothing from outside, refused {url[:80]!r}")

    pdf = HTML(string=html, url_fetcher=RefuseEveryUrl(allowed_protocols=())).write_pdf()
    assert pdf is not None  # no target given: WeasyPrint returns the bytes
    return bytes(pdf)


# --------------------------------------------------------------------------------------------------------
# The template environment and its filters
# --------------------------------------------------------------------------------------------------------


@lru_cache(maxsize=1)
def _environment() -> Environment:
    env = Environment(
        loader=FileSystemLoader(TEMPLATES),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(
        amount=_amount,
        money=_money,
        when=_when,
        words=_words,
        currency_name=currency_name,
        shipping_point=lambda v: SHIPPING_POINT_LABELS.get(str(v), _words(v)),
        shipment_status=lambda v: _label(SHIPMENT_LABELS, ShipmentStatus, v),
        fulfillment_status=lambda v: _label(FULFILLMENT_LABELS, FulfillmentStatus, v),
        css_string=_css_string,
    )
    return env


def _amount(value: Decimal | int, currency: str) -> str:
    """``44.535`` in TND, ``1200`` in JPY, ``12.50`` in EUR: exact, the currency's decimal places."""
    return format_amount(Decimal(value), currency)


def _money(value: Decimal | int, currency: str) -> str:
    return f"{_amount(value, currency)} {currency}"


def _when(value: datetime | date) -> str:
    if not isinstance(value, datetime):
        return value.isoformat()
    text = value.strftime("%Y-%m-%d %H:%M")
    zone = value.tzname()
    return f"{text} {zone}" if zone else text


def _words(value: object) -> str:
    """``whatsapp_business`` -> ``Whatsapp business``: a stored word as a person reads it."""
    text = str(value).replace("_", " ").strip()
    return text[:1].upper() + text[1:]


def _label(labels: dict[Any, str], enum: type, value: object) -> str:
    try:
        return labels[enum(value)]
    except ValueError:
        return _words(value)


_CSS_SAFE = re.compile(r"[A-Za-z0-9 ._#-]")


def _css_string(value: object) -> Markup:
    """A value inside a CSS string in the ``<style>`` element (the PDF's page footer). HTML escaping does not
    apply there (it is raw text), so every character that is not plainly safe is written as a CSS escape."""
    return Markup("".join(ch if _CSS_SAFE.fullmatch(ch) else f"\\{ord(ch):x} " for ch in str(value)))
