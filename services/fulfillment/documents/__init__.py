"""Printed documents: the packing slip of a shipment, the invoice of an order, the order details.

One Jinja2 template per kind (``templates/``) renders the print-friendly HTML; the PDF is that same HTML
rendered by WeasyPrint, so the two never differ. Amounts come exact from ``DocumentData``.
"""

from __future__ import annotations

from services.fulfillment.documents.model import DocLine, DocParty, DocShipment, DocumentData

__all__ = ["DocLine", "DocParty", "DocShipment", "DocumentData", "render"]


def render(data: DocumentData, fmt: str) -> bytes:
    """The document as ``html`` (UTF-8 bytes) or ``pdf``. Implemented by the documents work (h-fdocs)."""
    raise NotImplementedError("documents.render lands with the documents branch")
