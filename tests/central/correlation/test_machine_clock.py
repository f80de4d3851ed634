"""The queue machine's offset and drift on plain values: live messages keep their receive time,
messages resent after an outage are placed by the machine's clock, across drift and resets."""

from __future__ import annotations

import datetime as dt
from typing import cast

from central.correlation.machine_clock import (
    BUSINESS_TZ,
    ClockSample,
    MachineClockConfig,
    epochs,
    lower_hull,
    machine_datetime,
    place,
)

T0 = dt.datetime(2026, 11, 20, 1, 0, tzinfo=dt.UTC)  # 09:00 in the hall
WHOLE_SECOND = 1.5  # the machine's clock counts whole seconds: no placement is finer than that


class Machine:
    """A machine clock ``skew`` off, running ``drift`` s/s fast; whole seconds, like the feed."""

    def __init__(self, skew: dt.timedelta, drift: float = 0.0) -> None:
        self.skew, self.drift = skew, drift
        self.reset_at: dt.datetime | None = None
        self.reset_by = dt.timedelta()

    def reads(self, true: dt.datetime) -> dt.datetime:
        elapsed = (true - T0).total_seconds()
        value = true + self.skew + dt.timedelta(seconds=elapsed * self.drift)
        if self.reset_at is not None and true >= self.reset_at:
            value += self.reset_by
        local = value.astimezone(BUSINESS_TZ).replace(microsecond=0, tzinfo=None)
        parsed = machine_datetime(local.isoformat())
        assert parsed is not None
        return parsed


def day(
    machine: Machine,
    outage: tuple[float, float] | None,
    *,
    trusted: bool = True,
    hours: float = 4,
    every_s: float = 17.3,
) -> tuple[list[ClockSample], dict[int, dt.datetime]]:
    """A message every ``every_s`` for ``hours``; those of the outage (minutes from T0) are
    received when it ends, in order, 20 ms apart. Returns the samples and each one's true time."""
    samples, truth = [], {}
    t, n, k = T0 + dt.timedelta(seconds=0.37), 0, 0
    end = T0 + dt.timedelta(hours=hours)
    while t < end:
        n += 1
        received = t + dt.timedelta(milliseconds=30)
        if outage is not None:
            cut, back = (T0 + dt.timedelta(minutes=m) for m in outage)
            if cut <= t < back:
                k += 1
                received = back + dt.timedelta(milliseconds=20 * k)
        samples.append(ClockSample(n, received, machine.reads(t), trusted))
        truth[n] = t
        t += dt.timedelta(seconds=every_s)
    samples.sort(key=lambda s: (s.received, s.key))  # receive order = the machine's order
    return samples, truth


def late_keys(
    truth: dict[int, dt.datetime], samples: list[ClockSample], beyond: float = 10
) -> set[object]:
    return {
        s.key for s in samples if (s.received - truth[cast(int, s.key)]).total_seconds() > beyond
    }


def assert_late_ones_placed(
    placed: dict[object, dt.datetime], truth: dict[int, dt.datetime], samples: list[ClockSample]
) -> None:
    """Every message 15 s late or more is placed, none under 5 s (the floor's drift allowance
    blurs the 10 s line by a few seconds at an outage's far end)."""
    assert late_keys(truth, samples, 15) <= set(placed) <= late_keys(truth, samples, 5)


def assert_placed_within(
    placed: dict[object, dt.datetime], truth: dict[int, dt.datetime], seconds: float
) -> None:
    errors = {
        k: abs((at - truth[k]).total_seconds()) for k, at in placed.items() if isinstance(k, int)
    }
    assert errors and max(errors.values()) <= seconds, max(errors.values())


def test_live_messages_keep_their_receive_time() -> None:
    samples, _ = day(Machine(dt.timedelta(hours=2, minutes=13)), None)
    assert place(samples) == {}


def test_an_hours_outage_is_placed_by_the_machine_clock() -> None:
    samples, truth = day(Machine(dt.timedelta(hours=-5, seconds=7)), (60, 120))
    placed = place(samples)
    assert_late_ones_placed(placed, truth, samples)
    assert_placed_within(placed, truth, WHOLE_SECOND)


def test_drift_is_followed_across_the_outage() -> None:
    # 3 s an hour fast: a constant offset would be 3 s off at the outage's far end
    samples, truth = day(Machine(dt.timedelta(minutes=41), drift=3 / 3600), (90, 150))
    placed = place(samples)
    assert_late_ones_placed(placed, truth, samples)
    assert_placed_within(placed, truth, WHOLE_SECOND + 0.5)


def test_outage_at_the_end_is_placed_from_the_offset_before_it() -> None:
    # the link came back and nothing live followed yet: only the offset before the outage
    samples, truth = day(Machine(dt.timedelta(hours=3)), (180, 240), hours=4)
    placed = place(samples)
    assert_late_ones_placed(placed, truth, samples)
    assert_placed_within(placed, truth, WHOLE_SECOND)


def test_outage_at_the_start_is_placed_from_the_offset_after_it() -> None:
    samples, truth = day(Machine(dt.timedelta(hours=3)), (0, 45))
    placed = place(samples)
    assert_late_ones_placed(placed, truth, samples)
    assert_placed_within(placed, truth, WHOLE_SECOND)


def test_a_clock_reset_during_the_outage_splits_the_offset() -> None:
    machine = Machine(dt.timedelta(minutes=-9))
    machine.reset_at, machine.reset_by = T0 + dt.timedelta(minutes=80), dt.timedelta(hours=-7)
    samples, truth = day(machine, (60, 120))
    assert len(epochs(samples, MachineClockConfig())) == 2
    placed = place(samples)
    assert_late_ones_placed(placed, truth, samples)
    assert_placed_within(placed, truth, WHOLE_SECOND)


def test_short_outages_and_the_resend_tick_stay_live() -> None:
    # an unacknowledged message comes again 2 s later: not worth moving, not moved
    samples, truth = day(Machine(dt.timedelta(0)), (30, 30.4))
    assert late_keys(truth, samples) == set()
    assert place(samples) == {}


def test_untrusted_receive_times_neither_teach_nor_get_placed() -> None:
    samples, _ = day(Machine(dt.timedelta(hours=1)), (60, 120), trusted=False)
    assert place(samples) == {}


def test_lower_hull_keeps_the_floor() -> None:
    points = [(0.0, 5.0), (1.0, 3.0), (2.0, 4.0), (3.0, 1.0), (3.0, 9.0), (4.0, 2.0)]
    assert lower_hull(points) == [(0.0, 5.0), (1.0, 3.0), (3.0, 1.0), (4.0, 2.0)]


def test_machine_time_text() -> None:
    assert machine_datetime("2026-11-20T09:00:01") == dt.datetime(
        2026, 11, 20, 1, 0, 1, tzinfo=dt.UTC
    )
    assert machine_datetime(None) is None and machine_datetime("2026-11-20 9h") is None
