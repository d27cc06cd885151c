"""Settings of the sandbox carrier process (``CarrierSandboxSettings``), read from ``OMS_*``.

The API key and the webhook secret are shared with the fulfillment service, which calls the carrier with the
key and verifies the carrier's webhooks with the secret: both read the same variables, ``OMS_CARRIER_API_KEY``
and ``OMS_CARRIER_WEBHOOK_SECRET``. In development (``OMS_ENV=development``, the default) both fall back to
the fixed values below so ``make run`` works with no configuration; in production that fallback would let
anyone who read this file forge tracking updates, so without a configured value the process refuses to start
and names the variable (:func:`carrier_secret`, which the fulfillment settings use too).
"""

from __future__ import annotations

from functools import lru_cache

from pydantic import Field, SecretStr

from services.fulfillment.contracts.sandbox import WEBHOOK_PATH
from shared.config import Settings, SettingsError, load

DEV_API_KEY = "sandbox-carrier-key"
"""Development-only API key of the sandbox carrier."""

DEV_WEBHOOK_SECRET = "sandbox-carrier-webhook-secret"
"""Development-only secret the sandbox carrier signs webhooks with and fulfillment verifies them with."""

API_KEY_VARIABLE = "OMS_CARRIER_API_KEY"
SECRET_VARIABLE = "OMS_CARRIER_WEBHOOK_SECRET"

API_KEY_DESCRIPTION = (
    "API key (Bearer) of the shipping carrier (the sandbox carrier in development); required when "
    "OMS_ENV=production."
)
SECRET_DESCRIPTION = (
    "Secret the carrier signs its tracking webhooks with (HMAC-SHA256) and fulfillment verifies them with; "
    "required when OMS_ENV=production."
)


def carrier_secret(env: str, value: SecretStr | None, development_default: str, variable: str) -> str:
    """The configured value; in development only, the development default. Raises ``SettingsError`` otherwise."""
    if value is not None and value.get_secret_value():
        return value.get_secret_value()
    if env == "development":
        return development_default
    raise SettingsError(
        f"Invalid configuration:\n  {variable}: required when OMS_ENV={env} (the development value is used "
        "only in development)."
    )


class CarrierSandboxSettings(Settings):
    """The sandbox carrier process (development, tests, demos): where it listens and where webhooks go."""

    sandbox_carrier_host: str = Field("127.0.0.1", description="Address the sandbox carrier listens on.")
    sandbox_carrier_port: int = Field(8091, ge=1, le=65535, description="Port of the sandbox carrier.")
    sandbox_carrier_webhook_url: str | None = Field(
        None,
        description="Where the sandbox carrier sends its tracking webhooks; default: the gateway's carrier "
        "webhook endpoint on OMS_HTTP_HOST:OMS_HTTP_PORT.",
    )
    carrier_api_key: SecretStr | None = Field(None, description=API_KEY_DESCRIPTION)
    carrier_webhook_secret: SecretStr | None = Field(None, description=SECRET_DESCRIPTION)
    # The gateway's address, for the default webhook URL (the same variables the gateway reads).
    http_host: str = Field("127.0.0.1", description="Address the HTTP API listens on.")
    http_port: int = Field(8080, ge=1, le=65535, description="Port of the HTTP API.")

    def webhook_url(self) -> str:
        """``OMS_SANDBOX_CARRIER_WEBHOOK_URL``, else the local gateway's carrier webhook endpoint."""
        if self.sandbox_carrier_webhook_url:
            return self.sandbox_carrier_webhook_url
        host = "127.0.0.1" if self.http_host in ("0.0.0.0", "::") else self.http_host
        return f"http://{host}:{self.http_port}{WEBHOOK_PATH}"

    def api_key(self) -> str:
        """The key callers must send; refuses (SettingsError) a production run without one."""
        return carrier_secret(self.env, self.carrier_api_key, DEV_API_KEY, API_KEY_VARIABLE)

    def webhook_secret(self) -> str:
        """The secret webhooks are signed with; refuses (SettingsError) a production run without one."""
        return carrier_secret(self.env, self.carrier_webhook_secret, DEV_WEBHOOK_SECRET, SECRET_VARIABLE)


@lru_cache(maxsize=1)
def get_carrier_sandbox_settings() -> CarrierSandboxSettings:
    return load(CarrierSandboxSettings)
