"""The store's notification settings as values, and which kinds an event raises under them."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from services.notifications.contracts.vocabulary import NOTIFICATION_KINDS, MessageChannel

STAFF_KIND = "new_order_staff"
"""Each new order (test orders included) e-mailed to the store's address."""

KIND_NAMES: tuple[str, ...] = (*(k.name for k in NOTIFICATION_KINDS), STAFF_KIND)

DEFAULT_STAGES: frozenset[str] = frozenset({"confirmed", "cancelled", "rejected", "shipped", "delivered", "returned"})
"""The stages whose changes notify the customer when the settings name none (order_stage_changed)."""

EVENT_KINDS: dict[str, tuple[str, ...]] = {}
for _k in NOTIFICATION_KINDS:
    for _t in _k.events:
        EVENT_KINDS[_t] = (*EVENT_KINDS.get(_t, ()), _k.name)
EVENT_KINDS["order.placed.v1"] = (*EVENT_KINDS.get("order.placed.v1", ()), STAFF_KIND)


class Refused(Exception):
    """A settings change that cannot be applied (names the field)."""

    def __init__(self, message: str, field: str) -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class KindPrefs:
    enabled: bool = True
    channels: tuple[str, ...] | None = None  # None: "auto"
    stages: frozenset[str] | None = None  # order_stage_changed: None -> DEFAULT_STAGES

    def as_json(self) -> dict[str, Any]:
        return {"enabled": self.enabled, "channels": list(self.channels) if self.channels else "auto",
                "stages": sorted(self.stages) if self.stages is not None else None}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> KindPrefs:
        channels = data.get("channels")
        stages = data.get("stages")
        return cls(enabled=bool(data.get("enabled", True)),
                   channels=tuple(channels) if channels and channels != "auto" else None,
                   stages=frozenset(stages) if stages is not None else None)


@dataclass(frozen=True)
class Preferences:
    kinds: dict[str, KindPrefs] = field(default_factory=dict)
    language: str = "en"
    store_email: str | None = None  # None: OMS_STORE_EMAIL
    test_recipient: str | None = None  # None: the store e-mail

    def kind(self, name: str) -> KindPrefs:
        return self.kinds.get(name) or KindPrefs()

    def stages_of(self, name: str) -> frozenset[str]:
        stages = self.kind(name).stages
        return DEFAULT_STAGES if stages is None else stages


def default_preferences(language: str = "en") -> Preferences:
    on = {k.name: k.default_on for k in NOTIFICATION_KINDS}
    return Preferences(kinds={name: KindPrefs(enabled=on.get(name, True)) for name in KIND_NAMES}, language=language)


def merge_update(current: Preferences, kinds: Sequence[Mapping[str, Any]], *, language: str | None = None,
                 store_email: str | None = None, test_recipient: str | None = None) -> Preferences:
    """The settings after a change: each named kind replaced, the other kinds kept; refuses an unknown kind, the
    staff kind on another channel than e-mail, and stages on a kind that has none."""
    new = dict(current.kinds)
    for i, k in enumerate(kinds):
        name = k["kind"]
        if name not in KIND_NAMES:
            raise Refused(f"unknown notification kind '{name}' (known: {', '.join(KIND_NAMES)})", f"kinds[{i}].kind")
        prefs = KindPrefs.from_json(k)
        if name == STAFF_KIND and prefs.channels not in (None, (MessageChannel.email.value,)):
            raise Refused("new-order e-mails to the store go by e-mail only", f"kinds[{i}].channels")
        if prefs.stages is not None and name != "order_stage_changed":
            raise Refused("only order_stage_changed has stages", f"kinds[{i}].stages")
        new[name] = prefs
    return replace(current, kinds=new, language=language or current.language,
                   store_email=store_email if store_email is not None else current.store_email,
                   test_recipient=test_recipient if test_recipient is not None else current.test_recipient)


@dataclass(frozen=True)
class EventFacts:
    """What of an event decides whether it notifies: its type, the order stage it moved to, and the shipment
    edit's "notify the customer" switch."""

    event_type: str
    to_stage: str | None = None
    notify_customer: bool = True


def kinds_for(facts: EventFacts, prefs: Preferences) -> list[str]:
    """The kinds this event raises now: enabled kinds of its type; a stage change only for the stages chosen;
    nothing for the customer when the shipment edit said not to notify (the staff e-mail is not affected)."""
    kinds = []
    for name in EVENT_KINDS.get(facts.event_type, ()):
        if not prefs.kind(name).enabled:
            continue
        if name != STAFF_KIND and not facts.notify_customer:
            continue
        if name == "order_stage_changed" and facts.to_stage not in prefs.stages_of(name):
            continue
        kinds.append(name)
    return kinds
