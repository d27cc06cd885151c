"""The service registry finds every service from its manifest, and what reads it (migrate, the catalog, the
runtime, `oms run`) gets the services from there rather than from a list typed out by hand."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest

from shared import registry

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]


def test_every_services_package_with_a_manifest_is_found() -> None:
    with_manifest = {p.parent.name for p in (ROOT / "services").glob("*/manifest.py")}
    assert {s.name for s in registry.services()} == with_manifest
    assert {"orders", "payments", "gateway"} <= with_manifest


def test_named_code_in_every_manifest_exists() -> None:
    for spec in registry.services():
        if spec.nameko_class:  # not imported here: it pulls in eventlet (the runtime and migrate load it)
            module, _, cls = spec.nameko_class.partition(":")
            found = importlib.util.find_spec(module)
            assert found and re.search(rf"^class {cls}\b", Path(found.origin or "").read_text(), re.M), spec.name
        if spec.cli:
            cli = registry.load(spec.cli)
            # a named app, or an unnamed one whose groups are named (the gateway's `apikey` and `staff`)
            assert cli.info.name or (cli.registered_groups and all(g.typer_instance.info.name
                                                                   for g in cli.registered_groups))
        for target in spec.docs.values():
            assert callable(registry.load(target))
        assert registry.load(spec.settings).model_fields
        if spec.migrations:
            assert spec.migrations.is_dir() and spec.schema
        if spec.contracts:
            assert spec.contracts == f"services.{spec.name}.contracts"


def test_processes_of_the_system() -> None:
    names = [p.name for p in registry.processes()]
    assert len(names) == len(set(names))
    assert {"orders", "payments", "gateway", "sandbox-provider"} <= set(names)
    assert "sandbox-provider" not in {p.name for p in registry.processes(development=False)}
    assert registry.process("orders").argv == ("-m", "shared.runtime", "orders")


def test_migrate_catalog_and_runtime_read_the_registry() -> None:
    from shared.catalog import event_modules, load_all
    from shared.migrate import SHARED_MIGRATIONS, schemas

    found = schemas()
    for spec in registry.services():
        if spec.schema:
            assert (SHARED_MIGRATIONS in found[spec.schema]) == spec.backbone
    assert set(event_modules()) == {"fulfillment", "notifications", "orders", "payments"}
    assert {e.service for e in load_all().values()} == {"fulfillment", "notifications", "orders", "payments"}
    assert set(registry.nameko_classes()) == {"fulfillment", "notifications", "orders", "payments"}


def test_discovery_imports_no_service_code_but_the_manifests() -> None:
    import subprocess
    import sys

    probe = (
        "import sys; from shared import registry; registry.services(); "
        "print(sorted(m for m in sys.modules if m.startswith('services.') and not m.endswith('.manifest')"
        " and m.count('.') > 1))"
    )
    out = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
