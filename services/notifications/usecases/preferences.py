"""The store's notification settings over the API: which kinds notify, on which channels (and, for stage
changes, which stages), the language, the store's and the test recipient's addresses. Stored in one row and
read at each batch and each send, so a change is effective at once."""

from __future__ import annotations

from typing import Any

from services.notifications import domain, store
from services.notifications.contracts.schemas import NotificationSettingsView, UpdateSettings
from services.notifications.settings import NotificationSettings
from services.notifications.usecases.common import actor_json, read
from shared.db import Database
from shared.errors import InvalidRequest, field_error, parse


def settings_view(prefs: domain.Preferences, settings: NotificationSettings, updated_at: Any) -> dict[str, Any]:
    kinds = [{"kind": name, **prefs.kind(name).as_json(),
              **({"stages": sorted(prefs.stages_of(name))} if name == "order_stage_changed" else {})}
             for name in domain.KIND_NAMES]
    return NotificationSettingsView(
        kinds=kinds, language=prefs.language, store_email=prefs.store_email or settings.store_email,
        test_recipient=prefs.test_recipient or prefs.store_email or settings.store_email, updated_at=updated_at,
    ).model_dump(mode="json")


def get_settings(db: Database, settings: NotificationSettings) -> dict[str, Any]:
    with read(db) as tx:
        prefs, row = store.load_preferences(tx)
    return settings_view(prefs, settings, row["updated_at"] if row else None)


def update_settings(db: Database, settings: NotificationSettings, command: Any, actor: Any) -> dict[str, Any]:
    cmd = parse(UpdateSettings, command, "settings")
    with db.transaction() as tx:
        tx.execute("SELECT pg_advisory_xact_lock(hashtext('notifications.settings'))")
        current, _row = store.load_preferences(tx)
        try:
            new = domain.merge_update(current, [k.model_dump(mode="json") for k in cmd.kinds], language=cmd.language,
                                      store_email=cmd.store_email, test_recipient=cmd.test_recipient)
        except domain.Refused as exc:
            raise InvalidRequest(str(exc), errors=[field_error(exc.field, str(exc), "invalid_setting")]) from None
        row = store.save_preferences(tx, new, actor_json(actor))
    return settings_view(new, settings, row["updated_at"])
