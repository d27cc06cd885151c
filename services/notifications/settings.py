"""Notifications settings (``NotificationSettings``), read from ``OMS_*``: the mail server, the SMS and WhatsApp
providers, the public address their webhooks call back, and the sender loop's pacing. The store's identity
(name, e-mail, phone) comes from ``shared.config.StoreSettings``.

Development defaults point at the sandbox messaging provider (port 8092) and the local mail catcher
(SMTP 127.0.0.1:1025). The providers' secrets fall back, in development only, to fixed values the sandbox
shares; in production a missing secret stops the service naming the variable. What the store can change at
run time (which kinds notify, on which channels, the language, the store and test addresses) is NOT here: it
is in the database (``update_settings``), effective at once.
"""

from __future__ import annotations

from functools import lru_cache
from urllib.parse import urlsplit

from pydantic import Field, SecretStr

from shared.config import SettingsError, StoreSettings, load

DEV_SMS_AUTH_TOKEN = "sandbox-sms-auth-token"
DEV_WHATSAPP_ACCESS_TOKEN = "sandbox-whatsapp-access-token"
DEV_WHATSAPP_APP_SECRET = "sandbox-whatsapp-app-secret"

SANDBOX_HOSTS = frozenset({"127.0.0.1", "localhost", "::1", "sandbox-messaging"})
"""Hosts of the sandbox messaging provider (loopback in development, the compose service name): a test order's
SMS or WhatsApp message may go there; anywhere else it is redirected to the test recipient's e-mail."""


def _secret(env: str, value: SecretStr | None, development: str, variable: str) -> str:
    if value is not None and value.get_secret_value():
        return value.get_secret_value()
    if env == "development":
        return development
    raise SettingsError(
        f"Invalid configuration:\n  {variable}: required when OMS_ENV={env} (the development value is used only "
        "in development)."
    )


class NotificationSettings(StoreSettings):
    """What the notifications service needs: where to send mail, SMS and WhatsApp messages, and how often."""

    smtp_host: str = Field("127.0.0.1", description="SMTP server for e-mail (the local mail catcher in development).")
    smtp_port: int = Field(1025, ge=1, le=65535, description="SMTP server port.")
    smtp_username: str | None = Field(None, description="SMTP user name (unset: no authentication).")
    smtp_password: SecretStr | None = Field(None, description="SMTP password.")
    smtp_starttls: bool = Field(False, description="Upgrade the SMTP connection with STARTTLS.")
    smtp_from: str | None = Field(None,
                                  description="From address of e-mails (unset: OMS_STORE_NAME <OMS_STORE_EMAIL>).")
    sms_url: str = Field("http://127.0.0.1:8092", description="Base URL of the SMS provider's API (Twilio-shaped).")
    sms_account_sid: str = Field("ACsandbox", description="SMS provider account SID (HTTP Basic user).")
    sms_auth_token: SecretStr | None = Field(
        None, description="SMS provider auth token (HTTP Basic password, webhook signatures); required when "
        "OMS_ENV=production.")
    sms_from: str = Field("+15550100", description="Sender number of SMS messages.")
    whatsapp_url: str = Field("http://127.0.0.1:8092", description="Base URL of the WhatsApp Business Cloud API.")
    whatsapp_phone_number_id: str = Field("1000000001", description="WhatsApp Business phone number id.")
    whatsapp_access_token: SecretStr | None = Field(
        None, description="WhatsApp Cloud API access token (Bearer); required when OMS_ENV=production.")
    whatsapp_app_secret: SecretStr | None = Field(
        None, description="WhatsApp app secret (webhook signatures, X-Hub-Signature-256); required when "
        "OMS_ENV=production.")
    public_url: str = Field("http://127.0.0.1:8080",
                            description="Public base URL of the gateway: providers' status callbacks go there.")
    channel_timeout: float = Field(10.0, gt=0, le=120, description="Seconds to wait for the mail server or a provider.")
    notify_poll_interval: float = Field(0.5, gt=0, le=60,
                                        description="Seconds the message sender waits when no message is due.")
    notify_claim_timeout: float = Field(
        60.0, gt=0, le=3600, description="Seconds a message claimed by a sender stays claimed; after a crash it is "
        "sent again (same idempotency key) once this has passed.")
    notify_retry_base: float = Field(5.0, gt=0, le=3600,
                                     description="First retry delay of a message, seconds (doubles each attempt, "
                                     "with jitter, at most 1 hour).")
    notify_max_attempts: int = Field(8, ge=1, le=50,
                                     description="Attempts of a message before it is marked failed.")

    def sms_auth_token_value(self) -> str:
        return _secret(self.env, self.sms_auth_token, DEV_SMS_AUTH_TOKEN, "OMS_SMS_AUTH_TOKEN")

    def whatsapp_access_token_value(self) -> str:
        return _secret(self.env, self.whatsapp_access_token, DEV_WHATSAPP_ACCESS_TOKEN, "OMS_WHATSAPP_ACCESS_TOKEN")

    def whatsapp_app_secret_value(self) -> str:
        return _secret(self.env, self.whatsapp_app_secret, DEV_WHATSAPP_APP_SECRET, "OMS_WHATSAPP_APP_SECRET")

    def mail_from(self) -> str:
        return self.smtp_from or f"{self.store_name} <{self.store_email}>"

    def sandbox_channels(self) -> frozenset[str]:
        """The phone channels whose provider is the sandbox (a test order may message it)."""
        found = set()
        if urlsplit(self.sms_url).hostname in SANDBOX_HOSTS:
            found.add("sms")
        if urlsplit(self.whatsapp_url).hostname in SANDBOX_HOSTS:
            found.add("whatsapp")
        return frozenset(found)


@lru_cache(maxsize=1)
def get_settings() -> NotificationSettings:
    return load(NotificationSettings)


def check_start_up() -> None:
    """Called before the service starts: a bad setting or a missing production secret stops it."""
    settings = get_settings()
    settings.sms_auth_token_value()
    settings.whatsapp_access_token_value()
    settings.whatsapp_app_secret_value()
