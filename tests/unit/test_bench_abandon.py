"""``oms bench abandon``'s reading of the abandonment events: batches (same start) grouped into timer checks."""

from __future__ import annotations

import pytest

from oms.cli.bench import timer_checks

pytestmark = pytest.mark.unit


def test_batches_back_to_back_are_one_check_and_a_pause_starts_the_next() -> None:
    # (batch start, event written) per abandoned order: two batches of 3 and 2 in one check, then one of 1.
    events = [(100.0, 100.20), (100.0, 100.21), (100.0, 100.22), (100.25, 100.40), (100.25, 100.41), (130.0, 130.05)]
    first, second = timer_checks(events)
    assert (first.orders, len(first.batches), first.largest_batch) == (3 + 2, 2, 3)
    assert first.seconds == pytest.approx(0.41)
    assert (second.orders, second.largest_batch) == (1, 1)
    assert timer_checks([]) == []
