"""Log levels every process of the system shares.

httpx logs each outgoing request at INFO ("HTTP Request: POST ... 200 OK"): a provider call, an SMS, a
sandbox's receipt webhook. One line per message sent drowns a process's own lines, so below DEBUG those
libraries log warnings only; at DEBUG every request is wanted and kept.

Nameko logs every *expected* exception of an RPC (a ``DomainError`` the caller is answered with: an order not
found, a refused transition, a provider receipt that came before its message was recorded and will be sent
again) at WARNING with its whole traceback. That is the API working, not a fault: below DEBUG the line stays and
the traceback goes (``ExpectedErrorsWithoutTraceback``), so a traceback in a service's log means a real error.
"""

from __future__ import annotations

import logging

QUIET_LIBRARY_LOGGERS = ("httpx", "httpcore")
EXPECTED_ERRORS_LOGGER = "nameko.containers"
_EXPECTED = "(expected) error handling worker"


class ExpectedErrorsWithoutTraceback(logging.Filter):
    """Keeps Nameko's line for an expected exception and drops its traceback (any other record is untouched)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str) and record.msg.startswith(_EXPECTED):
            record.exc_info = None
            record.exc_text = None
        return True


def quiet_levels(level: str | int) -> dict[str, dict[str, object]]:
    """The ``loggers`` part of a ``logging.config.dictConfig`` for a process logging at ``level`` (with
    :func:`quiet_filters` as its ``filters`` part)."""
    if _is_debug(level):
        return {}
    loggers: dict[str, dict[str, object]] = {name: {"level": "WARNING"} for name in QUIET_LIBRARY_LOGGERS}
    loggers[EXPECTED_ERRORS_LOGGER] = {"filters": ["expected_errors_without_traceback"]}
    return loggers


def quiet_filters() -> dict[str, dict[str, object]]:
    """The ``filters`` part of that ``dictConfig``."""
    return {"expected_errors_without_traceback": {"()": ExpectedErrorsWithoutTraceback}}


def quiet_libraries(level: str | int) -> None:
    """The same for a process configured with ``logging.basicConfig`` (the gateway, the sandboxes)."""
    if not _is_debug(level):
        for name in QUIET_LIBRARY_LOGGERS:
            logging.getLogger(name).setLevel(logging.WARNING)


def _is_debug(level: str | int) -> bool:
    return level == logging.DEBUG or str(level).upper() == "DEBUG"
