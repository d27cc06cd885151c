"""The gateway's settings: the common ones (``shared.config.Settings``) plus where it listens and how long
it waits for a service, and the token of WhatsApp's webhook subscription handshake."""

from __future__ import annotations

from functools import lru_cache

from pydantic import Field, SecretStr

from shared.config import Settings, load


class GatewaySettings(Settings):
    http_host: str = Field("127.0.0.1", description="Address the HTTP API listens on.")
    http_port: int = Field(8080, ge=1, le=65535, description="Port of the HTTP API.")
    rpc_timeout_seconds: float = Field(
        10.0, gt=0, description="How long the gateway waits for the services in one request (every call, batch wait "
        "and retry); then it answers 504."
    )
    session_hours: float = Field(12.0, gt=0, description="How long a dashboard sign-in lasts.")
    signin_max_failures_per_email: int = Field(
        5, ge=1, description="Failed dashboard sign-ins allowed per e-mail address within "
        "OMS_SIGNIN_WINDOW_SECONDS; then 429 until the oldest one leaves the window.")
    signin_max_failures_per_address: int = Field(
        50, ge=1, description="Failed dashboard sign-ins allowed per client address within OMS_SIGNIN_WINDOW_SECONDS.")
    signin_window_seconds: float = Field(900.0, gt=0, description="The window of the sign-in rate limit.")
    whatsapp_verify_token: SecretStr | None = Field(
        None, description="The token WhatsApp sends in its webhook subscription handshake (you choose it in the "
        "Meta app's webhook settings); development: `oms-dev-verify-token` if unset; production: the handshake "
        "is refused until it is set."
    )

    def whatsapp_verify_token_value(self) -> str | None:
        """The configured token; in development only, the development one; None: refuse every handshake."""
        if self.whatsapp_verify_token is not None and self.whatsapp_verify_token.get_secret_value():
            return self.whatsapp_verify_token.get_secret_value()
        return DEV_WHATSAPP_VERIFY_TOKEN if self.env == "development" else None


DEV_WHATSAPP_VERIFY_TOKEN = "oms-dev-verify-token"


@lru_cache(maxsize=1)
def get_settings() -> GatewaySettings:
    return load(GatewaySettings)
