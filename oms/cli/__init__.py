"""``oms``: the command line of the order management system (typer).

Sub-commands live in small modules; this one wires them together, and mounts the CLI sub-apps that services
declare in their manifests (the gateway's ``oms apikey``), loaded from the registry. Heavy imports (psycopg,
nameko, eventlet) happen inside the commands so that ``oms run orders`` can monkey-patch before they load.
"""

from __future__ import annotations

import typer

from oms.cli import bench, demo, dlq, docs, events, system
from shared.registry import load, services

app = typer.Typer(
    name="oms",
    help="Order management system: run the services, manage API keys, watch events, replay dead letters.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.command("migrate")(system.migrate)
app.command("run")(system.run)
app.command("config")(system.config)
app.command("docs")(docs.docs)
app.command("place-test-order")(demo.place_test_order)
app.command("demo")(demo.demo)
for _spec in services():
    if _spec.cli:
        app.add_typer(load(_spec.cli))
app.add_typer(events.app, name="events")
app.add_typer(dlq.app, name="dlq")
app.add_typer(bench.app, name="bench")
