"""Printed documents (issue #11): the packing slip, the invoice (split by delivery method) and the order details,
each as HTML and as a PDF of that same HTML, in the order's currency to its last decimal, with customers' text
escaped and nothing loaded from the network.

The PDFs are read back with pypdf: what a person printing them would see."""

from __future__ import annotations

import http.server
import io
import re
import threading
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, date, datetime
from decimal import Decimal

import pytest
from pypdf import PdfReader

from services.fulfillment.documents import DocLine, DocParty, DocShipment, DocumentData, render

pytestmark = pytest.mark.unit

URL = re.compile(r"https?://|\b(?:src|href)\s*=|url\(", re.IGNORECASE)
SCRIPT = "<script>alert('x')</script>"

STORE = DocParty(name="Medina Goods", phone="+216 71 000 000", email="shop@medina.example",
                 address_lines=["12 Rue de Marseille", "1000 Tunis", "Tunisia"])


def line(line_id: str, sku: str, name: str, qty: int, unit: str) -> DocLine:
    return DocLine(line_id=line_id, sku=sku, name=name, quantity=qty, unit_price=Decimal(unit),
                   line_total=Decimal(unit) * qty)


def tnd_order(kind: str, **changes: object) -> DocumentData:
    """An order in dinars (3 decimals): two lines, one shipped locally, one picked up in store."""
    lamp = line("1", "LAMP-BRASS", "Brass lamp", 3, "14.845")  # 44.535
    rug = line("2", "RUG-KILIM", "Kilim rug", 1, "120.500")
    local = DocShipment(number="1001-S1", shipping_point="local", carrier="Aramex", service="Express",
                        tracking_number="ARX-778899", status="shipped", expected_delivery=date(2025, 3, 6),
                        lines=[lamp])
    pickup = DocShipment(number="1001-S2", shipping_point="pickup", carrier=None, service=None,
                         tracking_number=None, status="awaiting_shipment", expected_delivery=None, lines=[rug])
    data = DocumentData(
        kind=kind,
        document_number={"invoice": "INV-000042", "packing_slip": "PS-1001-S1", "order_details": "ORD-1001"}[kind],
        issued_at=datetime(2025, 3, 4, 9, 30, tzinfo=UTC),
        store=STORE,
        order_number=1001,
        order_id="0b6c3a8e-0000-4000-8000-000000001001",
        placed_at=datetime(2025, 3, 1, 17, 5, tzinfo=UTC),
        channel="whatsapp",
        stage="processed",
        fulfillment_status="partially_fulfilled",
        test=False,
        currency="TND",
        customer=DocParty(name="Amel Ben Salah", phone="+216 98 123 456", email="amel@example.tn"),
        ship_to=DocParty(name="Amel Ben Salah", address_lines=["5 Avenue Habib Bourguiba", "2078 La Marsa"]),
        lines=[lamp, rug],
        subtotal=Decimal("165.035"),
        shipping=Decimal("7.000"),
        discount=Decimal("2.500"),
        tax=Decimal("0.000"),
        total=Decimal("169.535"),
        payment_method="cash_on_delivery",
        customer_note="Please wrap the lamp.\nCall before delivery.",
        shipments=[local, pickup],
        shipment=local if kind == "packing_slip" else None,
    )
    return replace(data, **changes)  # type: ignore[arg-type]


def jpy_order(kind: str, **changes: object) -> DocumentData:
    """An order in yen (no decimals), a test order, one international shipment."""
    tea = line("1", "TEA-MATCHA", "Matcha 100 g", 2, "1200")
    whisk = line("2", "WHISK-BAMBOO", "Bamboo whisk", 1, "2750")
    parcel = DocShipment(number="2002-S1", shipping_point="international", carrier="Japan Post", service="EMS",
                         tracking_number="EJ123456789JP", status="in_transit", expected_delivery=None,
                         lines=[tea, whisk])
    data = DocumentData(
        kind=kind,
        document_number={"invoice": "INV-000043", "packing_slip": "PS-2002-S1", "order_details": "ORD-2002"}[kind],
        issued_at=datetime(2025, 4, 2, 1, 0, tzinfo=UTC),
        store=STORE,
        order_number=2002,
        order_id="0b6c3a8e-0000-4000-8000-000000002002",
        placed_at=datetime(2025, 4, 1, 12, 0, tzinfo=UTC),
        channel="web",
        stage="shipped",
        fulfillment_status="fulfilled",
        test=True,
        currency="JPY",
        customer=DocParty(name="Sato Yuki", email="yuki@example.jp"),
        ship_to=DocParty(name="Sato Yuki", address_lines=["1-2-3 Shibuya", "Tokyo 150-0002", "Japan"]),
        lines=[tea, whisk],
        subtotal=Decimal("5150"),
        shipping=Decimal("1800"),
        discount=Decimal("0"),
        tax=Decimal("515"),
        total=Decimal("7465"),
        payment_method="card",
        shipments=[parcel],
        shipment=parcel if kind == "packing_slip" else None,
    )
    return replace(data, **changes)  # type: ignore[arg-type]


def html_of(data: DocumentData) -> str:
    return render(data, "html").decode("utf-8")


def pdf_text(data: DocumentData) -> str:
    pdf = render(data, "pdf")
    assert pdf.startswith(b"%PDF-")
    reader = PdfReader(io.BytesIO(pdf))
    return "\n".join(page.extract_text() for page in reader.pages)


def squash(text: str) -> str:
    """Whitespace as one space: table cells and lines come out of a PDF separated by spaces or newlines."""
    return re.sub(r"\s+", " ", text)


KINDS = ["packing_slip", "invoice", "order_details"]


# --------------------------------------------------------------------------------------------------------
# What every document shows
# --------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_every_document_names_store_number_order_and_parties(kind: str) -> None:
    data = tnd_order(kind)
    for text in (squash(html_of(data)), squash(pdf_text(data))):
        assert "Medina Goods" in text and "12 Rue de Marseille" in text
        assert data.document_number in text
        assert "1001" in text and "2025-03-01 17:05 UTC" in text and "Whatsapp" in text
        assert "Amel Ben Salah" in text and "5 Avenue Habib Bourguiba" in text
        assert "TEST ORDER" not in text


@pytest.mark.parametrize("kind", KINDS)
def test_a_test_order_carries_the_banner_on_every_document(kind: str) -> None:
    data = jpy_order(kind)
    assert "TEST ORDER" in html_of(data)
    assert "TEST ORDER" in pdf_text(data)


def test_the_pdf_is_a4_with_page_numbers() -> None:
    pdf = render(tnd_order("invoice"), "pdf")
    page = PdfReader(io.BytesIO(pdf)).pages[0]
    width_mm, height_mm = (float(v) * 25.4 / 72 for v in (page.mediabox.width, page.mediabox.height))
    assert round(width_mm) == 210 and round(height_mm) == 297
    assert "Page 1 of 1" in squash(page.extract_text())


def test_a_long_order_runs_over_pages_numbered_each() -> None:
    many = [line(str(i), f"SKU-{i:03d}", f"Item {i}", 1, "1.000") for i in range(1, 121)]
    data = tnd_order("order_details", lines=many, subtotal=Decimal("120.000"), total=Decimal("124.500"))
    reader = PdfReader(io.BytesIO(render(data, "pdf")))
    pages = len(reader.pages)
    assert pages >= 3
    assert f"Page {pages} of {pages}" in squash(reader.pages[-1].extract_text())
    assert "SKU-120" in squash(reader.pages[-1].extract_text()) or "SKU-120" in pdf_text(data)


# --------------------------------------------------------------------------------------------------------
# Amounts: exact, in the order's currency
# --------------------------------------------------------------------------------------------------------


def test_invoice_in_dinars_prints_three_decimals_exactly() -> None:
    data = tnd_order("invoice")
    for text in (squash(html_of(data)), squash(pdf_text(data))):
        assert "14.845" in text and "44.535" in text and "120.500" in text
        assert "165.035 TND" in text and "7.000 TND" in text and "-2.500 TND" in text
        assert "0.000 TND" in text and "169.535 TND" in text
        assert "Cash on delivery" in text


def test_invoice_in_yen_prints_no_decimals() -> None:
    data = jpy_order("invoice")
    for text in (squash(html_of(data)), squash(pdf_text(data))):
        assert "2400" in text and "2750" in text
        assert "5150 JPY" in text and "1800 JPY" in text and "515 JPY" in text and "7465 JPY" in text
        assert "7465.00" not in text and "2400.0" not in text


def test_an_amount_given_with_fewer_decimals_is_printed_with_the_currencys() -> None:
    data = tnd_order("invoice", shipping=Decimal("7"), total=Decimal("169.5350"))
    html = squash(html_of(data))
    assert "7.000 TND" in html and "169.535 TND" in html


# --------------------------------------------------------------------------------------------------------
# Packing slip
# --------------------------------------------------------------------------------------------------------


def test_packing_slip_lists_the_shipments_items_without_prices() -> None:
    data = tnd_order("packing_slip")
    html = html_of(data)
    for text in (squash(html), squash(pdf_text(data))):
        assert "Packing slip" in text and "PS-1001-S1" in text and "1001-S1" in text
        assert "LAMP-BRASS" in text and "Brass lamp" in text
        assert "Local delivery" in text and "Aramex" in text and "ARX-778899" in text
        assert "RUG-KILIM" not in text  # in the other shipment
        for price in ("14.845", "44.535", "165.035", "169.535", "TND"):
            assert price not in text
    assert html.count('class="box"') == 1  # one box to tick per line picked


def test_packing_slip_of_a_pickup_says_who_collects() -> None:
    data = tnd_order("packing_slip")
    pickup = data.shipments[1]
    text = squash(html_of(replace(data, shipment=pickup, document_number="PS-1001-S2")))
    assert "In-store pickup" in text and "Collected in store by" in text and "RUG-KILIM" in text


def test_packing_slip_without_a_shipment_is_refused() -> None:
    with pytest.raises(ValueError, match="shipment"):
        render(replace(tnd_order("invoice"), kind="packing_slip"), "html")


# --------------------------------------------------------------------------------------------------------
# Invoice: split by delivery method
# --------------------------------------------------------------------------------------------------------


def test_invoice_split_by_delivery_method_has_one_section_each_then_the_order_totals() -> None:
    data = tnd_order("invoice")
    data = replace(data, sections=list(data.shipments))
    html = html_of(data)
    assert html.count('class="delivery-section"') == 2
    local, pickup = (squash(part) for part in html.split('class="delivery-section"')[1:])
    assert "Local delivery" in local and "LAMP-BRASS" in local and "RUG-KILIM" not in local
    assert "Local delivery subtotal" in local and "44.535 TND" in local
    assert "In-store pickup" in pickup and "RUG-KILIM" in pickup and "LAMP-BRASS" not in pickup
    assert "120.500 TND" in pickup
    assert html.index("Order totals") > html.rindex('class="delivery-section"')
    assert "169.535 TND" in squash(html[html.index("Order totals"):])
    text = squash(pdf_text(data))
    assert text.index("Local delivery subtotal") < text.index("In-store pickup subtotal") < text.index("169.535")


def test_invoice_without_sections_lists_the_whole_order_once() -> None:
    html = html_of(tnd_order("invoice"))
    assert 'class="delivery-section"' not in html
    assert html.count("LAMP-BRASS") == 1 and html.count("RUG-KILIM") == 1


# --------------------------------------------------------------------------------------------------------
# Order details
# --------------------------------------------------------------------------------------------------------


def test_order_details_show_everything_including_shipments_and_the_note() -> None:
    data = tnd_order("order_details")
    for text in (squash(html_of(data)), squash(pdf_text(data))):
        assert "Order details" in text and "ORD-1001" in text
        assert "Processed" in text and "Partially Fulfilled" in text
        assert "44.535" in text and "169.535 TND" in text
        assert "1001-S1" in text and "1001-S2" in text and "Shipped" in text and "Awaiting Shipment" in text
        assert "EJ123456789JP" not in text and "ARX-778899" in text and "2025-03-06" in text
        assert "Please wrap the lamp." in text and "Call before delivery." in text


def test_order_details_without_shipments_or_address() -> None:
    data = tnd_order("order_details", shipments=[], ship_to=None, customer_note=None)
    text = squash(html_of(data))
    assert "No shipments yet." in text and "No delivery address" in text and "Customer note" not in text


# --------------------------------------------------------------------------------------------------------
# Untrusted text, no network
# --------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_customers_text_is_escaped(kind: str) -> None:
    hostile = DocParty(name=SCRIPT, address_lines=['"><img src=x onerror=alert(1)>'])
    evil_line = line("1", "SKU-<b>", f"Lamp {SCRIPT}", 1, "1.000")
    data = tnd_order(kind, customer=hostile, ship_to=hostile, customer_note=SCRIPT, lines=[evil_line])
    if kind == "packing_slip":
        data = replace(data, shipment=replace(data.shipments[0], lines=[evil_line], carrier=SCRIPT))
    html = html_of(data)
    assert "<script>" not in html and "<img" not in html and "<b>" not in html
    assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;" in html
    assert SCRIPT in pdf_text(data)  # printed as the text it is


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("order", [tnd_order, jpy_order])
def test_documents_reference_no_url(kind: str, order: object) -> None:
    data = order(kind)  # type: ignore[operator]
    html = html_of(data)
    assert not URL.search(html), URL.search(html)
    assert "@import" not in html and "<link" not in html and "<script" not in html
    assert not URL.search(pdf_text(data))


class _Counter(http.server.BaseHTTPRequestHandler):
    hits: list[str] = []

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        type(self).hits.append(self.path)
        self.send_response(404)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture()
def listener() -> Iterator[tuple[str, list[str]]]:
    """A local HTTP server that records every request: what a document would load if it fetched URLs."""
    hits: list[str] = []
    handler = type("Counter", (_Counter,), {"hits": hits})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", hits
    finally:
        server.shutdown()
        server.server_close()


def test_weasyprint_fetches_nothing_a_document_names(listener: tuple[str, list[str]]) -> None:
    from weasyprint import HTML

    from services.fulfillment.documents import html_to_pdf

    base, hits = listener
    page = (f'<style>@import "{base}/style.css"; body {{ background: url({base}/bg.png) }}</style>'
            f'<p>before</p><img src="{base}/logo.png"><p>after</p>')
    HTML(string=page).write_pdf()  # WeasyPrint's default: it does fetch (the listener can see it)
    assert hits
    hits.clear()
    pdf = html_to_pdf(page)
    assert hits == []
    text = PdfReader(io.BytesIO(pdf)).pages[0].extract_text()
    assert "before" in text and "after" in text


def test_unknown_format_or_kind_is_refused() -> None:
    with pytest.raises(ValueError, match="fmt"):
        render(tnd_order("invoice"), "docx")
    with pytest.raises(ValueError, match="kind"):
        render(replace(tnd_order("invoice"), kind="receipt"), "html")
