"""The notifications domain, pure (no I/O): which kinds an event raises under the store's settings, which channel
and recipient a message goes to (with fallback and the test-order redirect), the WhatsApp window, the message
status machine (forward only), the retry schedule and the idempotency key.

* ``preferences``: the store's notification settings as values, and ``kinds_for`` an event;
* ``messages``: channel choice, redirect, window, status moves, backoff, keys, masking.
"""

from services.notifications.domain.messages import (
    MAX_RETRY_DELAY,
    NAMESPACE,
    Route,
    backoff,
    can_move,
    channel_plan,
    in_window,
    mask,
    message_key,
    next_channel,
    resend_key,
    route,
)
from services.notifications.domain.preferences import (
    DEFAULT_STAGES,
    KIND_NAMES,
    STAFF_KIND,
    EventFacts,
    KindPrefs,
    Preferences,
    Refused,
    default_preferences,
    kinds_for,
    merge_update,
)

__all__ = [
    "DEFAULT_STAGES", "KIND_NAMES", "MAX_RETRY_DELAY", "NAMESPACE", "STAFF_KIND", "EventFacts", "KindPrefs",
    "Preferences", "Refused", "Route", "backoff", "can_move", "channel_plan", "default_preferences", "in_window",
    "kinds_for", "mask", "merge_update", "message_key", "next_channel", "resend_key", "route",
]
