"""Settings fail fast with the variable's name; the envelope refuses what can never be handled, saying why."""

from __future__ import annotations

import json
import uuid

import pytest

from services.gateway.settings import get_settings  # the common settings and the gateway's (OMS_HTTP_PORT)
from shared.config import SettingsError
from shared.envelope import Envelope, parse_envelope
from shared.errors import PermanentError

pytestmark = pytest.mark.unit


def test_a_bad_setting_stops_start_up_naming_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OMS_HTTP_PORT", "eighty")
    monkeypatch.setenv("OMS_RETRY_DELAYS", "1,-5")
    get_settings.cache_clear()
    try:
        with pytest.raises(SettingsError) as err:
            get_settings()
    finally:
        get_settings.cache_clear()
    message = str(err.value)
    assert "OMS_HTTP_PORT" in message and "OMS_RETRY_DELAYS" in message


def test_defaults_need_no_configuration(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("OMS_DATABASE_URL", "OMS_AMQP_URL", "OMS_HTTP_PORT", "OMS_RETRY_DELAYS"):
        monkeypatch.delenv(var, raising=False)
    get_settings.cache_clear()
    try:
        s = get_settings()
    finally:
        get_settings.cache_clear()
    assert s.database_url.startswith("postgresql://") and s.http_port == 8080
    assert s.retry_delay_list == [1, 5, 30, 120]


def _event(**overrides: object) -> dict[str, object]:
    base: dict[str, object] = {
        "specversion": "1.0", "id": str(uuid.uuid4()), "source": "/oms/orders", "type": "order.placed.v1",
        "subject": str(uuid.uuid4()), "time": "2026-11-23T12:00:00Z", "datacontenttype": "application/json",
        "sequence": 1, "correlationid": "c", "causationid": "x", "data": {},
    }
    base.update(overrides)
    return base


def test_a_valid_cloudevent_round_trips() -> None:
    env = parse_envelope(json.dumps(_event()).encode())
    assert isinstance(env, Envelope) and env.source_service == "orders"
    assert parse_envelope(env.to_json()) == env


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"\xff\xfe not utf8", "body is not JSON"),
        (b"[1, 2]", "not a JSON object"),
        (json.dumps(_event(sequence=0)).encode(), "sequence"),
        (json.dumps(_event(specversion="0.3")).encode(), "specversion"),
        (json.dumps({k: v for k, v in _event().items() if k != "subject"}).encode(), "subject"),
    ],
)
def test_what_can_never_be_handled_is_a_permanent_error_naming_why(body: bytes, reason: str) -> None:
    with pytest.raises(PermanentError, match=reason):
        parse_envelope(body)


# ------------------------------------------------------------------------------------------------ oms config


def test_oms_config_masks_secrets_and_url_passwords(monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from oms.cli import app

    monkeypatch.setenv("OMS_DATABASE_URL", "postgresql://oms:db-pass-4711@db.example:5432/oms")
    monkeypatch.setenv("OMS_AMQP_URL", "amqp://oms:mq-pass-4712@mq.example:5672/%2F")
    monkeypatch.setenv("OMS_SANDBOX_WEBHOOK_SECRET", "whsec_c2VjcmV0LTQ3MTM=")
    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(app, ["config"], env={"COLUMNS": "400"})
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 0, result.output
    out = result.output
    for secret in ("db-pass-4711", "mq-pass-4712", "c2VjcmV0LTQ3MTM", "whsec_"):
        assert secret not in out
    assert "postgresql://oms:****@db.example:5432/oms" in out and "amqp://oms:****@mq.example:5672/%2F" in out
    secret_line = next(line for line in out.splitlines() if "OMS_SANDBOX_WEBHOOK_SECRET" in line)
    assert "**********" in secret_line


def test_oms_config_lists_every_variable_of_every_registry_settings_class_once() -> None:
    from typer.testing import CliRunner

    from oms.cli import app
    from shared.registry import settings_classes

    result = CliRunner().invoke(app, ["config"], env={"COLUMNS": "400"})
    assert result.exit_code == 0, result.output
    first_cells = [line.split("│")[1].strip() for line in result.output.splitlines() if line.startswith("│")]
    listed = [cell for cell in first_cells if cell.startswith("OMS_")]
    assert len(listed) == len(set(listed)), "a variable is listed twice"
    for service, cls in settings_classes().items():
        for name in cls.model_fields:
            assert f"OMS_{name.upper()}" in listed, f"{service}: OMS_{name.upper()}"


def test_a_model_level_settings_error_is_readable() -> None:
    from pydantic import model_validator

    from shared.config import Settings, load

    class Strict(Settings):
        @model_validator(mode="after")
        def _refuse(self) -> Strict:
            raise ValueError("OMS_SOMETHING must be set in production")

    with pytest.raises(SettingsError, match="OMS_SOMETHING must be set in production"):
        load(Strict)
