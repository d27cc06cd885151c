"""Fulfillment settings (``FulfillmentSettings``), read from ``OMS_*``: where the carrier is and how it is
trusted, and the store's identity printed on documents and used as the default shipper.

The carrier API key and webhook secret fall back, in development only (``OMS_ENV=development``, the
default), to fixed values committed here that the sandbox carrier shares, so ``oms run`` works with no
configuration. In production those values would let anyone who read this file forge tracking updates, so
without configured ones the service refuses to start and names the variable.
"""

from __future__ import annotations

from functools import lru_cache

from pydantic import Field, SecretStr

from shared.config import SettingsError, StoreSettings, load

DEV_CARRIER_API_KEY = "sandbox-carrier-key"
DEV_CARRIER_WEBHOOK_SECRET = "sandbox-carrier-webhook-secret"


def _secret(env: str, value: SecretStr | None, development: str, variable: str, what: str) -> str:
    if value is not None and value.get_secret_value():
        return value.get_secret_value()
    if env == "development":
        return development
    raise SettingsError(
        f"Invalid configuration:\n  {variable}: required when OMS_ENV={env} (the development value is used only "
        f"in development); set {what}."
    )


class FulfillmentSettings(StoreSettings):
    """What the fulfillment service needs: the carrier, and the store's identity for documents and labels."""

    carrier_url: str = Field("http://127.0.0.1:8091",
                             description="Base URL of the shipping carrier's API (the sandbox carrier in development).")
    carrier_api_key: SecretStr | None = Field(
        None, description="API key for the carrier (Bearer); required when OMS_ENV=production.")
    carrier_webhook_secret: SecretStr | None = Field(
        None, description="Secret the carrier signs tracking webhooks with (HMAC-SHA256); required when "
        "OMS_ENV=production.")
    carrier_timeout: float = Field(10.0, gt=0, le=120, description="Seconds to wait for the carrier's answer.")
    store_address: str = Field("1 Market Street, San Francisco, 94105",
                               description="The store's address, one line, comma-separated (line1, city, postal "
                               "code): documents and the default ship-from address.")
    store_country: str = Field("US", description="The store's country (ISO 3166-1 alpha-2).")

    def carrier_api_key_value(self) -> str:
        return _secret(self.env, self.carrier_api_key, DEV_CARRIER_API_KEY, "OMS_CARRIER_API_KEY",
                       "the carrier's API key")

    def carrier_webhook_secret_value(self) -> str:
        return _secret(self.env, self.carrier_webhook_secret, DEV_CARRIER_WEBHOOK_SECRET,
                       "OMS_CARRIER_WEBHOOK_SECRET", "the carrier's webhook signing secret")

    def store_address_parts(self) -> list[str]:
        return [p.strip() for p in self.store_address.split(",") if p.strip()]


@lru_cache(maxsize=1)
def get_settings() -> FulfillmentSettings:
    return load(FulfillmentSettings)


def check_start_up() -> None:
    """Called before the service starts: a bad setting or a missing production secret stops it."""
    settings = get_settings()
    settings.carrier_api_key_value()
    settings.carrier_webhook_secret_value()
