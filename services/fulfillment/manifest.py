"""The fulfillment service, as the registry knows it: for now its contract only (its events are in the catalog,
so orders and payments can consume them). The full manifest (schema, migrations, settings, processes, docs) comes
with the service itself (task F-core): at merge, take that one."""

from __future__ import annotations

from shared.registry import ServiceSpec

SERVICE = ServiceSpec(name="fulfillment", contracts="services.fulfillment.contracts")
