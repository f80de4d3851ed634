"""Staff presence hysteresis."""

from __future__ import annotations

from edge.camera.presence import PresenceTracker


def feed(tracker: PresenceTracker, start: float, seconds: float, occupied: bool | None):
    changes = []
    t = start
    while t < start + seconds:
        change = tracker.update(t, occupied)
        if change:
            changes.append(change)
        t += 0.5
    return changes


def test_present_after_a_short_run_away_after_the_configured_time() -> None:
    tracker = PresenceTracker(window=3, away_after_s=60.0, present_after_s=2.0)
    [arrived] = feed(tracker, 0.0, 10.0, True)
    assert arrived.state == "present" and arrived.since == 0.0 and arrived.decided == 2.0
    assert feed(tracker, 10.0, 59.0, False) == []  # a minute's absence is not yet "away"
    assert feed(tracker, 69.0, 10.0, True) == []  # back before the limit: still present
    [left] = feed(tracker, 79.0, 70.0, False)
    assert left.state == "away" and left.since == 79.0 and left.decided == 139.0


def test_flicker_never_decides() -> None:
    tracker = PresenceTracker(window=1, away_after_s=5.0, present_after_s=2.0)
    changes = []
    for i in range(100):
        change = tracker.update(i * 0.5, i % 2 == 0)
        if change:
            changes.append(change)
    assert changes == [] and tracker.state == "unknown"


def test_no_judgement_breaks_the_run() -> None:
    tracker = PresenceTracker(window=1, away_after_s=5.0, present_after_s=2.0)
    tracker.update(0.0, True)
    tracker.update(1.5, None)
    assert tracker.update(2.5, True) is None  # the run restarted at 2.5
    assert tracker.update(4.5, True) is not None
