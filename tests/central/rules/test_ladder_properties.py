"""Properties of the ladder over random cases in 2025–2026 (years chinese-calendar knows)."""

from __future__ import annotations

import datetime as dt
import itertools

from hypothesis import given, settings
from hypothesis import strategies as st

from central.rules.timelimit import (
    CaseClock,
    LadderStage,
    Suspension,
    counted_workdays,
    days_over,
    deadline,
    stage_on,
    steps,
    suspended_workdays,
)
from central.rules.workdays import BUSINESS_TZ, WorkCalendar, business_date, day_start

CAL = WorkCalendar()
LADDER_ORDER = [
    LadderStage.BLUE,
    LadderStage.YELLOW_LIGHT,
    LadderStage.RED_LIGHT,
    LadderStage.YELLOW_CARD,
    LadderStage.RED_CARD,
    LadderStage.SUPERVISION_LETTER,
]
HORIZON = 40  # days looked at after acceptance


@st.composite
def clocks(draw: st.DrawFn) -> CaseClock:
    accepted = dt.datetime.combine(
        draw(st.dates(min_value=dt.date(2025, 1, 1), max_value=dt.date(2026, 11, 20))),
        dt.time(draw(st.integers(0, 23)), draw(st.sampled_from([0, 30]))),
        tzinfo=BUSINESS_TZ,
    )
    legal = draw(st.integers(0, 20))
    promised = draw(st.none() | st.integers(0, legal))
    # boundaries at whole hours (and midnights) from acceptance, in order
    offsets = sorted(draw(st.sets(st.integers(0, 24 * 30), max_size=5)))
    moments = [accepted + dt.timedelta(hours=h) for h in offsets]
    suspensions: list[Suspension] = []
    completed = None
    i = 0
    while i < len(moments):
        kind = draw(st.sampled_from(["suspend", "complete", "skip"]))
        if kind == "complete":
            completed = moments[i]
            break
        if kind == "suspend":
            end = moments[i + 1] if i + 1 < len(moments) else None
            if end is None or end > moments[i]:
                suspensions.append(Suspension(start=moments[i], end=end))
            if end is None:
                break
            i += 2
            continue
        i += 1
    return CaseClock(
        accepted_at=accepted,
        legal_days=legal,
        promised_days=promised,
        completed_at=completed,
        suspensions=tuple(suspensions),
    )


def known_by_close_of(clock: CaseClock, day: dt.date) -> CaseClock:
    """The clock as central would have known it at the close of ``day``."""
    close = day_start(day + dt.timedelta(days=1))
    completed = clock.completed_at if clock.completed_at and clock.completed_at < close else None
    kept = tuple(
        Suspension(start=s.start, end=s.end if s.end is not None and s.end < close else None)
        for s in clock.suspensions
        if s.start < close
    )
    return clock.model_copy(update={"completed_at": completed, "suspensions": kept})


def days_of(clock: CaseClock) -> list[dt.date]:
    return [clock.accepted_on + dt.timedelta(days=i) for i in range(HORIZON)]


@settings(max_examples=120, deadline=None)
@given(clocks())
def test_steps_and_daily_stages_agree(clock: CaseClock) -> None:
    days = days_of(clock)
    full = steps(clock, days[-1], CAL)
    for day in days:
        part = steps(clock, day, CAL)
        assert part == full[: len(part)]  # re-derivation is idempotent: only appends
        assert part[-1].stage is stage_on(clock, day, CAL)
    for a, b in itertools.pairwise(full):
        assert a.stage is not b.stage and a.at <= b.at
        assert business_date(b.at) == b.on_date


@settings(max_examples=120, deadline=None)
@given(clocks())
def test_a_day_depends_only_on_what_was_known_by_its_close(clock: CaseClock) -> None:
    for day in days_of(clock)[::3]:
        assert stage_on(clock, day, CAL) is stage_on(known_by_close_of(clock, day), day, CAL)


@settings(max_examples=120, deadline=None)
@given(clocks())
def test_stages_never_go_back_without_a_suspension(clock: CaseClock) -> None:
    plain = clock.model_copy(update={"suspensions": (), "completed_at": None})
    ranks = [LADDER_ORDER.index(stage_on(plain, d, CAL)) for d in days_of(plain)]
    assert ranks == sorted(ranks)
    # and with no suspension the deadline is plain working-day arithmetic
    assert deadline(plain, CAL) == CAL.add_workdays(plain.accepted_on, plain.limit_days)


@settings(max_examples=120, deadline=None)
@given(clocks())
def test_days_used_plus_days_suspended_is_working_days_elapsed(clock: CaseClock) -> None:
    end = clock.completed_on or clock.accepted_on + dt.timedelta(days=HORIZON)
    if clock.completed_at is not None and clock.completed_at == day_start(end):
        end = max(end - dt.timedelta(days=1), clock.accepted_on)  # done at 00:00: day not used
    used = counted_workdays(clock, end, CAL)
    stopped = suspended_workdays(clock, end, CAL)
    assert used + stopped == CAL.workdays_between(clock.accepted_on, end)
    if clock.completed_at is None and all(s.end for s in clock.suspensions):
        dl = deadline(clock, CAL)
        assert days_over(clock, max(dl, clock.accepted_on), CAL) == 0
