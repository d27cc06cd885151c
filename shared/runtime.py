"""Start one Nameko service in this process: ``python -m shared.runtime orders``.

The name is looked up in the service registry (``shared.registry``: the manifest's ``nameko_class``); a
``module:Class`` target runs that class directly (tests' probe services).

eventlet must patch the standard library before psycopg, kombu or the service module are imported, and
psycopg must use its selector-based wait function, or one query blocks every green thread (measured: three
``pg_sleep(1)`` took 3 s instead of 1 s). Everything eventlet-specific stays in this module and in the
psycopg wait it installs (``shared.green_wait``).
"""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # imported for real only after eventlet has patched the standard library
    from shared.config import Settings


def nameko_config(settings: object) -> dict[str, object]:
    from shared.logs import quiet_filters, quiet_levels  # not at the top: logging only once eventlet has patched

    s = settings
    return {
        "AMQP_URI": s.amqp_url,  # type: ignore[attr-defined]
        "max_workers": s.max_workers,  # type: ignore[attr-defined]
        "parent_calls_tracked": 10,
        "serializer": "json",
        "OMS_DATABASE_URL": s.database_url,  # type: ignore[attr-defined]
        "OMS_DB_POOL_SIZE": s.db_pool_size,  # type: ignore[attr-defined]
        "OMS_RETRY_DELAYS": s.retry_delay_list,  # type: ignore[attr-defined]
        "LOGGING": {
            "version": 1,
            "disable_existing_loggers": False,
            "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
            "filters": quiet_filters(),
            "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
            "root": {"level": s.log_level, "handlers": ["console"]},  # type: ignore[attr-defined]
            "loggers": quiet_levels(s.log_level),  # type: ignore[attr-defined]
        },
    }


def load_service(name: str) -> type:
    from shared.registry import load, nameko_classes

    known = nameko_classes()
    target = known.get(name) or (name if ":" in name else "")
    if not target:
        raise SystemExit(f"unknown service {name!r}; known: {', '.join(sorted(known))} (or module:Class)")
    return load(target)  # type: ignore[no-any-return]


def settings_class(name: str) -> type[Settings]:
    """The service's own settings class (its manifest's), so a bad or missing variable stops it at start-up."""
    from shared.config import Settings
    from shared.registry import load, services

    for spec in services():
        if spec.name == name:
            return load(spec.settings)  # type: ignore[no-any-return]
    return Settings


def go_green() -> None:
    """Patch the standard library with eventlet and make psycopg wait cooperatively: call it first, before
    anything imports psycopg, kombu or logging (a service process; a benchmark measuring as the services run).

    psycopg picks its wait function when imported: a green one, so one query does not block every green
    thread. Unless an operator chose one, it is then replaced by the hub's own wait (shared.green_wait)."""
    waits_on_hub = "PSYCOPG_WAIT_FUNC" not in os.environ
    os.environ.setdefault("PSYCOPG_WAIT_FUNC", "wait_selector")
    import eventlet

    eventlet.monkey_patch()
    if waits_on_hub:
        from shared import green_wait

        green_wait.install()


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        raise SystemExit("usage: python -m shared.runtime SERVICE")
    go_green()

    import logging.config
    import signal

    import eventlet
    from nameko.runners import ServiceRunner

    from shared.config import load
    from shared.nameko_ext import lean_replies, reconnect_promptly, survive_lost_replies

    reconnect_promptly()
    survive_lost_replies()
    lean_replies()
    settings = load(settings_class(argv[0]))
    config = nameko_config(settings)
    logging.config.dictConfig(config["LOGGING"])  # type: ignore[arg-type]
    service_cls = load_service(argv[0])
    if settings.metrics_port:
        _serve_metrics(settings.metrics_port)

    runner = ServiceRunner(config)
    runner.add_service(service_cls)

    stopping: list[int] = []

    def shutdown(signum: int, frame: object) -> None:
        # Graceful: stop consuming, let running workers finish, then exit (Ctrl-C or SIGTERM). A second
        # signal, or a stop that takes longer than the deadline, ends the process at once: an orchestrator
        # must be able to count on it.
        if stopping:
            os._exit(1)
        stopping.append(signum)
        eventlet.spawn_n(runner.stop)
        eventlet.spawn_after(STOP_DEADLINE_SECONDS, _force_exit)

    signal.signal(signal.SIGTERM, shutdown)
    signal.signal(signal.SIGINT, shutdown)
    runner.start()
    logging.getLogger("oms").info("service %s started", argv[0])
    try:
        runner.wait()
    except KeyboardInterrupt:
        runner.stop()


STOP_DEADLINE_SECONDS = 25


def _force_exit() -> None:
    import logging

    logging.getLogger("oms").error("graceful stop took over %ss; exiting now", STOP_DEADLINE_SECONDS)
    os._exit(1)


def _serve_metrics(port: int) -> None:
    """Prometheus ``/metrics`` plus ``/healthz`` (liveness: the process and its hub are responsive)."""
    import eventlet
    from eventlet import wsgi
    from prometheus_client import make_wsgi_app

    metrics = make_wsgi_app()

    def app(environ: dict, start_response):  # type: ignore[no-untyped-def]
        if environ.get("PATH_INFO") == "/healthz":
            start_response("200 OK", [("Content-Type", "text/plain")])
            return [b"ok\n"]
        return metrics(environ, start_response)

    sock = eventlet.listen(("0.0.0.0", port))
    eventlet.spawn_n(wsgi.server, sock, app, log_output=False)


if __name__ == "__main__":
    main()
