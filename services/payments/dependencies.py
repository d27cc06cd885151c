"""The payment provider as a Nameko dependency: one adapter (an HTTP client with its pool) per process."""

from __future__ import annotations

from typing import Any

from nameko.extensions import DependencyProvider

from services.payments.provider import HttpSandboxProvider, PaymentProvider
from services.payments.settings import check_start_up, get_settings


def make_provider() -> HttpSandboxProvider:
    settings = get_settings()
    return HttpSandboxProvider(settings.sandbox_provider_url, settings.webhook_secret())


class ProviderDependency(DependencyProvider):
    """Built when the service starts; a production run without a webhook secret stops there."""

    def setup(self) -> None:
        check_start_up()
        self.provider: HttpSandboxProvider | None = None

    def start(self) -> None:
        self.provider = make_provider()

    def stop(self) -> None:
        if self.provider is not None:
            self.provider.close()

    def get_dependency(self, worker_ctx: Any) -> PaymentProvider:
        assert self.provider is not None
        return self.provider
