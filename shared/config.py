"""Typed settings read from the environment (12-factor).

Every variable has a default that works on a developer machine with a local Postgres and RabbitMQ, so
``make run`` needs no configuration; a wrong value fails at start-up with a message naming the variable.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Literal, TypeVar

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="OMS_", extra="ignore")

    env: Literal["development", "production"] = Field(
        "development",
        description="development: built-in development secrets may be used; production: every secret must be set.",
    )
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


S = TypeVar("S", bound=Settings)


def load(cls: type[S]) -> S:
    """Read a settings class from the environment; a bad value stops start-up naming the variable."""
    try:
        return cls()
    except ValidationError as exc:
        lines = [
            f"  OMS_{str(err['loc'][0]).upper()}: {err['msg']}" for err in exc.errors()
        ]
        raise SettingsError("Invalid configuration:\n" + "\n".join(lines)) from None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return load(Settings)


def settings_table(*classes: type[Settings]) -> list[tuple[str, str, str]]:
    """(variable, default, description) for the README and `oms config`: the common settings, then each
    given class's own (a variable appears once)."""
    rows: dict[str, tuple[str, str, str]] = {}
    every: tuple[type[Settings], ...] = (Settings, *classes)
    for cls in every:
        for name, field in cls.model_fields.items():
            var = f"OMS_{name.upper()}"
            rows.setdefault(var, (var, str(field.default), field.description or ""))
    return list(rows.values())
