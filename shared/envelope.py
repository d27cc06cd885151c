"""The one envelope every domain event travels in: CloudEvents 1.0, structured JSON mode.

Structured mode (the whole event, attributes and data, as one JSON body) is chosen over binary mode so that
an integrator with any AMQP client reads one JSON document; the attributes that are useful for routing
and filtering are mirrored in AMQP properties and ``ce-`` headers as well.

Extensions: ``sequence`` (per source service and subject, gapless from 1, so a subscriber can tell a
missed or reordered event), ``typecounts`` (per subject, how many events of each type so far, this one
included, e.g. ``order.placed.v1:1,order.stage_changed.v1:3``: a subscriber of only some types orders by
the sum of their counts, see ``shared.inbox``), ``correlationid`` (the whole story of one order) and
``causationid`` (the command or event that caused this one). CloudEvents extension attributes must be
primitive, hence a string rather than a map.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator

from shared.errors import PermanentError
from shared.messages import EVENTS_EXCHANGE, OutgoingMessage

CONTENT_TYPE = "application/cloudevents+json"


class EventModel(BaseModel):
    """Base of every event's ``data``. Subclasses set ``event_type`` (e.g. ``order.placed.v1``).

    Unknown fields are ignored when reading, so a producer may add fields without breaking consumers
    (additive changes keep the version; breaking changes mint ``v2``).
    """

    model_config = ConfigDict(extra="ignore")
    event_type: ClassVar[str]


class Envelope(BaseModel):
    model_config = ConfigDict(extra="allow")

    specversion: Literal["1.0"] = "1.0"
    id: uuid.UUID = Field(default_factory=uuid.uuid4)
    source: str
    type: str
    subject: str
    time: datetime = Field(default_factory=lambda: datetime.now(UTC))
    datacontenttype: Literal["application/json"] = "application/json"
    sequence: int = Field(ge=1)
    # Absent on events written before the counts existed (migration shared_0002); see ``counts``.
    typecounts: str | None = None
    correlationid: str
    causationid: str
    data: dict[str, Any]
    # The typed ``data``, once ``shared.catalog.parse_data`` has validated it: the subscriber and the use
    # case it calls both ask for it, and validating twice is measurable per event.
    _parsed: Any = PrivateAttr(default=None)
    _counts: dict[str, int] | None = PrivateAttr(default=None)

    @field_validator("typecounts")
    @classmethod
    def _counts_are_well_formed(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                parse_typecounts(value)
            except ValueError:
                raise ValueError("typecounts must read like 'order.placed.v1:1,order.stage_changed.v1:3'") from None
        return value

    @property
    def source_service(self) -> str:
        return self.source.rsplit("/", 1)[-1]

    @property
    def counts(self) -> dict[str, int] | None:
        """``typecounts`` as a map (type → count), or None for an event published before they existed."""
        if self.typecounts is None:
            return None
        if self._counts is None:
            self._counts = parse_typecounts(self.typecounts)
        return self._counts

    def to_json(self) -> str:
        return self.model_dump_json(exclude=None if self.typecounts is not None else {"typecounts"})

    def to_message(self) -> OutgoingMessage:
        return OutgoingMessage(
            exchange=EVENTS_EXCHANGE,
            routing_key=self.type,
            body=self.to_json().encode(),
            properties=message_properties(
                event_id=self.id, event_type=self.type, subject=self.subject, sequence=self.sequence,
                correlation_id=self.correlationid, time=self.time, source=self.source,
            ),
            mandatory=True,
        )


def message_properties(
    *,
    event_id: uuid.UUID,
    event_type: str,
    subject: str,
    sequence: int,
    correlation_id: str,
    time: datetime,
    source: str,
) -> dict[str, Any]:
    """AMQP properties mirroring the CloudEvent attributes a broker-side filter or a dashboard needs."""
    return {
        "content_type": CONTENT_TYPE,
        "message_id": str(event_id),
        "type": event_type,
        "correlation_id": correlation_id,
        "delivery_mode": 2,
        "timestamp": int(time.timestamp()),
        "application_headers": {"ce-source": source, "ce-subject": subject, "ce-sequence": sequence},
    }


def parse_typecounts(text: str) -> dict[str, int]:
    """``"a.v1:1,b.v1:3"`` → ``{"a.v1": 1, "b.v1": 3}`` (event types contain no ``:`` nor ``,``)."""
    out: dict[str, int] = {}
    for part in text.split(","):
        if part:
            kind, _, n = part.rpartition(":")
            out[kind] = int(n)
    return out


def format_typecounts(counts: dict[str, int]) -> str:
    return ",".join(f"{k}:{n}" for k, n in sorted(counts.items()) if n > 0)


def source_for(service: str) -> str:
    return f"/oms/{service}"


def parse_envelope(body: bytes | str) -> Envelope:
    """Parse a message body or raise PermanentError saying exactly why it can never be handled."""
    try:
        raw = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise PermanentError(f"body is not JSON: {exc}") from None
    if not isinstance(raw, dict):
        raise PermanentError("body is not a JSON object (a CloudEvent)")
    try:
        return Envelope.model_validate(raw)
    except ValidationError as exc:
        reasons = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise PermanentError(f"not a valid CloudEvent: {reasons}") from None
