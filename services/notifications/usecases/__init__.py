"""The notifications use cases (PLACEHOLDER from branch h-nalerts until N-core's package lands; when merging,
keep N-core's file and add the ``alerts``/``timeline`` lines below to it).

* ``alerts``: staff alerts raised from events (``ALERT_RULES``), ``alerts_after`` for the live stream;
* ``timeline``: the order's story across services (``SUMMARIES``), ``timeline``.
"""

from services.notifications.usecases import alerts, timeline

__all__ = ["alerts", "timeline"]
