"""Fulfillment settings and manifest: development carrier secrets only in development, the store identity,
the README tables rendered from the vocabulary, and the adapter imported only at first use."""

from __future__ import annotations

import pytest
from pydantic import SecretStr

from services.fulfillment.contracts.vocabulary import FULFILLMENT_RULES, ShipmentStatus
from services.fulfillment.manifest import fulfillment_status_table, shipment_status_table
from services.fulfillment.settings import (
    DEV_CARRIER_API_KEY,
    DEV_CARRIER_WEBHOOK_SECRET,
    FulfillmentSettings,
    check_start_up,
    get_settings,
)
from shared.config import SettingsError

pytestmark = pytest.mark.unit

VARIABLES = ("OMS_ENV", "OMS_CARRIER_API_KEY", "OMS_CARRIER_WEBHOOK_SECRET", "OMS_CARRIER_URL", "OMS_STORE_ADDRESS")


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in VARIABLES:
        monkeypatch.delenv(var, raising=False)
    get_settings.cache_clear()


def test_development_defaults_work_with_no_configuration() -> None:
    s = FulfillmentSettings()
    assert s.carrier_url == "http://127.0.0.1:8091"
    assert (s.carrier_api_key_value(), s.carrier_webhook_secret_value()) == (DEV_CARRIER_API_KEY,
                                                                            DEV_CARRIER_WEBHOOK_SECRET)


@pytest.mark.parametrize("variable", ["OMS_CARRIER_API_KEY", "OMS_CARRIER_WEBHOOK_SECRET"])
def test_production_without_carrier_secrets_refuses_to_start_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, variable: str
) -> None:
    monkeypatch.setenv("OMS_ENV", "production")
    other = ({"OMS_CARRIER_API_KEY", "OMS_CARRIER_WEBHOOK_SECRET"} - {variable}).pop()
    monkeypatch.setenv(other, "configured")
    with pytest.raises(SettingsError, match=variable):
        check_start_up()


def test_production_uses_the_configured_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    s = FulfillmentSettings(env="production", carrier_api_key=SecretStr("k"), carrier_webhook_secret=SecretStr("w"))
    assert (s.carrier_api_key_value(), s.carrier_webhook_secret_value()) == ("k", "w")


def test_the_store_address_is_one_comma_separated_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OMS_STORE_ADDRESS", "5 Rue Verte , Tunis,1001")
    assert FulfillmentSettings().store_address_parts() == ["5 Rue Verte", "Tunis", "1001"]


def test_readme_tables_have_a_row_per_rule_and_per_shipment_status() -> None:
    rules = fulfillment_status_table().splitlines()[2:]
    assert [row.split("|")[2].strip(" `") for row in rules] == [r.status.value for r in FULFILLMENT_RULES]
    shipments = shipment_status_table().splitlines()[2:]
    assert [row.split("|")[1].strip(" `") for row in shipments] == [s.value for s in ShipmentStatus]
    assert "| `delivered` | (final) | no |" in shipment_status_table()


def test_the_carrier_adapter_is_imported_only_at_first_use(monkeypatch: pytest.MonkeyPatch) -> None:
    from services.fulfillment import dependencies

    built: list[tuple[object, ...]] = []

    class FakeAdapter:
        def HttpCarrier(self, *args: object, **kw: object) -> str:  # noqa: N802 - the adapter's class name
            built.append((*args, kw["timeout"]))
            return "carrier"

    monkeypatch.setattr(dependencies.importlib, "import_module", lambda name: FakeAdapter())
    lazy = dependencies.LazyCarrier()
    assert built == []
    assert lazy._get() == "carrier"
    assert built == [("http://127.0.0.1:8091", DEV_CARRIER_API_KEY, DEV_CARRIER_WEBHOOK_SECRET, 10.0)]
