"""Payments and sandbox settings: the development webhook secret only in development, the rest from OMS_*."""

from __future__ import annotations

import pytest
from pydantic import SecretStr

from services.orders.contracts.schemas import Stage
from services.payments.settings import DEV_WEBHOOK_SECRET, PaymentsSettings, SandboxSettings, check_start_up
from services.payments.settings import get_settings as payments_settings
from shared.config import SettingsError, load

pytestmark = pytest.mark.unit

VARIABLES = ("OMS_ENV", "OMS_SANDBOX_WEBHOOK_SECRET", "OMS_HTTP_HOST", "OMS_HTTP_PORT", "OMS_SANDBOX_WEBHOOK_URL",
             "OMS_PAYMENT_CAPTURE_STAGE", "OMS_SANDBOX_API_KEY")


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in VARIABLES:
        monkeypatch.delenv(var, raising=False)
    payments_settings.cache_clear()


def test_development_uses_the_development_secret_with_no_configuration() -> None:
    assert PaymentsSettings().webhook_secret() == DEV_WEBHOOK_SECRET
    assert SandboxSettings().webhook_secret() == DEV_WEBHOOK_SECRET


@pytest.mark.parametrize("cls", [PaymentsSettings, SandboxSettings])
def test_production_without_a_secret_refuses_to_start_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, cls: type[PaymentsSettings] | type[SandboxSettings]
) -> None:
    monkeypatch.setenv("OMS_ENV", "production")
    with pytest.raises(SettingsError, match="OMS_SANDBOX_WEBHOOK_SECRET"):
        cls().webhook_secret()


def test_the_service_start_up_check_refuses_production_without_a_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OMS_ENV", "production")
    try:
        with pytest.raises(SettingsError, match="OMS_SANDBOX_WEBHOOK_SECRET"):
            check_start_up()
        monkeypatch.setenv("OMS_SANDBOX_WEBHOOK_SECRET", "whsec_c2VjcmV0LXNlY3JldC1zZWNyZXQ=")
        payments_settings.cache_clear()
        check_start_up()
    finally:
        payments_settings.cache_clear()


def test_production_uses_the_configured_secret_and_never_prints_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OMS_ENV", "production")
    monkeypatch.setenv("OMS_SANDBOX_WEBHOOK_SECRET", "whsec_c2VjcmV0LXNlY3JldC1zZWNyZXQ=")
    s = PaymentsSettings()
    assert s.webhook_secret() == "whsec_c2VjcmV0LXNlY3JldC1zZWNyZXQ="
    assert isinstance(s.sandbox_webhook_secret, SecretStr) and "c2Vj" not in repr(s) and "c2Vj" not in str(s)


def test_the_sandbox_sends_webhooks_to_the_local_gateway_unless_told_otherwise(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OMS_HTTP_HOST", "0.0.0.0")
    monkeypatch.setenv("OMS_HTTP_PORT", "9000")
    assert SandboxSettings().webhook_url() == "http://127.0.0.1:9000/api/v1/payments/webhooks/sandbox"
    monkeypatch.setenv("OMS_SANDBOX_WEBHOOK_URL", "http://gateway:8080/hook")
    assert SandboxSettings().webhook_url() == "http://gateway:8080/hook"
    s = SandboxSettings()
    assert (s.sandbox_host, s.sandbox_port, s.api_key()) == ("127.0.0.1", 8090, None)


def test_the_capture_stage_is_an_orders_stage_where_money_may_be_captured(monkeypatch: pytest.MonkeyPatch) -> None:
    assert PaymentsSettings().payment_capture_stage is Stage.shipped
    monkeypatch.setenv("OMS_PAYMENT_CAPTURE_STAGE", "processed")
    assert PaymentsSettings().payment_capture_stage is Stage.processed
    monkeypatch.setenv("OMS_PAYMENT_CAPTURE_STAGE", "cancelled")
    with pytest.raises(SettingsError, match="OMS_PAYMENT_CAPTURE_STAGE"):
        load(PaymentsSettings)
