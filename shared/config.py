"""Typed settings read from the environment (12-factor): the common ones here, each service's in its own class.

Every variable has a default that works on a developer machine with a local Postgres and RabbitMQ, so
``make run`` needs no configuration; a wrong value fails at start-up with a message naming the variable.
Each service's settings class subclasses :class:`Settings` and is named in its manifest; ``oms config`` and
the README's configuration table list every variable of every such class (:func:`config_rows`), with
secrets and the passwords inside URLs masked.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any, Literal, TypeVar
from urllib.parse import urlsplit, urlunsplit

from pydantic import Field, SecretStr, ValidationError, field_validator
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


class StoreSettings(Settings):
    """The store's identity (``OMS_STORE_NAME/EMAIL/PHONE``): printed on fulfillment's documents and labels, and
    used by notifications as the sender's name and the address new orders are e-mailed to. Services whose
    settings need it subclass this instead of :class:`Settings`."""

    store_name: str = Field("OMS Demo Store", description="The store's name on documents, labels and messages.")
    store_email: str = Field("orders@example.com",
                             description="The store's e-mail: on documents, and where new orders are e-mailed.")
    store_phone: str = Field("+1 555 0100", description="The store's phone on documents, labels and messages.")


class SettingsError(SystemExit):
    """Raised at start-up with a readable list of the bad variables."""


S = TypeVar("S", bound=Settings)


def load(cls: type[S]) -> S:
    """Read a settings class from the environment; a bad value stops start-up naming each variable."""
    try:
        return cls()
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            msg = str(err["msg"]).removeprefix("Value error, ")
            lines.append(f"  OMS_{str(err['loc'][0]).upper()}: {msg}" if err["loc"] else f"  {msg}")
        raise SettingsError("Invalid configuration:\n" + "\n".join(lines)) from None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return load(Settings)


MASK = "**********"


def shown(value: Any) -> str:
    """A setting's value as it may be printed: secrets masked, and the password inside a URL."""
    if isinstance(value, SecretStr):
        return MASK if value.get_secret_value() else ""
    if value is None:
        return "(unset)"
    text = str(value)
    if "://" in text:
        parts = urlsplit(text)
        if parts.password:
            netloc = f"{parts.username or ''}:****@{parts.hostname or ''}" + (f":{parts.port}" if parts.port else "")
            return urlunsplit(parts._replace(netloc=netloc))
    return text


def variable(field_name: str) -> str:
    return f"OMS_{field_name.upper()}"


def config_rows(classes: dict[str, type[Settings]] | None = None) -> list[tuple[str, str, str, str]]:
    """(used by, variable, default, description) of every variable of every service's settings class.

    Common settings (:class:`Settings`) come first as used by ``all``; then each service's own variables, once
    (a variable two services declare is listed under the first). ``classes``: service name -> settings class;
    default: the registry's.
    """
    if classes is None:
        from shared.registry import settings_classes

        classes = settings_classes()
    rows = [("all", variable(n), shown(f.default), f.description or "") for n, f in Settings.model_fields.items()]
    seen = set(Settings.model_fields)
    for service, cls in classes.items():
        for name, f in cls.model_fields.items():
            if name not in seen:
                seen.add(name)
                rows.append((service, variable(name), shown(f.default), f.description or ""))
    return rows


def current_values(classes: dict[str, type[Settings]] | None = None) -> dict[str, str]:
    """Variable -> its current value as it may be printed (masked), read through each settings class."""
    if classes is None:
        from shared.registry import settings_classes

        classes = settings_classes()
    values: dict[str, str] = {}
    all_classes: list[type[Settings]] = [Settings, *classes.values()]
    for cls in all_classes:
        instance = load(cls)
        for name in cls.model_fields:
            values.setdefault(variable(name), shown(getattr(instance, name)))
    return values
