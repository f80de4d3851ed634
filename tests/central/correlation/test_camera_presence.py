"""在岗 with cameras, computed by hand on a small day."""

from __future__ import annotations

import datetime as dt

from central.correlation.camera_presence import CameraPresence, combine, seen_present
from central.correlation.sessions import PresencePeriod

T0 = dt.datetime(2026, 3, 2, 1, 0, tzinfo=dt.UTC)  # 09:00 Asia/Shanghai


def at(minutes: int) -> dt.datetime:
    return T0 + dt.timedelta(minutes=minutes)


def period(window: int, staff: str, start: int, end: int) -> PresencePeriod:
    return PresencePeriod("H1", window, staff, at(start), at(end), "LI", "LO")


def minutes(periods: list[PresencePeriod], window: int) -> float:
    return sum((p.end - p.start).total_seconds() / 60 for p in periods if p.window == window)


def test_camera_cuts_logged_in_time_to_seen_present() -> None:
    # window 1: logged in 0–120; camera: present 0, away 30, present 50, away 200 (past LO)
    # window 2: logged in 0–120, no camera → unchanged
    # window 3: camera sees someone 0–60 but nobody is logged in → no 在岗 added
    queue = [period(1, "s1", 0, 120), period(2, "s2", 0, 120)]
    camera = seen_present(
        [
            CameraPresence(1, "present", at(0)),
            CameraPresence(1, "away", at(30)),
            CameraPresence(1, "present", at(50)),
            CameraPresence(1, "away", at(200)),
            CameraPresence(3, "present", at(0)),
            CameraPresence(3, "away", at(60)),
        ],
        horizon=at(480),
    )
    staffed = combine(queue, camera)
    # window 1: 0–30 and 50–120 = 30 + 70 = 100 of 120 logged-in minutes
    assert [(p.start, p.end) for p in staffed if p.window == 1] == [
        (at(0), at(30)),
        (at(50), at(120)),
    ]
    assert minutes(staffed, 1) == 100
    assert staffed[0].closed_by == "camera" and staffed[1].opened_by == "camera"
    assert minutes(staffed, 2) == 120
    assert minutes(staffed, 3) == 0


def test_present_until_the_horizon_and_repeated_states() -> None:
    camera = seen_present(
        [
            CameraPresence(1, "present", at(10)),
            CameraPresence(1, "present", at(20)),  # repeat: keeps the first
            CameraPresence(1, "away", at(5)),
        ],
        horizon=at(60),
    )
    assert camera == {1: [(at(10), at(60))]}
    staffed = combine([period(1, "s1", 0, 90)], camera)
    assert minutes(staffed, 1) == 50
