"""The orders service's own settings (prefix ``OMS_``), on top of the common ones in ``shared.config``.

Only the orders service reads these: how long a placed order may wait for its address or payment before
the abandonment timer abandons it, and how often that timer looks.
"""

from __future__ import annotations

from functools import lru_cache

from pydantic import Field

from shared.config import Settings, load


class OrdersSettings(Settings):
    abandon_after_seconds: int = Field(
        3600, ge=1, description="A placed order without address or payment is abandoned after this long."
    )
    abandon_check_interval_seconds: float = Field(
        30.0, gt=0, description="How often the abandonment timer looks for stale placed orders."
    )


@lru_cache(maxsize=1)
def get_settings() -> OrdersSettings:
    return load(OrdersSettings)


__all__ = ["OrdersSettings", "get_settings"]
