"""Printed documents: the data of a packing slip (per shipment), an invoice (per order, one section per
delivery method when the shipments differ) and the order details, built from fulfillment's own records, and
their rendering by ``services.fulfillment.documents.render`` (HTML, or PDF from the same template).

Numbers: the invoice number ``INV-000001`` comes from a sequence once per order, at its first invoice, and is
kept; a packing slip is ``PS-<shipment number>``; the order details ``ORD-<order number>``.
"""

from __future__ import annotations

import base64
import uuid
from decimal import Decimal
from typing import Any

from services.fulfillment import domain, store
from services.fulfillment.contracts.schemas import DocumentFile
from services.fulfillment.documents import DocLine, DocParty, DocShipment, DocumentData
from services.fulfillment.settings import get_settings
from services.fulfillment.usecases.common import Tx, now
from shared.db import Database
from shared.errors import InvalidRequest, NotFound, field_error
from shared.money import quantize

KINDS = ("packing_slip", "invoice", "order_details")
FORMATS = ("html", "pdf")


def _store_party() -> DocParty:
    s = get_settings()
    return DocParty(name=s.store_name, phone=s.store_phone, email=s.store_email,
                    address_lines=[*s.store_address_parts(), s.store_country])


def _address_lines(address: dict[str, Any] | None) -> list[str]:
    if not address:
        return []
    city = " ".join(p for p in (address.get("postal_code"), address.get("city")) if p)
    return [p for p in (address.get("line1"), address.get("line2"), city, address.get("region"),
                        address.get("country")) if p]


def _doc_lines(o: domain.FulfillmentOrder, quantities: dict[str, int] | None = None) -> list[DocLine]:
    out = []
    for ln in o.lines:
        q = ln.quantity if quantities is None else quantities.get(ln.line_id, 0)
        if q <= 0:
            continue
        total = ln.line_total if q == ln.quantity else quantize(ln.unit_price * q, o.currency)
        out.append(DocLine(ln.line_id, ln.sku, ln.name, q, quantize(ln.unit_price, o.currency),
                           quantize(total, o.currency)))
    return out


def _doc_shipment(o: domain.FulfillmentOrder, s: domain.Shipment) -> DocShipment:
    return DocShipment(number=s.number, shipping_point=s.shipping_point.value, carrier=s.carrier, service=s.service,
                       tracking_number=s.tracking_number, status=s.status.value,
                       expected_delivery=s.expected_delivery, lines=_doc_lines(o, domain.line_units(s.lines)))


def document_data(tx: Tx, kind: str, ref: str) -> DocumentData:
    """What the document shows. ``ref``: the order id, or the shipment id for a packing slip."""
    if kind not in KINDS:
        raise InvalidRequest(f"Unknown document {kind!r} (one of {', '.join(KINDS)}).",
                             errors=[field_error("kind", f"one of {', '.join(KINDS)}", "unknown_kind", "path")])
    shipment: domain.Shipment | None = None
    if kind == "packing_slip":
        oid = store.shipment_order_id(tx, ref)
        if oid is None:
            raise NotFound(f"No shipment {ref}.", shipment_id=str(ref))
        o = store.load(tx, oid)
        shipment = o.shipment(str(uuid.UUID(str(ref))))
    else:
        o = store.load(tx, ref)
    row = store.order_row(tx, o.order_id)
    assert row is not None
    if kind == "invoice":
        number = store.assign_invoice_number(tx, uuid.UUID(o.order_id))
    elif shipment is not None:
        number = f"PS-{shipment.number}"
    else:
        number = f"ORD-{o.number}"
    live = [s for s in o.shipments if s.status is not domain.order.S.canceled]
    sections: list[DocShipment] = []
    if kind == "invoice" and len({s.shipping_point for s in live}) > 1:
        # split by delivery method (help center): one section per shipping point, its units and their amounts
        for point in sorted({s.shipping_point for s in live}, key=lambda p: p.value):
            units: dict[str, int] = {}
            for s in live:
                if s.shipping_point is point:
                    for line_id, q in domain.line_units(s.lines).items():
                        units[line_id] = units.get(line_id, 0) + q
            sections.append(DocShipment(number=point.value, shipping_point=point.value, carrier=None, service=None,
                                        tracking_number=None, status="", expected_delivery=None,
                                        lines=_doc_lines(o, units)))
    customer = row["customer"] or {}
    cur = o.currency
    return DocumentData(
        kind=kind, document_number=number, issued_at=now(), store=_store_party(), order_number=o.number,
        order_id=o.order_id, placed_at=row["placed_at"], channel=row["channel"], stage=o.stage.value,
        fulfillment_status=o.status.value, test=o.test, currency=cur,
        customer=DocParty(name=customer.get("name") or "", phone=customer.get("phone"), email=customer.get("email"),
                          address_lines=_address_lines(row["address"])),
        ship_to=DocParty(name=customer.get("name") or "", phone=customer.get("phone"),
                         address_lines=_address_lines(row["address"])) if row["address"] else None,
        lines=_doc_lines(o, domain.line_units(shipment.lines)) if shipment else _doc_lines(o),
        subtotal=quantize(Decimal(row["subtotal"]), cur), shipping=quantize(Decimal(row["shipping"]), cur),
        discount=quantize(Decimal(row["discount"]), cur), tax=quantize(Decimal(row["tax"]), cur),
        total=quantize(Decimal(row["total"]), cur), payment_method=row["payment_method"],
        customer_note=row["customer_note"], shipments=[_doc_shipment(o, s) for s in live],
        shipment=_doc_shipment(o, shipment) if shipment else None, sections=sections,
    )


def render_document(db: Database, kind: str, ref: str, fmt: str = "html") -> dict[str, Any]:
    from services.fulfillment.documents import render

    if fmt not in FORMATS:
        raise InvalidRequest(f"Unknown format {fmt!r} (html or pdf).",
                             errors=[field_error("fmt", "html or pdf", "unknown_format", "query")])
    with db.transaction() as tx:
        data = document_data(tx, kind, ref)
    content = render(data, fmt)
    name = f"{data.document_number}.{fmt}"
    if fmt == "pdf":
        return DocumentFile(filename=name, content_type="application/pdf", encoding="base64",
                            content=base64.b64encode(content).decode()).model_dump(mode="json")
    return DocumentFile(filename=name, content_type="text/html; charset=utf-8", encoding="text",
                        content=content.decode()).model_dump(mode="json")


_BULK_SHIPMENT_STATUSES = frozenset({"awaiting_shipment", "shipped", "in_transit", "out_for_delivery", "delivered"})
"""Shipments whose slip a bulk print includes: open (awaiting shipment) or handed over; not cancelled or failed."""
MAX_BULK_ORDERS = 500


def _combine_html(pages: list[str]) -> str:
    """Several complete slip documents as ONE HTML document: the first one's head (the shared print CSS), then
    each one's body in a section starting on a new page, so the PDF of it has each slip on its own page(s)."""
    head = pages[0].split("<body>", 1)[0]
    bodies = [p.split("<body>", 1)[1].rsplit("</body>", 1)[0] for p in pages]
    sections = "".join(
        f'<section class="slip" style="{"break-before: page; page-break-before: always;" if i else ""}">{b}</section>'
        for i, b in enumerate(bodies))
    return f"{head}<body>{sections}</body>\n</html>\n"


def render_packing_slips(db: Database, order_ids: list[str], fmt: str = "pdf") -> dict[str, Any]:
    """Every open or handed-over shipment's packing slip of the given orders, in the orders' order and then the
    shipments', as one document (HTML with page breaks, or its PDF): a bulk print for the packing table.

    An order fulfillment does not know is a 404 naming it; orders without such a shipment add nothing, and if
    none has one it is a 422 saying so (an empty PDF helps nobody)."""
    from services.fulfillment.documents import html_to_pdf, render_html

    if fmt not in FORMATS:
        raise InvalidRequest(f"Unknown format {fmt!r} (html or pdf).",
                             errors=[field_error("fmt", "html or pdf", "unknown_format", "query")])
    if not order_ids:
        raise InvalidRequest("Name at least one order.",
                             errors=[field_error("orders", "at least one order", "too_short", "body")])
    if len(order_ids) > MAX_BULK_ORDERS:
        raise InvalidRequest(f"At most {MAX_BULK_ORDERS} orders at once.",
                             errors=[field_error("orders", f"at most {MAX_BULK_ORDERS} orders", "too_long", "body")])
    seen: set[str] = set()
    pages: list[str] = []
    with db.transaction() as tx:
        for ref in order_ids:
            try:
                oid = str(uuid.UUID(str(ref)))
            except ValueError:
                raise InvalidRequest(f"{ref!r} is not an order id.", errors=[field_error(
                    "orders", f"{str(ref)[:40]!r} is not an order id", "uuid_parsing", "body")]) from None
            if oid in seen:
                continue
            seen.add(oid)
            o = store.load(tx, oid)
            for s in o.shipments:
                if s.status.value in _BULK_SHIPMENT_STATUSES:
                    pages.append(render_html(document_data(tx, "packing_slip", s.id)))
    if not pages:
        raise InvalidRequest("None of these orders has a shipment to pack: create a shipment first.",
                             errors=[field_error("orders", "no open or handed-over shipment", "no_shipments",
                                                 "body")])
    html = _combine_html(pages)
    name = f"packing-slips-{len(pages)}.{fmt}"
    if fmt == "pdf":
        return DocumentFile(filename=name, content_type="application/pdf", encoding="base64",
                            content=base64.b64encode(html_to_pdf(html)).decode()).model_dump(mode="json")
    return DocumentFile(filename=name, content_type="text/html; charset=utf-8", encoding="text",
                        content=html).model_dump(mode="json")
