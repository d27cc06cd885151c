"""Payments settings (``PaymentsSettings``) and the sandbox provider's (``SandboxSettings``), read from ``OMS_*``.

The webhook secret (``OMS_SANDBOX_WEBHOOK_SECRET``) is shared by the provider, which signs webhooks, and the
payments service, which verifies them. In development (``OMS_ENV=development``, the default) both fall back
to :data:`DEV_WEBHOOK_SECRET`, a fixed value committed here, so ``oms run`` works with no configuration. In
production that fallback would let anyone who read this file forge a payment, so without a configured
secret both refuse to start and name the variable.
"""

from __future__ import annotations

from functools import lru_cache

from pydantic import Field, SecretStr

from services.orders.contracts.schemas import Stage
from services.payments.contracts.sandbox import WEBHOOK_PATH
from services.payments.contracts.vocabulary import CaptureMethod, CaptureStage
from shared.config import Settings, SettingsError, load

DEV_WEBHOOK_SECRET = "whsec_b21zLWRldi1zYW5kYm94LXdlYmhvb2sh"
"""Development-only webhook secret shared by the sandbox provider and the payments service."""

SECRET_VARIABLE = "OMS_SANDBOX_WEBHOOK_SECRET"

_SECRET_DESCRIPTION = (
    "Secret (Standard Webhooks format) the provider signs webhooks with and payments verifies; "
    "required when OMS_ENV=production."
)


def _webhook_secret(env: str, secret: SecretStr | None) -> str:
    """The configured secret; in development only, the development one. Raises SettingsError otherwise."""
    if secret is not None and secret.get_secret_value():
        return secret.get_secret_value()
    if env == "development":
        return DEV_WEBHOOK_SECRET
    raise SettingsError(
        f"Invalid configuration:\n  {SECRET_VARIABLE}: required when OMS_ENV={env} (the development secret "
        "is used only in development); set the provider's webhook signing secret."
    )


class PaymentsSettings(Settings):
    """What the payments service needs: where the provider is, how cards are captured, the webhook secret."""

    sandbox_provider_url: str = Field(
        "http://127.0.0.1:8090", description="Base URL of the payment provider (the sandbox in development)."
    )
    payment_capture: CaptureMethod = Field(
        "automatic",
        description="Card links: capture at once (automatic), or authorize now and capture later (manual).",
    )
    payment_capture_stage: CaptureStage = Field(
        Stage.shipped,
        description="With manual capture: the order stage at which authorized cards are captured.",
    )
    sandbox_webhook_secret: SecretStr | None = Field(None, description=_SECRET_DESCRIPTION)

    def webhook_secret(self) -> str:
        """The secret webhooks are verified with; refuses (SettingsError) a production run without one."""
        return _webhook_secret(self.env, self.sandbox_webhook_secret)


class SandboxSettings(Settings):
    """The sandbox card provider process (development, tests, demos): where it listens and sends webhooks."""

    sandbox_host: str = Field("127.0.0.1", description="Address the sandbox payment provider listens on.")
    sandbox_port: int = Field(8090, ge=1, le=65535, description="Port of the sandbox payment provider.")
    sandbox_webhook_url: str | None = Field(
        None,
        description="Where the sandbox sends its webhooks; default: the gateway's webhook endpoint on "
        "OMS_HTTP_HOST:OMS_HTTP_PORT.",
    )
    sandbox_webhook_secret: SecretStr | None = Field(None, description=_SECRET_DESCRIPTION)
    sandbox_api_key: SecretStr | None = Field(
        None, description="API key the sandbox requires of its callers (Bearer); none required if unset."
    )
    # The gateway's address, for the default webhook URL (the same variables the gateway reads).
    http_host: str = Field("127.0.0.1", description="Address the HTTP API listens on.")
    http_port: int = Field(8080, ge=1, le=65535, description="Port of the HTTP API.")

    def webhook_url(self) -> str:
        """``OMS_SANDBOX_WEBHOOK_URL``, else the local gateway's webhook endpoint."""
        if self.sandbox_webhook_url:
            return self.sandbox_webhook_url
        host = "127.0.0.1" if self.http_host in ("0.0.0.0", "::") else self.http_host
        return f"http://{host}:{self.http_port}{WEBHOOK_PATH}"

    def webhook_secret(self) -> str:
        """The secret webhooks are signed with; refuses (SettingsError) a production run without one."""
        return _webhook_secret(self.env, self.sandbox_webhook_secret)

    def api_key(self) -> str | None:
        return self.sandbox_api_key.get_secret_value() if self.sandbox_api_key else None


@lru_cache(maxsize=1)
def get_settings() -> PaymentsSettings:
    return load(PaymentsSettings)


@lru_cache(maxsize=1)
def get_sandbox_settings() -> SandboxSettings:
    return load(SandboxSettings)


def check_start_up() -> None:
    """Called before the payments service starts: a bad setting or a missing production secret stops it."""
    get_settings().webhook_secret()
