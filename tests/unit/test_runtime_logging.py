"""A process's log at INFO carries its own lines, not a line per outgoing HTTP request from httpx: the Nameko
services (their dictConfig) and the gateway and sandboxes (``logging.basicConfig``) alike. And a traceback in a
service's log means a real error: an expected one (a ``DomainError`` the caller is answered with) is one line."""

from __future__ import annotations

import io
import logging
import logging.config

import pytest

from shared.config import Settings
from shared.logs import quiet_libraries
from shared.runtime import nameko_config


def _service_logging(level: str) -> io.StringIO:
    """A Nameko service's logging at ``level`` (its dictConfig), writing to the stream returned."""
    stream = io.StringIO()
    config = nameko_config(Settings(log_level=level))["LOGGING"]
    assert isinstance(config, dict)
    config["handlers"]["console"]["stream"] = stream
    logging.config.dictConfig(config)
    return stream


def _logged(level: str) -> str:
    stream = _service_logging(level)
    try:
        logging.getLogger("httpx").info('HTTP Request: POST http://provider/v1/messages "HTTP/1.1 200 OK"')
        logging.getLogger("services.payments").info("payment captured")
        logging.getLogger("httpx").warning("provider answered slowly")
    finally:
        for name in ("httpx", "httpcore"):
            logging.getLogger(name).setLevel(logging.NOTSET)
        logging.getLogger().handlers.clear()
    return stream.getvalue()


def test_at_info_httpx_request_lines_are_left_out_and_its_warnings_kept() -> None:
    out = _logged("INFO")
    assert "payment captured" in out and "provider answered slowly" in out
    assert "HTTP Request" not in out


@pytest.mark.parametrize("level", ["DEBUG", "debug"])
def test_at_debug_every_outgoing_request_is_logged(level: str) -> None:
    assert "HTTP Request: POST" in _logged(level)


@pytest.mark.parametrize(("level", "request_logged"), [(logging.INFO, False), ("INFO", False), (logging.DEBUG, True)])
def test_a_basic_config_process_drops_httpx_request_lines_below_debug(level: str | int, request_logged: bool) -> None:
    stream = io.StringIO()
    root = logging.getLogger()
    handler = logging.StreamHandler(stream)
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        quiet_libraries(level)
        logging.getLogger("httpx").info("HTTP Request: POST http://127.0.0.1:8080/webhooks/whatsapp")
        logging.getLogger("httpx").warning("webhook answered 500")
    finally:
        root.removeHandler(handler)
        root.setLevel(logging.WARNING)
        for name in ("httpx", "httpcore"):
            logging.getLogger(name).setLevel(logging.NOTSET)
    assert ("HTTP Request" in stream.getvalue()) is request_logged
    assert "webhook answered 500" in stream.getvalue()


def _worker_errors(level: str) -> str:
    """What a service logs for an expected and an unexpected worker error, as Nameko's container logs them."""
    stream = _service_logging(level)
    log = logging.getLogger("nameko.containers")
    try:
        for expected, error in ((True, LookupError("order 1001 not found")), (False, RuntimeError("database gone"))):
            try:
                raise error
            except Exception as exc:  # noqa: BLE001 - logged as the container does
                if expected:
                    log.warning("(expected) error handling worker %s: %s", "<WorkerContext [orders.get_order]>", exc,
                                exc_info=True)
                else:
                    log.exception("error handling worker %s: %s", "<WorkerContext [orders.place]>", exc)
    finally:
        logging.getLogger().handlers.clear()
        log.filters.clear()
    return stream.getvalue()


def test_at_info_an_expected_worker_error_is_one_line_and_an_unexpected_one_keeps_its_traceback() -> None:
    out = _worker_errors("INFO")
    assert "(expected) error handling worker <WorkerContext [orders.get_order]>: order 1001 not found" in out
    assert "raise error" in out and out.count("Traceback (most recent call last)") == 1
    unexpected = out[out.index("error handling worker <WorkerContext [orders.place]>"):]
    assert "Traceback (most recent call last)" in unexpected and "RuntimeError: database gone" in unexpected


def test_at_debug_an_expected_worker_error_keeps_its_traceback() -> None:
    out = _worker_errors("DEBUG")
    assert out.count("Traceback (most recent call last)") == 2
    assert "LookupError: order 1001 not found" in out
