"""Settings of the sandbox messaging provider (``MessagingSandboxSettings``) and of the development mail catcher
(``MailCatcherSettings``), read from ``OMS_*``.

The provider's credentials are the notifications service's: the SMS account SID and auth token (HTTP Basic;
the token signs status callbacks), the WhatsApp access token (Bearer) and app secret (signs webhooks). Both
read the same variables (``OMS_SMS_ACCOUNT_SID``, ``OMS_SMS_AUTH_TOKEN``, ``OMS_WHATSAPP_ACCESS_TOKEN``,
``OMS_WHATSAPP_APP_SECRET``). In development (the default) the secrets fall back to the fixed values below, the
same the service falls back to, so ``make run`` needs no configuration; in production the sandbox refuses to
start without them, naming the variable.
"""

from __future__ import annotations

from functools import lru_cache

from pydantic import Field, SecretStr

from services.notifications.contracts.sandbox import SMS_WEBHOOK_PATH, WHATSAPP_WEBHOOK_PATH
from shared.config import Settings, SettingsError, load

DEV_SMS_ACCOUNT_SID = "ACsandbox"
DEV_SMS_AUTH_TOKEN = "sandbox-sms-auth-token"
DEV_WHATSAPP_ACCESS_TOKEN = "sandbox-whatsapp-access-token"
DEV_WHATSAPP_APP_SECRET = "sandbox-whatsapp-app-secret"


def messaging_secret(env: str, value: SecretStr | None, development_default: str, variable: str) -> str:
    """The configured value; in development only, the development default. Raises ``SettingsError`` otherwise."""
    if value is not None and value.get_secret_value():
        return value.get_secret_value()
    if env == "development":
        return development_default
    raise SettingsError(
        f"Invalid configuration:\n  {variable}: required when OMS_ENV={env} (the development value is used "
        "only in development)."
    )


class MessagingSandboxSettings(Settings):
    """The sandbox messaging provider process (development, tests, demos): where it listens, where its webhooks
    go, and how it behaves."""

    sandbox_messaging_host: str = Field("127.0.0.1", description="Address the sandbox messaging provider listens on.")
    sandbox_messaging_port: int = Field(8092, ge=1, le=65535, description="Port of the sandbox messaging provider.")
    sandbox_messaging_sms_webhook_url: str | None = Field(
        None,
        description="Where the sandbox sends SMS status callbacks of a message sent without StatusCallback; "
        "default: the gateway's SMS webhook on OMS_HTTP_HOST:OMS_HTTP_PORT.",
    )
    sandbox_messaging_whatsapp_webhook_url: str | None = Field(
        None,
        description="Where the sandbox sends WhatsApp webhooks (receipts, inbound messages); default: the "
        "gateway's WhatsApp webhook on OMS_HTTP_HOST:OMS_HTTP_PORT.",
    )
    sandbox_messaging_chaos: bool = Field(
        False, description="Sandbox messaging provider: send receipts possibly twice and out of order."
    )
    sandbox_messaging_receipt_delay: float = Field(
        0.3, ge=0, le=60, description="Seconds between an accepted message and each of its receipts (sandbox)."
    )
    sms_account_sid: str = Field(DEV_SMS_ACCOUNT_SID, description="SMS provider account SID (HTTP Basic user).")
    sms_auth_token: SecretStr | None = Field(
        None, description="SMS provider auth token (HTTP Basic password, webhook signatures); required when "
        "OMS_ENV=production."
    )
    whatsapp_access_token: SecretStr | None = Field(
        None, description="WhatsApp Cloud API access token (Bearer); required when OMS_ENV=production."
    )
    whatsapp_app_secret: SecretStr | None = Field(
        None, description="WhatsApp app secret (webhook signatures, X-Hub-Signature-256); required when "
        "OMS_ENV=production."
    )
    # The gateway's address, for the default webhook URLs (the same variables the gateway reads).
    http_host: str = Field("127.0.0.1", description="Address the HTTP API listens on.")
    http_port: int = Field(8080, ge=1, le=65535, description="Port of the HTTP API.")

    def _gateway(self) -> str:
        host = "127.0.0.1" if self.http_host in ("0.0.0.0", "::") else self.http_host
        return f"http://{host}:{self.http_port}"

    def sms_webhook_url(self) -> str:
        return self.sandbox_messaging_sms_webhook_url or self._gateway() + SMS_WEBHOOK_PATH

    def whatsapp_webhook_url(self) -> str:
        return self.sandbox_messaging_whatsapp_webhook_url or self._gateway() + WHATSAPP_WEBHOOK_PATH

    def sms_auth_token_value(self) -> str:
        return messaging_secret(self.env, self.sms_auth_token, DEV_SMS_AUTH_TOKEN, "OMS_SMS_AUTH_TOKEN")

    def whatsapp_access_token_value(self) -> str:
        return messaging_secret(self.env, self.whatsapp_access_token, DEV_WHATSAPP_ACCESS_TOKEN,
                                "OMS_WHATSAPP_ACCESS_TOKEN")

    def whatsapp_app_secret_value(self) -> str:
        return messaging_secret(self.env, self.whatsapp_app_secret, DEV_WHATSAPP_APP_SECRET,
                                "OMS_WHATSAPP_APP_SECRET")


class MailCatcherSettings(Settings):
    """The development mail catcher (``sandbox-mail``): an SMTP server that keeps what it receives and shows it
    over HTTP (``GET /messages?to=``)."""

    mail_catcher_host: str = Field("127.0.0.1", description="Address the development mail catcher listens on.")
    mail_catcher_smtp_port: int = Field(1025, ge=1, le=65535, description="SMTP port of the mail catcher.")
    mail_catcher_http_port: int = Field(8093, ge=1, le=65535,
                                        description="HTTP port of the mail catcher (GET /messages?to=).")
    mail_catcher_keep: int = Field(1000, ge=1, le=100_000,
                                   description="How many of the latest mails the mail catcher keeps.")


@lru_cache(maxsize=1)
def get_messaging_sandbox_settings() -> MessagingSandboxSettings:
    return load(MessagingSandboxSettings)


@lru_cache(maxsize=1)
def get_mail_catcher_settings() -> MailCatcherSettings:
    return load(MailCatcherSettings)
