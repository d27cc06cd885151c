"""Import-linter contract type: services meet only through their ``contracts`` package.

``lint-imports`` (in ``make lint``) checks the import rules of the README with built-in contract types where
they fit (``forbidden``: ``shared`` imports no service and not the CLI; a domain imports no I/O library) and with
this one for the rule no built-in type expresses without listing every service by name:

* a module of ``services.<x>`` may import, of another service ``services.<y>``, only ``services.<y>.contracts``
  (and its sub-modules);
* a module of a ``contracts`` package imports no internal module of its own service (only its own contract,
  other services' contracts, ``shared`` and libraries);
* every module of the ``clients`` packages (``oms``: the CLI) may import of any service only its contract.

Services are found from the import graph (every ``services.<name>`` package), so a new service is covered
without touching the configuration. Only direct imports are checked: an indirect chain always passes through
a direct import that this contract (or the ``shared`` one) refuses.
"""

from __future__ import annotations

from typing import Any

from importlinter import Contract, ContractCheck, fields, output


class ServicesMeetThroughContracts(Contract):
    """Options: ``services_package`` (default ``services``), ``clients`` (packages that may use only contracts),
    ``contracts_module`` (default ``contracts``)."""

    type_name = "services_meet_through_contracts"

    services_package = fields.StringField(required=False, default="services")
    clients = fields.ListField(subfield=fields.StringField(), required=False, default=[])
    contracts_module = fields.StringField(required=False, default="contracts")

    def _service_of(self, module: str) -> str | None:
        parts = module.split(".")
        if parts[0] == self.services_package and len(parts) > 1:
            return parts[1]
        return None

    def _in_contract(self, module: str) -> bool:
        parts = module.split(".")
        return len(parts) > 2 and parts[2] == self.contracts_module

    def _owner(self, module: str) -> str | None:
        service = self._service_of(module)
        if service is not None:
            return f"service:{service}"
        top = module.split(".")[0]
        return f"client:{top}" if top in (self.clients or []) else None  # type: ignore[operator]

    def check(self, graph: Any, verbose: bool) -> ContractCheck:
        violations: list[dict[str, Any]] = []
        for importer in sorted(graph.modules):
            owner = self._owner(importer)
            if owner is None:
                continue
            own_service = self._service_of(importer)
            for imported in sorted(graph.find_modules_directly_imported_by(importer)):
                target = self._service_of(imported)
                if target is None:
                    continue
                if target == own_service:
                    if self._in_contract(importer) and not self._in_contract(imported):
                        reason = "a contract imports an internal module of its own service"
                    else:
                        continue
                elif self._in_contract(imported):
                    continue
                else:
                    reason = f"imports {self.services_package}.{target} outside its {self.contracts_module}"
                lines = [
                    (d["line_number"], d["line_contents"])
                    for d in graph.get_import_details(importer=importer, imported=imported)
                ]
                violations.append({"importer": importer, "imported": imported, "reason": reason, "lines": lines})
        return ContractCheck(kept=not violations, metadata={"violations": violations})

    def render_broken_contract(self, check: ContractCheck) -> None:
        for v in check.metadata["violations"]:
            output.print_error(f"{v['importer']} -> {v['imported']}: {v['reason']}", bold=True)
            for line_number, contents in v["lines"]:
                output.indent_cursor()
                output.print_error(f"l.{line_number}: {contents}")
            output.new_line()
