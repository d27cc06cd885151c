"""Names and the outgoing message of the event backbone, with no broker client: what an envelope becomes.

Kept apart from ``shared.amqp`` (which imports the ``amqp`` client) so that building an event, in a contract
or a domain module, pulls in no I/O library.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

EVENTS_EXCHANGE = "oms.events"
REDELIVER_EXCHANGE = "oms.redeliver"
DELAY_EXCHANGE = "oms.delay"
DEAD_LETTER_QUEUE = "oms.dead-letters"


@dataclass
class OutgoingMessage:
    exchange: str
    routing_key: str
    body: bytes
    properties: dict[str, Any]
    mandatory: bool = False
