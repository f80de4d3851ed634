"""When did a queue message really happen? The queue machine's clock, read through its offset.

Pure. The queue machine keeps every unacknowledged message and sends it again after the link
to the gateway comes back, so a message of an outage reaches the gateway (and gets its receive
time) minutes or an hour after it happened. Its own clock (``machine_time``) says when, but that
clock drifts and can be hours off after a power cut. So the offset *receive − machine* is
learned from the machine's live messages, per machine (a gateway's feed), and a late message's
time is its machine time plus the offset there.

- **Epochs.** The machine's clock is continuous between resets. In receive order (the machine's
  own order), a new epoch starts where its clock goes back, or jumps forward by more than
  ``jump_s`` beyond the receive time that passed (a reset, or the machine was off: its 30 s
  heartbeat keeps consecutive messages close). Offsets are never carried across epochs.
- **Late.** Only samples whose receive time is trusted (synchronised or repaired) count. A live
  message's lag sits on the lower envelope of (machine time, lag); a late one only ever lies
  above it. A resent buffer also arrives faster than the machine's clock advanced between its
  messages (*caught up*): those never teach the offset. Drift is slow (at most ``max_drift``
  s/s), so the envelope is no lower than ``min_j(lag_j + max_drift·|m − m_j|)`` over the other
  samples: one more than ``late_s`` above that was received late. This also holds where the
  epoch starts inside an outage (no live message before it).
- **Offset and drift.** The lower convex hull of the epoch's live samples (at most ``learn_s``
  above the floor, not caught up) is the offset, a
  piecewise-linear function of machine time that follows drift (between the live messages
  before and after an outage it interpolates); beyond its ends the nearest vertex holds. The
  median of the live samples' distance above it (the machine's whole-second clock, transport)
  is added back. A late sample is placed at machine time + offset, never after its receive
  time; everything else keeps its receive time, so misjudging a live message costs at most the
  envelope's error.
"""

from __future__ import annotations

import datetime as dt
import statistics
from bisect import bisect_right
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from itertools import pairwise

from pydantic import BaseModel, ConfigDict, Field

BUSINESS_TZ = dt.timezone(dt.timedelta(hours=8), "Asia/Shanghai")  # the machine's local clock


@dataclass(frozen=True, slots=True)
class ClockSample:
    key: Hashable  # the event (gateway, seq)
    received: dt.datetime  # the gateway's corrected receive time
    machine: dt.datetime  # the machine's own clock, as an aware time in Asia/Shanghai
    trusted: bool  # the receive time is synchronised or repaired: it may teach the offset


class MachineClockConfig(BaseModel):
    """``queue_clock:`` in correlation.yaml."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    late_s: float = Field(
        default=10.0,
        ge=1,
        le=3600,
        description="lag this far above the live floor: received late, placed",
    )
    learn_s: float = Field(
        default=3.0, ge=0, le=60, description="lag at most this far above it teaches the offset"
    )
    catch_s: float = Field(
        default=3.0,
        ge=0,
        le=60,
        description="arrived this much sooner after the previous message "
        "than the machine's clock says: its buffer catching up",
    )
    jump_s: float = Field(
        default=60.0,
        ge=5,
        le=3600,
        description="the machine's clock ran this much faster than receive "
        "time between two messages: a reset (new epoch)",
    )
    max_drift: float = Field(
        default=0.001,
        ge=0,
        le=0.1,
        description="s/s (3.6 s an hour): a steeper lag slope is lateness",
    )
    lookback_s: float = Field(
        default=21600.0,
        ge=600,
        le=7 * 86400,
        description="live messages received this long before the first "
        "new one are read to learn the offset",
    )


def machine_datetime(text: str | None) -> dt.datetime | None:
    """``YYYY-MM-DDThh:mm:ss`` (the body's local machine time) → aware, or None."""
    if not text:
        return None
    try:
        value = dt.datetime.fromisoformat(text)
    except ValueError:
        return None
    return value if value.tzinfo is not None else value.replace(tzinfo=BUSINESS_TZ)


def epochs(samples: Sequence[ClockSample], cfg: MachineClockConfig) -> list[list[ClockSample]]:
    """Split samples (in receive order) where the machine's clock was reset or stopped."""
    out: list[list[ClockSample]] = []
    previous: ClockSample | None = None
    for s in samples:
        if previous is None:
            out.append([s])
        else:
            step = (s.machine - previous.machine).total_seconds()
            waited = max((s.received - previous.received).total_seconds(), 0.0)
            if step < -2.0 or step - waited > cfg.jump_s:
                out.append([s])
            else:
                out[-1].append(s)
        previous = s
    return out


def _seconds(s: ClockSample) -> float:
    return s.machine.timestamp()


def _lag(s: ClockSample) -> float:
    return (s.received - s.machine).total_seconds()


def lower_hull(points: Sequence[tuple[float, float]]) -> list[tuple[float, float]]:
    """The lower convex hull of (x, y) points (Andrew's monotone chain), x ascending; of points
    sharing an x only the lowest counts."""
    lowest: dict[float, float] = {}
    for x, y in points:
        lowest[x] = min(y, lowest.get(x, y))
    hull: list[tuple[float, float]] = []
    for p in sorted(lowest.items()):
        while len(hull) >= 2:
            (x1, y1), (x2, y2) = hull[-2], hull[-1]
            if (x2 - x1) * (p[1] - y1) - (y2 - y1) * (p[0] - x1) <= 0:
                hull.pop()  # hull[-1] lies on or above the chord hull[-2] → p
            else:
                break
        hull.append(p)
    return hull


class Envelope:
    """The live offset of one epoch as a function of machine time (seconds)."""

    def __init__(self, hull: Sequence[tuple[float, float]]) -> None:
        self.xs = [x for x, _ in hull]
        self.ys = [y for _, y in hull]

    def __call__(self, x: float) -> float:
        xs, ys = self.xs, self.ys
        if x <= xs[0]:
            return ys[0]
        if x >= xs[-1]:
            return ys[-1]
        i = bisect_right(xs, x)
        x0, x1, y0, y1 = xs[i - 1], xs[i], ys[i - 1], ys[i]
        return y0 + (y1 - y0) * (x - x0) / (x1 - x0)


class Floor:
    """The lowest an offset that drifts at most ``slope`` s/s can be, given points it lies on or
    below: ``min_j(y_j + slope·|x − x_j|)``, from two linear passes over the points (x order)."""

    def __init__(self, points: Sequence[tuple[float, float]], slope: float) -> None:
        self.xs, self.slope = [x for x, _ in points], slope
        low = [y for _, y in points]
        for i in range(1, len(low)):
            low[i] = min(low[i], low[i - 1] + slope * (self.xs[i] - self.xs[i - 1]))
        for i in range(len(low) - 2, -1, -1):
            low[i] = min(low[i], low[i + 1] + slope * (self.xs[i + 1] - self.xs[i]))
        self.low = low

    def __call__(self, x: float) -> float:
        xs, low, k = self.xs, self.low, self.slope
        i = bisect_right(xs, x)
        before = low[i - 1] + k * (x - xs[i - 1]) if i > 0 else float("inf")
        after = low[i] + k * (xs[i] - x) if i < len(xs) else float("inf")
        return min(before, after)


def _caught_up(epoch: Sequence[ClockSample], catch_s: float) -> set[Hashable]:
    """Samples that arrived sooner after the previous one than the machine's clock says they
    happened: the machine's buffer coming in faster than real time."""
    out: set[Hashable] = set()
    for previous, s in pairwise(epoch):
        step = (s.machine - previous.machine).total_seconds()
        waited = (s.received - previous.received).total_seconds()
        if step - waited > catch_s:
            out.add(s.key)
    return out


def place(
    samples: Sequence[ClockSample], cfg: MachineClockConfig | None = None
) -> dict[Hashable, dt.datetime]:
    """The machine-clock time of every trusted sample received late, by key; samples in receive
    order."""
    cfg = cfg or MachineClockConfig()
    placed: dict[Hashable, dt.datetime] = {}
    for epoch in epochs(samples, cfg):
        trusted = sorted((s for s in epoch if s.trusted), key=_seconds)
        burst = _caught_up(epoch, cfg.catch_s)
        steady = [(_seconds(s), _lag(s)) for s in trusted if s.key not in burst]
        if not steady:
            continue
        floor = Floor(steady, cfg.max_drift)
        live = [(x, y) for x, y in steady if y - floor(x) <= cfg.learn_s]
        envelope = Envelope(lower_hull(live))
        bias = statistics.median(y - envelope(x) for x, y in live)
        for s in trusted:
            x = _seconds(s)
            if _lag(s) - floor(x) > cfg.late_s:
                at = s.machine + dt.timedelta(seconds=envelope(x) + bias)
                placed[s.key] = min(at, s.received).astimezone(dt.UTC)
    return placed
