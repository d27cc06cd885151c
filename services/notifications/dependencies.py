"""The channel adapters and the message sender as Nameko dependencies, one of each per process.

The adapters (``channels.smtp``, ``channels.sms``, ``channels.whatsapp``) are imported at first use, not at
import time, so the service starts (and its tests run) where they are not there yet. The sender is a thread per
process (like the outbox relay): several processes share the work through ``FOR UPDATE SKIP LOCKED``.
"""

from __future__ import annotations

import importlib
from typing import Any

from nameko.extensions import DependencyProvider, Extension

from services.notifications.contracts.sandbox import SMS_WEBHOOK_PATH
from services.notifications.settings import NotificationSettings, check_start_up, get_settings
from services.notifications.usecases import Channels, Sender
from shared.config import get_settings as common_settings
from shared.db import Database

SERVICE = "notifications"


class Lazy:
    """Builds an adapter at its first call, then forwards to it."""

    def __init__(self, module: str, build: Any) -> None:
        self._module = module
        self._build = build
        self._adapter: Any = None

    def _get(self) -> Any:
        if self._adapter is None:
            self._adapter = self._build(importlib.import_module(self._module), get_settings())
        return self._adapter

    def __getattr__(self, name: str) -> Any:
        return getattr(self._get(), name)

    def close(self) -> None:
        if self._adapter is not None and hasattr(self._adapter, "close"):
            self._adapter.close()
        self._adapter = None


def _smtp(module: Any, s: NotificationSettings) -> Any:
    return module.SmtpSender(s.smtp_host, s.smtp_port, s.smtp_username,
                             s.smtp_password.get_secret_value() if s.smtp_password else None, s.smtp_starttls,
                             s.mail_from(), s.channel_timeout)


def _sms(module: Any, s: NotificationSettings) -> Any:
    return module.HttpSms(s.sms_url, s.sms_account_sid, s.sms_auth_token_value(), s.sms_from,
                          s.public_url.rstrip("/") + SMS_WEBHOOK_PATH, s.channel_timeout)


def _whatsapp(module: Any, s: NotificationSettings) -> Any:
    return module.HttpWhatsApp(s.whatsapp_url, s.whatsapp_phone_number_id, s.whatsapp_access_token_value(),
                               s.whatsapp_app_secret_value(), s.channel_timeout)


def make_channels() -> Channels:
    return Channels(
        email=Lazy("services.notifications.channels.smtp", _smtp),  # type: ignore[arg-type]
        sms=Lazy("services.notifications.channels.sms", _sms),  # type: ignore[arg-type]
        whatsapp=Lazy("services.notifications.channels.whatsapp", _whatsapp),  # type: ignore[arg-type]
    )


def close_channels(channels: Channels) -> None:
    for adapter in (channels.email, channels.sms, channels.whatsapp):
        if isinstance(adapter, Lazy):
            adapter.close()


class ChannelsDependency(DependencyProvider):
    """The three adapters, built when the service starts; a production run without provider secrets stops here."""

    def setup(self) -> None:
        check_start_up()
        self.channels = make_channels()

    def stop(self) -> None:
        close_channels(self.channels)

    def kill(self) -> None:
        self.stop()

    def get_dependency(self, worker_ctx: Any) -> Channels:
        return self.channels


class SenderLoop(Extension):
    """Runs ``usecases.Sender`` in a managed thread for the container's lifetime, on a small pool of its own."""

    def setup(self) -> None:
        common = common_settings()
        self.db = Database(self.container.config.get("OMS_DATABASE_URL", common.database_url), SERVICE, size=2)
        self.channels = make_channels()
        self.sender = Sender(self.db, self.channels, get_settings())
        self._gt: Any = None

    def start(self) -> None:
        self.db.open()
        self._gt = self.container.spawn_managed_thread(self.sender.run, identifier="notifications-sender")

    def stop(self) -> None:
        self.sender.stop()
        if self._gt is not None:
            self._gt.wait()
        close_channels(self.channels)
        self.db.close()

    def kill(self) -> None:
        self.sender.stop()
        if self._gt is not None:
            self._gt.kill()
        self.db.close()


class SenderProvider(DependencyProvider):
    """Declares the sender on the service class: ``sender = SenderProvider()`` (a sub-extension, started and
    stopped with the service)."""

    def __init__(self) -> None:
        self.loop = SenderLoop()

    def get_dependency(self, worker_ctx: Any) -> Sender | None:
        return getattr(self.loop, "sender", None)
