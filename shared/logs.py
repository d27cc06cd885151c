"""Log levels every process of the system shares.

httpx logs each outgoing request at INFO ("HTTP Request: POST ... 200 OK"): a provider call, an SMS, a
sandbox's receipt webhook. One line per message sent drowns a process's own lines, so below DEBUG those
libraries log warnings only; at DEBUG every request is wanted and kept.
"""

from __future__ import annotations

import logging

QUIET_LIBRARY_LOGGERS = ("httpx", "httpcore")


def quiet_levels(level: str | int) -> dict[str, dict[str, str]]:
    """The ``loggers`` part of a ``logging.config.dictConfig`` for a process logging at ``level``."""
    if _is_debug(level):
        return {}
    return {name: {"level": "WARNING"} for name in QUIET_LIBRARY_LOGGERS}


def quiet_libraries(level: str | int) -> None:
    """The same for a process configured with ``logging.basicConfig`` (the gateway, the sandboxes)."""
    for name, config in quiet_levels(level).items():
        logging.getLogger(name).setLevel(config["level"])


def _is_debug(level: str | int) -> bool:
    return level == logging.DEBUG or str(level).upper() == "DEBUG"
