"""The payments service, as the registry knows it (see ``shared.registry`` and docs/adding-a-service.md).

Besides the Nameko service it declares the sandbox card provider, a development-only process that ``oms run``
starts so card payments work on a developer machine (compose runs it as the ``sandbox-provider`` service).
"""

from __future__ import annotations

from pathlib import Path

from shared.registry import Process, ServiceSpec

SERVICE = ServiceSpec(
    name="payments",
    nameko_class="services.payments.service:PaymentsService",
    schema="payments",
    migrations=Path(__file__).parent / "migrations",
    backbone=True,
    contracts="services.payments.contracts",
    settings="services.payments.settings:PaymentsSettings",
    processes=(
        Process(
            "sandbox-provider",
            ("-m", "services.payments.provider.sandbox"),
            development_only=True,
            settings="services.payments.settings:SandboxSettings",
        ),
    ),
    docs={"payment-status": "services.payments.manifest:payment_status_table"},
)


def payment_status_table() -> str:
    """The README's payment status table: the status that follows from the money received and refunded."""
    from services.payments.domain import STATUS_TABLE, CaptureLevel, RefundLevel

    received = {CaptureLevel.NONE: "nothing", CaptureLevel.PARTIAL: "part of the total",
                CaptureLevel.FULL: "the total (or more)"}
    refunded = {RefundLevel.NONE: "nothing", RefundLevel.EXCESS_ONLY: "only an over-payment",
                RefundLevel.PARTIAL: "part", RefundLevel.FULL: "all of it"}
    rows = ["| money received | refunded | a card payment in progress | payment status |", "|---|---|---|---|"]
    for (capture, refund, busy), status in STATUS_TABLE.items():
        rows.append(f"| {received[capture]} | {refunded[refund]} | {'yes' if busy else 'no'} | `{status.value}` |")
    return "\n".join(rows)
