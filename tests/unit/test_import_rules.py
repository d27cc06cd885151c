"""The custom import-linter contract (tools/importrules.py) refuses what the README's import rules refuse,
on a small made-up import graph, so ``lint-imports`` in ``make lint`` can fail."""

from __future__ import annotations

from typing import Any

import pytest

pytest.importorskip("importlinter")

from tools.importrules import ServicesMeetThroughContracts  # noqa: E402

pytestmark = pytest.mark.unit


class Graph:
    def __init__(self, imports: dict[str, set[str]]) -> None:
        self.imports = imports
        self.modules = set(imports) | {m for targets in imports.values() for m in targets}

    def find_modules_directly_imported_by(self, module: str) -> set[str]:
        return self.imports.get(module, set())

    def get_import_details(self, *, importer: str, imported: str) -> list[dict[str, Any]]:
        return [{"line_number": 1, "line_contents": f"import {imported}"}]


def broken(imports: dict[str, set[str]]) -> list[tuple[str, str]]:
    contract = ServicesMeetThroughContracts(
        name="t", session_options={}, contract_options={"clients": ["oms"]}
    )
    check = contract.check(Graph(imports), verbose=False)
    return [(v["importer"], v["imported"]) for v in check.metadata["violations"]]


def test_services_their_clients_and_contracts_keep_to_the_rules() -> None:
    assert broken({
        "services.payments.usecases": {"services.orders.contracts.events", "services.payments.domain", "shared.money"},
        "services.gateway.routers.orders": {"services.orders.contracts.schemas"},
        "services.orders.contracts.events": {"services.orders.contracts.schemas", "services.payments.contracts"},
        "oms.cli.demo": {"services.payments.contracts.sandbox"},
        "shared.registry": {"importlib"},
    }) == []


@pytest.mark.parametrize(
    ("importer", "imported"),
    [
        ("services.payments.service", "services.orders.domain"),
        ("services.gateway.app", "services.orders.domain"),
        ("services.gateway.cli", "services.payments.provider.sandbox"),
        ("oms.cli.apikey", "services.gateway.auth"),
        ("services.orders.contracts.events", "services.orders.domain"),
    ],
)
def test_a_service_internal_imported_from_elsewhere_is_refused(importer: str, imported: str) -> None:
    assert broken({importer: {imported}}) == [(importer, imported)]
