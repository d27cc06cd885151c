"""The event catalog: every event type any service publishes, with its data model.

README, tests and the AsyncAPI document read this; consumers use it to validate the ``data`` of an event
and to dead-letter an unknown type or version with a clear reason.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from shared.envelope import Envelope, EventModel
from shared.errors import PermanentError


def event_modules() -> dict[str, str]:
    """Service -> the ``events`` module of its contract package, for every registry service that has one."""
    from shared.registry import services

    return {s.name: s.events_module for s in services() if s.events_module}


@dataclass(frozen=True)
class CatalogEntry:
    event_type: str
    service: str
    model: type[EventModel]

    @property
    def description(self) -> str:
        return (self.model.__doc__ or "").strip().split("\n")[0]


_catalog: dict[str, CatalogEntry] = {}


def register(service: str, *models: type[EventModel]) -> None:
    for model in models:
        _catalog[model.event_type] = CatalogEntry(model.event_type, service, model)


def load_all() -> dict[str, CatalogEntry]:
    for service, module_name in event_modules().items():
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name != module_name:
                raise
            continue  # a contract package without events: the service publishes none
        models = [
            obj
            for obj in vars(module).values()
            if isinstance(obj, type) and issubclass(obj, EventModel) and obj is not EventModel
            and "event_type" in vars(obj)
        ]
        register(service, *models)
    return dict(_catalog)


def entry(event_type: str) -> CatalogEntry | None:
    if not _catalog:
        load_all()
    return _catalog.get(event_type)


def parse_data(env: Envelope) -> EventModel:
    """The typed data of an event; unknown type or invalid data is permanent (dead-letter at once)."""
    if env._parsed is not None:
        parsed: EventModel = env._parsed
        return parsed
    found = entry(env.type)
    if found is None:
        raise PermanentError(f"unknown event type {env.type!r} (not in the catalog)")
    try:
        env._parsed = found.model.model_validate(env.data)
        return env._parsed
    except ValidationError as exc:
        reasons = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise PermanentError(f"data of {env.type} is invalid: {reasons}") from None


def json_schemas() -> dict[str, Any]:
    return {t: e.model.model_json_schema() for t, e in sorted(load_all().items())}
