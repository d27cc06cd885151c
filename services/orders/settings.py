"""The orders service's own settings (prefix ``OMS_``), on top of the common ones in ``shared.config``.

Only the orders service reads these: how long a placed order may wait for its address or payment before
the abandonment timer abandons it, how often that timer looks, and how much it does per transaction and check.
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
    abandon_batch_size: int = Field(
        500,
        ge=1,
        le=5000,
        description="How many stale orders the abandonment timer locks and abandons per transaction; "
        "a check runs batch after batch until none is left or its time budget is spent.",
    )
    abandon_check_budget_seconds: float = Field(
        20.0,
        gt=0,
        description="How long one abandonment check may keep going; what is left waits for the next check "
        "(which starts at once if this one ran past the interval).",
    )


@lru_cache(maxsize=1)
def get_settings() -> OrdersSettings:
    return load(OrdersSettings)


__all__ = ["OrdersSettings", "get_settings"]
