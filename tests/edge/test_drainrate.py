"""The drain rate shown on the hall page, with numbers alone."""

from __future__ import annotations

from edge.drainrate import DrainRate


def test_acknowledged_events_a_second_over_the_last_half_minute() -> None:
    rate = DrainRate()
    assert rate.per_second(0.0) == 0.0
    for second in range(11):
        rate.record(float(second), second * 500)
    assert rate.per_second(10.0) == 500.0
    assert rate.per_second(20.0) == 250.0  # quiet for ten seconds: slower on average
    assert rate.per_second(100.0) == 0.0  # nothing for long: not draining


def test_a_renumbered_journal_starts_the_rate_afresh() -> None:
    rate = DrainRate()
    rate.record(0.0, 1000)
    rate.record(1.0, 2000)
    rate.record(2.0, 10)
    assert rate.per_second(2.0) == 0.0
