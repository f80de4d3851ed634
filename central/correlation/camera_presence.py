"""在岗 from cameras: narrow the queue feed's presence periods to what a camera saw.

Rule (central/correlation/README.md, "Presence with cameras"): at a window a camera watches
that day (at least one ``camera.presence`` event for it), staff count as 在岗 only while they
are logged in at the queue (a PresencePeriod) **and** the camera sees the seat occupied; at
every other window the queue periods stand unchanged. A camera's run of ``present`` starts at
the event's ``since`` and ends at the ``since`` of the next ``away`` for that window (or the
day's horizon); the camera does not know who sits there, so it only ever shortens the
logged-in person's periods, never adds one.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace

from central.correlation.sessions import PresencePeriod


@dataclass(frozen=True, slots=True)
class CameraPresence:
    """One ``camera.presence`` event: the window's seat became present / away at ``since``."""

    window: int
    staff: str  # present | away
    since: dt.datetime


Span = tuple[dt.datetime, dt.datetime]


def seen_present(events: Iterable[CameraPresence], horizon: dt.datetime) -> dict[int, list[Span]]:
    """Window → spans the camera saw the seat occupied, in order (only watched windows)."""
    by_window: dict[int, list[CameraPresence]] = defaultdict(list)
    for event in events:
        by_window[event.window].append(event)
    spans: dict[int, list[Span]] = {}
    for window, changes in by_window.items():
        spans[window] = []
        opened: dt.datetime | None = None
        for change in sorted(changes, key=lambda c: c.since):
            if change.staff == "present" and opened is None:
                opened = change.since
            elif change.staff == "away" and opened is not None:
                if change.since > opened:
                    spans[window].append((opened, change.since))
                opened = None
        if opened is not None and horizon > opened:
            spans[window].append((opened, horizon))
    return spans


def combine(
    periods: Sequence[PresencePeriod], camera: dict[int, list[Span]]
) -> list[PresencePeriod]:
    """The queue periods, cut to the camera's occupied spans where a camera watches."""
    out: list[PresencePeriod] = []
    for period in periods:
        spans = camera.get(period.window)
        if spans is None:
            out.append(period)  # no camera at this window: the queue feed alone decides
            continue
        for start, end in spans:
            lo, hi = max(start, period.start), min(end, period.end)
            if hi > lo:
                out.append(
                    replace(
                        period,
                        start=lo,
                        end=hi,
                        opened_by=period.opened_by if lo == period.start else "camera",
                        closed_by=period.closed_by if hi == period.end else "camera",
                    )
                )
    return sorted(out, key=lambda p: (p.window, p.staff, p.start))
