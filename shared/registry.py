"""The service registry: each service declares itself once, in ``services/<name>/manifest.py``.

A manifest defines ``SERVICE = ServiceSpec(...)``: the service's name, its Nameko class, its Postgres schema
and migrations, its contract package (whose ``events`` module is its part of the event catalog), its settings
class, the processes it runs, the README sections it generates and its CLI sub-app. Everything that used to
list the services by hand reads this instead: ``oms run`` and ``python -m shared.runtime`` (processes, Nameko
classes), ``oms migrate`` (schemas, migrations, subscriber queues), the event catalog, ``oms config`` and the
README tables, the deploy checks. Adding a service is its package plus its manifest (docs/adding-a-service.md).

Discovery is dynamic (``pkgutil`` over the ``services`` package, then ``importlib``): ``shared`` imports no
service module statically, and a checkout without a service simply has no manifest for it. Classes and
functions are named as ``"module:attribute"`` strings and imported only when used, so reading the registry
is cheap and pulls in neither Nameko nor a service's dependencies.
"""

from __future__ import annotations

import importlib
import importlib.util
import pkgutil
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from shared.config import Settings

SERVICES_PACKAGE = "services"
MANIFEST_MODULE = "manifest"


@dataclass(frozen=True)
class Process:
    """A process ``oms run NAME`` starts: ``python ARGV...`` (e.g. ``("-m", "services.gateway")``).

    ``development_only``: started by ``oms run`` on a developer machine (the sandbox payment provider), never
    part of a production deployment. ``ready``: the log line that says the process is serving.
    """

    name: str
    argv: tuple[str, ...]
    development_only: bool = False
    ready: str = "Uvicorn running"
    settings: str | None = None
    """Its own settings class, when it is not the service's (the sandbox provider's); listed by ``oms config``."""

    def command(self) -> list[str]:
        return [sys.executable, *self.argv]


@dataclass(frozen=True, eq=False)
class ServiceSpec:
    """One service, as the rest of the system needs to know it. Names of code are ``"module:attribute"``."""

    name: str
    """Lower-case name: ``oms run <name>``, the compose service and the k8s Deployment ``oms-<name>``."""
    nameko_class: str | None = None
    """The Nameko service class (run by ``shared.runtime``; its event handlers are its subscriptions)."""
    schema: str | None = None
    """Postgres schema the service owns (created by ``oms migrate``); None: it keeps no data."""
    migrations: Path | None = None
    """Folder of yoyo SQL migrations applied to ``schema``."""
    backbone: bool = False
    """Whether ``schema`` gets the shared outbox/inbox tables (a service that publishes or consumes events)."""
    contracts: str | None = None
    """The service's public contract package; its ``events`` module is the service's part of the event catalog."""
    settings: str = "shared.config:Settings"
    """The settings class (a subclass of ``shared.config.Settings``)."""
    processes: tuple[Process, ...] = ()
    """Processes besides the Nameko service itself (the gateway's HTTP server, a development-only provider)."""
    docs: Mapping[str, str] = field(default_factory=dict)
    """README sections it generates: ``<!-- BEGIN marker -->`` name -> function returning markdown."""
    cli: str | None = None
    """A typer sub-app mounted by ``oms`` under the app's own name (e.g. the gateway's ``apikey``)."""

    def all_processes(self) -> tuple[Process, ...]:
        """The Nameko service first (``python -m shared.runtime <name>``), then the declared processes."""
        own = (Process(self.name, ("-m", "shared.runtime", self.name), ready="started"),) if self.nameko_class else ()
        return own + self.processes

    @property
    def events_module(self) -> str | None:
        return f"{self.contracts}.events" if self.contracts else None


def load(target: str) -> Any:
    """The object named by ``"package.module:attribute"``."""
    module_name, _, attr = target.partition(":")
    if not attr:
        raise ValueError(f"{target!r} is not 'module:attribute'")
    return getattr(importlib.import_module(module_name), attr)


@lru_cache(maxsize=1)
def _discover() -> tuple[ServiceSpec, ...]:
    package = importlib.import_module(SERVICES_PACKAGE)
    found: list[ServiceSpec] = []
    for info in pkgutil.iter_modules(package.__path__):
        if not info.ispkg:
            continue
        module_name = f"{SERVICES_PACKAGE}.{info.name}.{MANIFEST_MODULE}"
        if importlib.util.find_spec(module_name) is None:
            continue  # a package without a manifest is not (yet) a service
        spec = getattr(importlib.import_module(module_name), "SERVICE", None)
        if not isinstance(spec, ServiceSpec):
            raise TypeError(f"{module_name} must define SERVICE = ServiceSpec(...)")
        found.append(spec)
    names = [s.name for s in found]
    if len(names) != len(set(names)):
        raise ValueError(f"two manifests declare the same service name: {sorted(names)}")
    return tuple(sorted(found, key=lambda s: s.name))


def services() -> tuple[ServiceSpec, ...]:
    """Every declared service, by name."""
    return _discover()


def service(name: str) -> ServiceSpec:
    for spec in services():
        if spec.name == name:
            return spec
    raise KeyError(f"unknown service {name!r}; known: {', '.join(s.name for s in services())}")


def processes(*, development: bool = True) -> list[Process]:
    """Every process of every service; without ``development``, only those a deployment runs."""
    return [p for s in services() for p in s.all_processes() if development or not p.development_only]


def process(name: str) -> Process:
    for p in processes():
        if p.name == name:
            return p
    known = ", ".join(p.name for p in processes())
    raise KeyError(f"unknown process {name!r}; known: {known}")


def nameko_classes() -> dict[str, str]:
    """Service name -> Nameko class target, for every service that runs one."""
    return {s.name: s.nameko_class for s in services() if s.nameko_class}


def settings_classes() -> dict[str, type[Settings]]:
    """Service name -> its settings class, then process name -> the class of a process that has its own."""
    classes: dict[str, type[Settings]] = {s.name: load(s.settings) for s in services()}
    for s in services():
        for p in s.processes:
            if p.settings:
                classes.setdefault(p.name, load(p.settings))
    return classes


def docs_sections() -> dict[str, str]:
    """README marker -> function target, from every manifest (a marker declared twice is an error)."""
    sections: dict[str, str] = {}
    for s in services():
        for marker, target in s.docs.items():
            if marker in sections:
                raise ValueError(f"README section {marker!r} is declared by two services")
            sections[marker] = target
    return sections
