"""The ladder across the 2026 Mid-Autumn and National Day holidays, against a table made by hand.

The 2026 schedule (国务院办公厅, checked against chinese-calendar 1.11):
  中秋节 09-25 (Fri) … 09-27 (Sun) off;
  国庆节 10-01 (Thu) … 10-07 (Wed) off; 调休: Sunday 09-20 and Saturday 10-10 are working days.

Every cell below was worked out on paper from the legal rule (not from the code): the day of
acceptance is not counted, the deadline is the limit-th working day after it, the position is
counted working days minus the limit; -1 yellow light, 0 red light, +1 yellow card, +2 red
card, +3 supervision letter; a working day on which the case is suspended at 00:00 does not
count; the stage shown is the one at the close of the day.

Cases (all times Asia/Shanghai):
  A accepted Fri 09-18 10:00, legal 10, promised 5: runs on the promise.
    counted 09-20(1) 21(2) 22(3) 23(4) 24(5) → deadline Thu 09-24; Mid-Autumn keeps the red
    light until the yellow card on Mon 09-28.
  B accepted Wed 09-23 15:00, legal 20, promised 3, completed Tue 09-29 16:00.
    counted 09-24(1) 28(2) 29(3) → deadline 09-29: completed on its deadline day, on time.
  C accepted Mon 09-28 09:00, legal 4, completed Sat 10-10 11:00.
    counted 09-29(1) 30(2) 10-08(3) 09(4) → deadline Fri 10-09; 10-10 is a 调休 working day,
    so it opens with a yellow card and the case is completed one working day late.
  D accepted Tue 09-29 10:00, legal 6, suspended for 补正 from Thu 10-08 14:00 to Mon 10-12 10:00.
    counted 09-30(1) 10-08(2, running at 00:00); 10-09, 10-10, 10-12 suspended at 00:00, not
    counted; 10-13(3) 14(4) 15(5) 16(6) → deadline Fri 10-16 (without the suspension: 10-12).
  E accepted on the working Saturday 10-10 09:30, legal 5, promised 2.
    counted 10-12(1) 13(2) → deadline Tue 10-13.
  F accepted online on holiday Sat 10-03 20:00, legal 1.
    counted 10-08(1) → deadline Thu 10-08: one working day is left from the start, so the
    yellow light is on for the rest of the holiday.
  G accepted Wed 09-30 16:00, legal 7, completed Fri 10-09 15:00.
    counted 10-08(1) 09(2) … deadline 10-15 (10-08, 09, 10, 12, 13, 14, 15): completed early.
  H accepted Mon 10-12 09:00, legal 0 (即办件), completed Tue 10-13 10:00.
    deadline = the acceptance day 10-12, red light at once; completed a working day late.
"""

from __future__ import annotations

import datetime as dt

import pytest

from central.rules.timelimit import (
    CaseClock,
    ClockSuspended,
    LadderConfig,
    LadderStage,
    Suspension,
    completed_on_time,
    deadline,
    stage_on,
    steps,
)
from central.rules.workdays import BUSINESS_TZ, WorkCalendar

CST = BUSINESS_TZ


def at(month: int, day: int, hour: int, minute: int = 0) -> dt.datetime:
    return dt.datetime(2026, month, day, hour, minute, tzinfo=CST)


CASES: dict[str, CaseClock] = {
    "A": CaseClock(accepted_at=at(9, 18, 10), legal_days=10, promised_days=5),
    "B": CaseClock(
        accepted_at=at(9, 23, 15), legal_days=20, promised_days=3, completed_at=at(9, 29, 16)
    ),
    "C": CaseClock(accepted_at=at(9, 28, 9), legal_days=4, completed_at=at(10, 10, 11)),
    "D": CaseClock(
        accepted_at=at(9, 29, 10),
        legal_days=6,
        suspensions=(Suspension(start=at(10, 8, 14), end=at(10, 12, 10), reason="补正"),),
    ),
    "E": CaseClock(accepted_at=at(10, 10, 9, 30), legal_days=5, promised_days=2),
    "F": CaseClock(accepted_at=at(10, 3, 20), legal_days=1),
    "G": CaseClock(accepted_at=at(9, 30, 16), legal_days=7, completed_at=at(10, 9, 15)),
    "H": CaseClock(accepted_at=at(10, 12, 9), legal_days=0, completed_at=at(10, 13, 10)),
}

# W = working day, - = rest day; * marks the 调休 working weekend days.
# B blue, YL yellow light, RL red light, YC yellow card, RC red card, SL supervision letter,
# SU suspended, DO done on time, DL done late, . not yet accepted.
TABLE = """
date   day cal  A  B  C  D  E  F  G  H
09-18  Fri W    B  .  .  .  .  .  .  .
09-19  Sat -    B  .  .  .  .  .  .  .
09-20  Sun W*   B  .  .  .  .  .  .  .
09-21  Mon W    B  .  .  .  .  .  .  .
09-22  Tue W    B  .  .  .  .  .  .  .
09-23  Wed W    YL B  .  .  .  .  .  .
09-24  Thu W    RL B  .  .  .  .  .  .
09-25  Fri -    RL B  .  .  .  .  .  .
09-26  Sat -    RL B  .  .  .  .  .  .
09-27  Sun -    RL B  .  .  .  .  .  .
09-28  Mon W    YC YL B  .  .  .  .  .
09-29  Tue W    RC DO B  B  .  .  .  .
09-30  Wed W    SL DO B  B  .  .  B  .
10-01  Thu -    SL DO B  B  .  .  B  .
10-02  Fri -    SL DO B  B  .  .  B  .
10-03  Sat -    SL DO B  B  .  YL B  .
10-04  Sun -    SL DO B  B  .  YL B  .
10-05  Mon -    SL DO B  B  .  YL B  .
10-06  Tue -    SL DO B  B  .  YL B  .
10-07  Wed -    SL DO B  B  .  YL B  .
10-08  Thu W    SL DO YL SU .  RL B  .
10-09  Fri W    SL DO RL SU .  YC DO .
10-10  Sat W*   SL DO DL SU B  RC DO .
10-11  Sun -    SL DO DL SU B  RC DO .
10-12  Mon W    SL DO DL B  YL SL DO RL
10-13  Tue W    SL DO DL B  RL SL DO DL
10-14  Wed W    SL DO DL B  YC SL DO DL
10-15  Thu W    SL DO DL YL RC SL DO DL
10-16  Fri W    SL DO DL RL SL SL DO DL
10-17  Sat -    SL DO DL RL SL SL DO DL
10-18  Sun -    SL DO DL RL SL SL DO DL
10-19  Mon W    SL DO DL YC SL SL DO DL
10-20  Tue W    SL DO DL RC SL SL DO DL
10-21  Wed W    SL DO DL SL SL SL DO DL
10-22  Thu W    SL DO DL SL SL SL DO DL
10-23  Fri W    SL DO DL SL SL SL DO DL
10-24  Sat -    SL DO DL SL SL SL DO DL
10-25  Sun -    SL DO DL SL SL SL DO DL
10-26  Mon W    SL DO DL SL SL SL DO DL
10-27  Tue W    SL DO DL SL SL SL DO DL
10-28  Wed W    SL DO DL SL SL SL DO DL
"""

CODES = {
    "B": LadderStage.BLUE,
    "YL": LadderStage.YELLOW_LIGHT,
    "RL": LadderStage.RED_LIGHT,
    "YC": LadderStage.YELLOW_CARD,
    "RC": LadderStage.RED_CARD,
    "SL": LadderStage.SUPERVISION_LETTER,
    "SU": LadderStage.SUSPENDED,
    "DO": LadderStage.DONE_ON_TIME,
    "DL": LadderStage.DONE_LATE,
}


def parse_table() -> tuple[list[tuple[dt.date, bool]], dict[str, dict[dt.date, str]]]:
    lines = [ln.split() for ln in TABLE.strip().splitlines()]
    header, rows = lines[0], lines[1:]
    names = header[3:]
    days: list[tuple[dt.date, bool]] = []
    cells: dict[str, dict[dt.date, str]] = {n: {} for n in names}
    for row in rows:
        month, day = map(int, row[0].split("-"))
        d = dt.date(2026, month, day)
        days.append((d, row[2].startswith("W")))
        for name, code in zip(names, row[3:], strict=True):
            cells[name][d] = code
    return days, cells


DAYS, CELLS = parse_table()
CAL = WorkCalendar()

HAND_DEADLINES = {
    "A": dt.date(2026, 9, 24),
    "B": dt.date(2026, 9, 29),
    "C": dt.date(2026, 10, 9),
    "D": dt.date(2026, 10, 16),
    "E": dt.date(2026, 10, 13),
    "F": dt.date(2026, 10, 8),
    "G": dt.date(2026, 10, 15),
    "H": dt.date(2026, 10, 12),
}

S = LadderStage
HAND_STEPS: dict[str, list[tuple[LadderStage, tuple[int, int]]]] = {
    "A": [(S.BLUE, (9, 18)), (S.YELLOW_LIGHT, (9, 23)), (S.RED_LIGHT, (9, 24)),
          (S.YELLOW_CARD, (9, 28)), (S.RED_CARD, (9, 29)), (S.SUPERVISION_LETTER, (9, 30))],
    "B": [(S.BLUE, (9, 23)), (S.YELLOW_LIGHT, (9, 28)), (S.RED_LIGHT, (9, 29)),
          (S.DONE_ON_TIME, (9, 29))],
    "C": [(S.BLUE, (9, 28)), (S.YELLOW_LIGHT, (10, 8)), (S.RED_LIGHT, (10, 9)),
          (S.YELLOW_CARD, (10, 10)), (S.DONE_LATE, (10, 10))],
    "D": [(S.BLUE, (9, 29)), (S.SUSPENDED, (10, 8)), (S.BLUE, (10, 12)),
          (S.YELLOW_LIGHT, (10, 15)), (S.RED_LIGHT, (10, 16)), (S.YELLOW_CARD, (10, 19)),
          (S.RED_CARD, (10, 20)), (S.SUPERVISION_LETTER, (10, 21))],
    "E": [(S.BLUE, (10, 10)), (S.YELLOW_LIGHT, (10, 12)), (S.RED_LIGHT, (10, 13)),
          (S.YELLOW_CARD, (10, 14)), (S.RED_CARD, (10, 15)), (S.SUPERVISION_LETTER, (10, 16))],
    "F": [(S.YELLOW_LIGHT, (10, 3)), (S.RED_LIGHT, (10, 8)), (S.YELLOW_CARD, (10, 9)),
          (S.RED_CARD, (10, 10)), (S.SUPERVISION_LETTER, (10, 12))],
    "G": [(S.BLUE, (9, 30)), (S.DONE_ON_TIME, (10, 9))],  # 2 of 7 days used: still blue
    "H": [(S.RED_LIGHT, (10, 12)), (S.YELLOW_CARD, (10, 13)), (S.DONE_LATE, (10, 13))],
}  # fmt: skip


def test_the_table_calendar_is_the_official_2026_schedule() -> None:
    for day, working in DAYS:
        assert CAL.is_workday(day) is working, day


def test_table_covers_each_case_from_acceptance_to_at_least_15_days_after() -> None:
    last = DAYS[-1][0]
    for name, clock in CASES.items():
        assert last >= clock.accepted_on + dt.timedelta(days=15), name
        assert CELLS[name][clock.accepted_on] != ".", name
        if clock.accepted_on > DAYS[0][0]:
            assert CELLS[name][clock.accepted_on - dt.timedelta(days=1)] == ".", name


@pytest.mark.parametrize("name", sorted(CASES))
def test_every_stage_on_every_day(name: str) -> None:
    clock = CASES[name]
    got = {}
    want = {}
    for day, _ in DAYS:
        code = CELLS[name][day]
        if code == ".":
            with pytest.raises(ValueError, match="before the case was accepted"):
                stage_on(clock, day, CAL)
            continue
        want[day] = CODES[code]
        got[day] = stage_on(clock, day, CAL)
    assert got == want


@pytest.mark.parametrize("name", sorted(CASES))
def test_deadline(name: str) -> None:
    assert deadline(CASES[name], CAL) == HAND_DEADLINES[name]


@pytest.mark.parametrize("name", sorted(CASES))
def test_step_events(name: str) -> None:
    got = [(s.stage, s.on_date) for s in steps(CASES[name], DAYS[-1][0], CAL)]
    want = [(stage, dt.date(2026, m, d)) for stage, (m, d) in HAND_STEPS[name]]
    assert got == want


@pytest.mark.parametrize("name", sorted(CASES))
def test_steps_agree_with_the_daily_table(name: str) -> None:
    # The last step on or before each day is that day's stage in the table.
    all_steps = steps(CASES[name], DAYS[-1][0], CAL)
    for day, _ in DAYS:
        code = CELLS[name][day]
        if code == ".":
            continue
        last = [s for s in all_steps if s.on_date <= day][-1]
        assert last.stage is CODES[code], (name, day)


def test_on_time_and_late() -> None:
    assert completed_on_time(CASES["B"], CAL) is True  # on its deadline day
    assert completed_on_time(CASES["G"], CAL) is True  # early
    assert completed_on_time(CASES["C"], CAL) is False  # one working day late
    assert completed_on_time(CASES["H"], CAL) is False
    with pytest.raises(ValueError, match="not completed"):
        completed_on_time(CASES["A"], CAL)


def test_step_instants() -> None:
    b = steps(CASES["B"], dt.date(2026, 10, 1), CAL)
    assert b[0].at == at(9, 23, 15)  # the ladder starts at acceptance
    assert b[2].at == dt.datetime(2026, 9, 29, tzinfo=CST)  # the red light at 00:00
    assert b[3].at == at(9, 29, 16)  # completion at its own instant
    assert [s.days_over for s in b] == [-3, -1, 0, 0]
    d = steps(CASES["D"], dt.date(2026, 10, 12), CAL)
    assert [(s.stage, s.at) for s in d[1:]] == [
        (S.SUSPENDED, at(10, 8, 14)),
        (S.BLUE, at(10, 12, 10)),
    ]


def test_steps_are_a_prefix_for_every_earlier_until() -> None:
    for clock in CASES.values():
        full = steps(clock, DAYS[-1][0], CAL)
        for day, _ in DAYS:
            part = steps(clock, day, CAL)
            assert full[: len(part)] == part
            assert all(s.on_date <= day for s in part)


def test_open_suspension_shows_suspended_and_has_no_deadline() -> None:
    clock = CaseClock(
        accepted_at=at(9, 29, 10),
        legal_days=6,
        suspensions=(Suspension(start=at(10, 8, 14), reason="特别程序"),),
    )
    assert stage_on(clock, dt.date(2026, 10, 8), CAL) is S.SUSPENDED
    assert stage_on(clock, dt.date(2026, 10, 28), CAL) is S.SUSPENDED
    with pytest.raises(ClockSuspended, match="暂停计时"):
        deadline(clock, CAL)
    # what was recorded before the suspension stays, then one SUSPENDED step
    assert steps(clock, dt.date(2026, 10, 28), CAL) == steps(CASES["D"], dt.date(2026, 10, 11), CAL)


def test_same_day_suspension_costs_no_day() -> None:
    plain = CaseClock(accepted_at=at(9, 29, 10), legal_days=6)
    brief = CaseClock(
        accepted_at=at(9, 29, 10),
        legal_days=6,
        suspensions=[(at(10, 9, 9), at(10, 9, 16))],  # a (start, end) pair is accepted too
    )
    # hand: 09-30(1) 10-08(2) 10-09(3) 10-10(4) 10-12(5) 10-13(6)
    assert deadline(plain, CAL) == deadline(brief, CAL) == dt.date(2026, 10, 13)
    assert [(s.stage, s.on_date) for s in steps(brief, dt.date(2026, 10, 9), CAL)][-2:] == [
        (S.SUSPENDED, dt.date(2026, 10, 9)),
        (S.BLUE, dt.date(2026, 10, 9)),
    ]


def test_configured_thresholds() -> None:
    early = LadderConfig(yellow_light=-2, red_light=0, yellow_card=1, red_card=3,
                         supervision_letter=5)  # fmt: skip
    a = CASES["A"]  # deadline 09-24; hand: 2 working days before = 09-22
    assert stage_on(a, dt.date(2026, 9, 21), CAL, early) is S.BLUE
    assert stage_on(a, dt.date(2026, 9, 22), CAL, early) is S.YELLOW_LIGHT
    assert stage_on(a, dt.date(2026, 9, 29), CAL, early) is S.YELLOW_CARD  # +2 < red_card 3
    assert stage_on(a, dt.date(2026, 9, 30), CAL, early) is S.RED_CARD  # +3
    assert stage_on(a, dt.date(2026, 10, 8), CAL, early) is S.RED_CARD  # +4 (holiday between)
    assert stage_on(a, dt.date(2026, 10, 9), CAL, early) is S.SUPERVISION_LETTER  # +5
    with pytest.raises(ValueError, match="thresholds must increase"):
        LadderConfig(yellow_card=2, red_card=2)


def test_acceptance_date_is_the_shanghai_date() -> None:
    # 17:30 UTC on 09-17 is 01:30 on 09-18 in Shanghai: same ladder as case A
    utc = CaseClock(
        accepted_at=dt.datetime(2026, 9, 17, 17, 30, tzinfo=dt.UTC),
        legal_days=10,
        promised_days=5,
    )
    assert utc.accepted_on == dt.date(2026, 9, 18)
    assert deadline(utc, CAL) == HAND_DEADLINES["A"]


def test_incoherent_clocks_are_refused() -> None:
    with pytest.raises(ValueError, match="exceeds"):
        CaseClock(accepted_at=at(9, 1, 9), legal_days=3, promised_days=5)
    with pytest.raises(ValueError, match="before the acceptance"):
        CaseClock(accepted_at=at(9, 1, 9), legal_days=3, suspensions=[(at(8, 31, 9), None)])
    with pytest.raises(ValueError, match="still open"):
        CaseClock(
            accepted_at=at(9, 1, 9),
            legal_days=3,
            suspensions=[(at(9, 2, 9), None), (at(9, 3, 9), at(9, 4, 9))],
        )
    with pytest.raises(ValueError, match="timezone"):
        CaseClock(accepted_at=dt.datetime(2026, 9, 1, 9), legal_days=3)
