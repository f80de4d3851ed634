"""How long the pure rules take for a county hall's volume (figures printed, nothing timed).

Run: .venv/bin/pytest -m bench -s tests/bench/test_rules_bench.py
"""

from __future__ import annotations

import datetime as dt
import random
import time

import pytest

from central.rules.indicators import (
    CaseFact,
    CaseStatus,
    DateRange,
    EvaluationFact,
    Grouping,
    HallSetup,
    OpeningPeriod,
    compute,
)
from central.rules.timelimit import CaseClock, Suspension, deadline, stage_on, steps
from central.rules.workdays import BUSINESS_TZ, WorkCalendar

CASES_PER_DAY = 3000  # a county hall: a few thousand cases a day


def _clocks(rng: random.Random, n: int) -> list[CaseClock]:
    out = []
    for _ in range(n):
        accepted = dt.datetime(2026, 9, 28, 9, tzinfo=BUSINESS_TZ) + dt.timedelta(
            minutes=rng.randrange(0, 8 * 60)
        )
        legal = rng.choice([0, 1, 3, 5, 10, 20])
        suspensions: tuple[Suspension, ...] = ()
        if rng.random() < 0.1:
            start = accepted + dt.timedelta(days=rng.randrange(1, 10))
            suspensions = (Suspension(start=start, end=start + dt.timedelta(days=3)),)
        done = None
        if rng.random() < 0.7:
            done = accepted + dt.timedelta(days=rng.randrange(0, 25), hours=1)
            if suspensions and done <= suspensions[0].start:
                suspensions = ()
        out.append(CaseClock(accepted_at=accepted, legal_days=legal, completed_at=done,
                             suspensions=suspensions))  # fmt: skip
    return out


@pytest.mark.bench
def test_rules_throughput() -> None:
    rng = random.Random(7)
    cal = WorkCalendar()
    clocks = _clocks(rng, CASES_PER_DAY)
    until = dt.date(2026, 10, 31)

    t0 = time.perf_counter()
    all_steps = [steps(c, until, cal) for c in clocks]
    t_steps = time.perf_counter() - t0

    t0 = time.perf_counter()
    stages = [stage_on(c, until, cal) for c in clocks]
    t_stage = time.perf_counter() - t0

    facts = []
    for i, c in enumerate(clocks):
        dl = None if c.suspensions and c.suspensions[0].end is None else deadline(c, cal)
        status = CaseStatus.COMPLETED if c.completed_at else CaseStatus.RUNNING
        facts.append(
            CaseFact(
                f"c{i}",
                "H1",
                f"D{i % 12}",
                f"W{i % 40}",
                f"s{i % 60}",
                "item",
                c.accepted_at,
                c.completed_at,
                c.legal_days,
                None,
                dl,
                status,
            )
        )
    evals = [EvaluationFact("H1", f"W{i % 40}", f"s{i % 60}", rng.randint(1, 6), f"c{i}", True,
                            c.accepted_at + dt.timedelta(minutes=20))
             for i, c in enumerate(clocks)]  # fmt: skip
    hall = HallSetup(hall="H1", opening=(OpeningPeriod(start=dt.time(9), end=dt.time(17)),),
                     windows={f"W{i}": f"D{i % 12}" for i in range(40)})  # fmt: skip
    t0 = time.perf_counter()
    result = compute(DateRange(dt.date(2026, 9, 1), until), Grouping.STAFF, cal, cases=facts,
                     evaluations=evals, halls=[hall])  # fmt: skip
    t_ind = time.perf_counter() - t0

    assert len(all_steps) == len(stages) == CASES_PER_DAY and len(result) == 60
    print(
        f"\nsteps() to {until} for {CASES_PER_DAY} cases: {t_steps:.2f} s "
        f"({t_steps / CASES_PER_DAY * 1e3:.2f} ms/case)"
        f"\nstage_on() for {CASES_PER_DAY} cases: {t_stage:.2f} s"
        f"\ncompute() by staff, {CASES_PER_DAY} cases + evaluations, 2 months: {t_ind:.2f} s"
    )
