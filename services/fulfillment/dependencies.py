"""The shipping carrier as a Nameko dependency: one adapter (an HTTP client with its pool) per process.

The adapter module is imported at first use, not at import time, so the service starts (and its tests run)
even where ``services.fulfillment.carrier.adapter`` is not there yet.
"""

from __future__ import annotations

import importlib
from typing import Any

from nameko.extensions import DependencyProvider

from services.fulfillment.carrier import CarrierProvider
from services.fulfillment.settings import check_start_up, get_settings

ADAPTER_MODULE = "services.fulfillment.carrier.adapter"


def make_carrier() -> Any:
    """``HttpCarrier`` built from ``FulfillmentSettings``."""
    settings = get_settings()
    adapter = importlib.import_module(ADAPTER_MODULE)
    return adapter.HttpCarrier(settings.carrier_url, settings.carrier_api_key_value(),
                               settings.carrier_webhook_secret_value(), timeout=settings.carrier_timeout)


class LazyCarrier:
    """Builds the adapter at the first call, then forwards to it (``CarrierProvider``)."""

    def __init__(self) -> None:
        self._carrier: Any = None

    def _get(self) -> Any:
        if self._carrier is None:
            self._carrier = make_carrier()
        return self._carrier

    def __getattr__(self, name: str) -> Any:
        return getattr(self._get(), name)

    def close(self) -> None:
        if self._carrier is not None and hasattr(self._carrier, "close"):
            self._carrier.close()
        self._carrier = None


class CarrierDependency(DependencyProvider):
    """Built when the service starts; a production run without carrier secrets stops there."""

    def setup(self) -> None:
        check_start_up()
        self.carrier = LazyCarrier()

    def stop(self) -> None:
        self.carrier.close()

    def kill(self) -> None:
        self.stop()

    def get_dependency(self, worker_ctx: Any) -> CarrierProvider:
        return self.carrier  # type: ignore[return-value]
