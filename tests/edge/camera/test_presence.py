"""Staff presence hysteresis."""

from __future__ import annotations

from edge.camera.presence import PresenceChange, PresenceTracker


def feed(
    tracker: PresenceTracker, start: float, seconds: float, occupied: bool | None
) -> list[PresenceChange]:
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


def test_startup_in_an_empty_seat_and_the_first_arrival() -> None:
    tracker = PresenceTracker(window=3, away_after_s=10.0, present_after_s=2.0)
    [away] = feed(tracker, 0.0, 12.0, False)
    assert away.state == "away" and away.since == 0.0 and away.decided == 10.0


def test_flicker_never_decides() -> None:
    tracker = PresenceTracker(window=1, away_after_s=5.0, present_after_s=2.0)
    changes = []
    for i in range(100):
        change = tracker.update(i * 0.5, i % 2 == 0)
        if change:
            changes.append(change)
    assert changes == [] and tracker.state == "unknown"


def test_a_short_gap_without_judgement_is_bridged_a_long_one_breaks_the_run() -> None:
    tracker = PresenceTracker(window=1, away_after_s=5.0, present_after_s=2.0, occlusion_s=4.0)
    tracker.update(0.0, True)
    tracker.update(1.5, None)
    change = tracker.update(2.5, True)  # one frame without judgement is no reason to wait
    assert change is not None and change.state == "present" and change.since == 0.0
    assert feed(tracker, 3.0, 5.0, None) == []  # the camera cannot judge for 5 s …
    assert feed(tracker, 8.0, 4.5, False) == []  # … so the empty run starts afresh at 8.0
    [left] = feed(tracker, 12.5, 2.0, False)
    assert left.state == "away" and left.since == 8.0 and left.decided == 13.0


def test_passers_by_do_not_reset_the_empty_seat_run() -> None:
    """A colleague crossing behind the seat twice during a 150 s absence (away after 120 s),
    and once more just as the decision is due: away is still decided, dated from the leaving."""
    tracker = PresenceTracker(window=2, away_after_s=120.0, present_after_s=2.0, occlusion_s=8.0)
    assert [c.state for c in feed(tracker, 0.0, 20.0, True)] == ["present"]
    changes = []
    t = 20.0
    for start, seconds, occupied in (
        (20.0, 40.0, False),
        (60.0, 3.0, True),
        (63.0, 40.0, False),
        (103.0, 2.5, True),
        (105.5, 34.0, False),
        (139.5, 3.0, True),
        (142.5, 28.0, False),
    ):
        assert start == t
        changes += feed(tracker, start, seconds, occupied)
        t += seconds
    [left] = changes
    assert left.state == "away" and left.since == 20.0
    assert 140.0 <= left.decided <= 140.0 + 5.0  # within away_after_s + 5 s of the truth
    # Back at the seat for good: present once the return outlasts an occlusion.
    [back] = feed(tracker, 170.5, 12.0, True)
    assert back.state == "present" and back.since == 170.5 and back.decided <= 170.5 + 8.5


def test_a_return_shorter_than_an_occlusion_does_not_end_the_absence_run_but_a_real_one_does() -> (
    None
):
    tracker = PresenceTracker(window=1, away_after_s=30.0, present_after_s=2.0, occlusion_s=8.0)
    feed(tracker, 0.0, 10.0, True)
    assert feed(tracker, 10.0, 20.0, False) == []
    assert feed(tracker, 30.0, 12.0, True) == []  # back for 12 s: the empty run is over
    [left] = feed(tracker, 42.0, 31.0, False)
    assert left.since == 42.0 and left.decided == 72.0
