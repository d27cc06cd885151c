"""TEMPORARY (gateway branch only; the lead drops this file at merge in favour of the orders helper's
``services.orders.contracts.stages``): re-exports the stage table so the gateway's ``GET /stages`` can import
it from the orders contract."""

from __future__ import annotations

from services.orders.domain import status_machine_table

__all__ = ["status_machine_table"]
