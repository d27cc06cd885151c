"""Typed settings read from the environment (12-factor).

Every variable has a default that works on a developer machine with a local Postgres and RabbitMQ, so
``make run`` needs no configuration; a wrong value fails at start-up with a message naming the variable.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Literal, TypeVar, get_args

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

# The fulfilment stages in the order they come (the orders stage table), where card money may be captured.
CaptureStage = Literal["approved", "processed", "shipped", "delivered"]
CAPTURE_STAGES: tuple[str, ...] = get_args(CaptureStage)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="OMS_", extra="ignore")

    database_url: str = Field(
        "postgresql://postgres@127.0.0.1:5432/oms", description="Postgres URL; the database is created if missing."
    )
    amqp_url: str = Field("amqp://guest:guest@127.0.0.1:5672/%2F", description="RabbitMQ URL (vhost included).")
    max_workers: int = Field(32, ge=1, le=1000, description="Concurrent Nameko workers per service process.")
    retry_delays: str = Field(
        "1,5,30,120", description="Backoff of a failing event handler, seconds; after the last, dead-letter."
    )
    db_pool_size: int = Field(10, ge=1, le=200, description="Postgres connections per service process.")
    metrics_port: int = Field(0, ge=0, le=65535, description="Prometheus /metrics and /healthz port; 0 = off.")
    log_level: str = Field("INFO", description="Python log level.")
    sandbox_provider_url: str = Field(
        "http://127.0.0.1:8090", description="Base URL of the payment provider (the sandbox in development)."
    )
    payment_capture: Literal["automatic", "manual"] = Field(
        "automatic",
        description="Card links: capture at once (automatic), or authorize now and capture later (manual).",
    )
    payment_capture_stage: CaptureStage = Field(
        "shipped", description="With manual capture: the order stage at which authorized cards are captured."
    )
    state_dir: str = Field(".oms", description="Where `make run` keeps the local developer API key.")

    @field_validator("retry_delays")
    @classmethod
    def _delays_are_positive_ints(cls, value: str) -> str:
        parts = [p.strip() for p in value.split(",") if p.strip()]
        if not parts or not all(p.isdigit() and int(p) > 0 for p in parts):
            raise ValueError("must be a comma-separated list of positive whole seconds, e.g. 1,5,30")
        return ",".join(parts)

    @field_validator("log_level")
    @classmethod
    def _known_level(cls, value: str) -> str:
        value = value.upper()
        if value not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
            raise ValueError("must be one of DEBUG, INFO, WARNING, ERROR, CRITICAL")
        return value

    @property
    def retry_delay_list(self) -> list[int]:
        return [int(p) for p in self.retry_delays.split(",")]


class SettingsError(SystemExit):
    """Raised at start-up with a readable list of the bad variables."""


AnySettings = TypeVar("AnySettings", bound=Settings)


def load(settings_class: type[AnySettings]) -> AnySettings:
    """Read ``settings_class`` from the environment; a wrong value exits with the variables named."""
    try:
        return settings_class()
    except ValidationError as exc:
        lines = [
            f"  OMS_{str(err['loc'][0]).upper()}: {err['msg']}" for err in exc.errors()
        ]
        raise SettingsError("Invalid configuration:\n" + "\n".join(lines)) from None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return load(Settings)


def settings_table(settings_class: type[Settings] = Settings) -> list[tuple[str, str, str]]:
    """(variable, default, description) for the README and `oms config`."""
    rows = []
    for name, field in settings_class.model_fields.items():
        rows.append((f"OMS_{name.upper()}", str(field.default), field.description or ""))
    return rows
