"""Every indicator against a hand computation on a small fixture.

Period: Thu 2026-10-08 … Mon 2026-10-12. Working days in it: 10-08, 10-09, 10-10 (the 调休
Saturday), 10-12; Sunday 10-11 rests. Definitions: central/rules/INDICATORS.md.

Hall H1 opens 09:00–12:00 and 13:00–17:00 (420 min); windows W1 公安, W2 人社, W3 公安.
Hall H2 opens 09:00–12:00 (180 min); window W1 公安.

Cases (deadline as central computed it with the ladder; "used" = working days in
(accepted, completed] minus suspended days):
  c1 H1 公安 W1 s1  acc 10-08 09:30  done 10-08 11:00  legal 5 promised 1  dl 10-09  used 0
  c2 H1 公安 W1 s1  acc 10-08 10:00  done 10-12 15:00  legal 3            dl 10-12  used 3
  c3 H1 人社 W2 s2  acc 09-29 09:00  done 10-09 16:00  legal 4 promised 2  dl 10-08  used 3
                                           (c3 used 09-30, 10-08, 10-09)
  c4 H1 人社 W2 s2  acc 10-09 14:00  running           legal 1            dl 10-10
  c5 H1 人社 W2 s2  acc 10-12 09:00  suspended         legal 10 promised 5 dl —
  c6 H1 公安 online acc 10-10 20:00  done 10-12 09:00  legal 2            dl 10-13  used 1
  c7 H1 公安 W1 s1  acc 10-08 09:00  withdrawn: in no indicator
  c8 H1 公安 W1 s1  acc 10-08 15:00  done 10-12 10:00  legal 5 promised 3  dl 10-13  used 3−1 = 2
  c9 H2 公安 W1 s9  acc 10-09 10:00  done 10-09 10:30  legal 0 (即办件)    dl 10-09  used 0
"""

from __future__ import annotations

import datetime as dt
from dataclasses import replace

import pytest

from central.rules.indicators import (
    CaseFact,
    CaseStatus,
    DateRange,
    EvaluationFact,
    Grouping,
    GroupKey,
    HallSetup,
    Indicators,
    OpeningPeriod,
    Ratio,
    SessionFact,
    SessionOutcome,
    StaffingFact,
    compute,
)
from central.rules.scale import DeviceKey
from central.rules.workdays import BUSINESS_TZ, WorkCalendar

CAL = WorkCalendar()
PERIOD = DateRange(dt.date(2026, 10, 8), dt.date(2026, 10, 12))
K = DeviceKey


def t(month: int, day: int, hour: int, minute: int = 0) -> dt.datetime:
    return dt.datetime(2026, month, day, hour, minute, tzinfo=BUSINESS_TZ)


def d(month: int, day: int) -> dt.date:
    return dt.date(2026, month, day)


def case(
    no: str,
    hall: str,
    dep: str,
    window: str | None,
    staff: str | None,
    acc: dt.datetime,
    done: dt.datetime | None,
    legal: int,
    promised: int | None,
    deadline: dt.date | None,
    status: CaseStatus = CaseStatus.COMPLETED,
    suspended: int = 0,
) -> CaseFact:
    return CaseFact(no, hall, dep, window, staff, "item-" + no, acc, done, legal, promised,
                    deadline, status, suspended)  # fmt: skip


RUNNING, SUSPENDED, WITHDRAWN = CaseStatus.RUNNING, CaseStatus.SUSPENDED, CaseStatus.WITHDRAWN
CASES = [
    case("c1", "H1", "公安", "W1", "s1", t(10, 8, 9, 30), t(10, 8, 11), 5, 1, d(10, 9)),
    case("c2", "H1", "公安", "W1", "s1", t(10, 8, 10), t(10, 12, 15), 3, None, d(10, 12)),
    case("c3", "H1", "人社", "W2", "s2", t(9, 29, 9), t(10, 9, 16), 4, 2, d(10, 8)),
    case("c4", "H1", "人社", "W2", "s2", t(10, 9, 14), None, 1, None, d(10, 10), RUNNING),
    case("c5", "H1", "人社", "W2", "s2", t(10, 12, 9), None, 10, 5, None, SUSPENDED),
    case("c6", "H1", "公安", None, None, t(10, 10, 20), t(10, 12, 9), 2, None, d(10, 13)),
    case("c7", "H1", "公安", "W1", "s1", t(10, 8, 9), None, 5, None, d(10, 15), WITHDRAWN),
    case("c8", "H1", "公安", "W1", "s1", t(10, 8, 15), t(10, 12, 10), 5, 3, d(10, 13),
         suspended=1),
    case("c9", "H2", "公安", "W1", "s9", t(10, 9, 10), t(10, 9, 10, 30), 0, None, d(10, 9)),
]  # fmt: skip

EVALUATIONS = [
    EvaluationFact("H1", "W1", "s1", 1, "c1", True, t(10, 8, 11, 5)),  # e1
    EvaluationFact("H1", "W1", "s1", 2, "c2", True, t(10, 12, 15, 10)),  # e2
    EvaluationFact("H1", "W2", "s2", 3, "c3", True, t(10, 9, 16, 5)),  # e3
    EvaluationFact("H1", "W2", "s2", 4, None, True, t(10, 10, 10)),  # e4 no case
    EvaluationFact("H1", "W2", "s2", 1, "c4", False, t(10, 9, 14, 30)),  # e5 not counted
    EvaluationFact("H1", "W1", "s1", 6, "c8", True, t(10, 12, 10, 5)),  # e6
    EvaluationFact("H1", "W1", "s1", 1, None, True, t(10, 13, 9)),  # e7 after the period
    EvaluationFact("H1", "W2", "s2", 5, "c5", True, t(10, 12, 9, 30)),  # e8
    EvaluationFact("H2", "W1", "s9", 2, "c9", True, t(10, 9, 10, 31)),  # e9
]

FIN, NO_SHOW, XFER = SessionOutcome.FINISHED, SessionOutcome.NO_SHOW, SessionOutcome.TRANSFERRED
SESSIONS = [
    # wait = called − issued
    SessionFact("H1", "W1", "s1", "A001", t(10, 8, 9, 10), t(10, 8, 9, 25), t(10, 8, 9, 26),
                t(10, 8, 9, 40), FIN, ("c1",)),  # 15 min
    SessionFact("H1", "W1", "s1", "A002", t(10, 8, 9, 20), t(10, 8, 9, 50), None, None,
                NO_SHOW),
    SessionFact("H1", "W2", "s2", "B001", t(10, 9, 13, 40), t(10, 9, 14), t(10, 9, 14),
                t(10, 9, 14, 20), XFER),  # 20 min
    SessionFact("H1", "W2", "s2", "B002", t(10, 12, 8, 50), t(10, 12, 9), t(10, 12, 9),
                t(10, 12, 9, 20), FIN, ("c5",)),  # 10 min
    SessionFact("H1", "W1", "s1", "A003", t(10, 12, 14), None, None, None, NO_SHOW),  # never called
    SessionFact("H1", "W1", "s1", "A004", t(10, 13, 9), t(10, 13, 9, 30), None, None,
                FIN),  # after the period
    SessionFact("H2", "W1", "s9", "C001", t(10, 9, 10), t(10, 9, 10, 5), t(10, 9, 10, 5),
                t(10, 9, 10, 30), FIN, ("c9",)),  # 5 min
]  # fmt: skip

STAFFING = [
    StaffingFact("H1", "W1", "s1", t(10, 8, 8, 30), t(10, 8, 12, 30)),  # 180 in opening hours
    StaffingFact("H1", "W1", "s1", t(10, 8, 13), t(10, 8, 17, 30)),  # 240
    StaffingFact("H1", "W1", "s1", t(10, 9, 9), t(10, 9, 11)),  # 120
    StaffingFact("H1", "W1", "s3", t(10, 9, 10), t(10, 9, 12)),  # 120; W1 union 09–12 = 180
    StaffingFact("H1", "W2", "s2", t(10, 10, 9), t(10, 10, 17)),  # 180 + 240 = 420 (调休 Sat)
    StaffingFact("H1", "W2", "s2", t(10, 11, 9), t(10, 11, 12)),  # Sunday: hall closed
    StaffingFact("H1", "W2", "s2", t(10, 12, 12), t(10, 12, 13)),  # lunch: 0
    StaffingFact("H2", "W1", "s9", t(10, 9, 9), t(10, 9, 10)),  # 60
]

HALLS = [
    HallSetup(
        hall="H1",
        opening=(OpeningPeriod(start=dt.time(9), end=dt.time(12)),
                 OpeningPeriod(start=dt.time(13), end=dt.time(17))),
        windows={"W1": "公安", "W2": "人社", "W3": "公安"},
    ),
    HallSetup(hall="H2", opening=(OpeningPeriod(start=dt.time(9), end=dt.time(12)),),
              windows={"W1": "公安"}),
]  # fmt: skip


def run(by: Grouping) -> dict[GroupKey, Indicators]:
    return compute(
        PERIOD, by, CAL, cases=CASES, sessions=SESSIONS, evaluations=EVALUATIONS,
        staffing=STAFFING, halls=HALLS,
    )  # fmt: skip


def pair(r: Ratio) -> tuple[float, float]:
    return (r.numerator, r.denominator)


def bad(i: Indicators) -> dict[int, int]:
    return {int(k): n for k, n in i.bad_reviews.items() if n}


def test_by_hall_h1() -> None:
    h1 = run(Grouping.HALL)[GroupKey(hall="H1")]
    # accepted in the period: c1 c2 c4 c5 c6 c8 (c3 before it, c7 withdrawn) = 6
    assert pair(h1.same_day_rate) == (1, 6)  # only c1 completed on its acceptance day
    # 承诺提速率 Σ(legal−promised)/Σlegal: c1 4/5, c2 0/3, c4 0/1, c5 5/10, c6 0/2, c8 2/5
    assert pair(h1.promise_speedup) == (11, 26)
    # evaluated (counted evaluation with the case, by 10-12): c1 c2 c5 c8; not c4 (e5 not
    # counted) nor c6
    assert pair(h1.evaluation_rate) == (4, 6)
    # completed in the period: c1 c2 c3 c6 c8 = 5; used 0+3+3+1+2 = 9
    assert pair(h1.avg_handling_days) == (9, 5)
    # 办理提速率 Σ(legal−used)/Σlegal: c1 5/5, c2 0/3, c3 1/4, c6 1/2, c8 3/5 → 10/19
    assert pair(h1.handling_speedup) == (10, 19)
    # on time: c1 (10-08 ≤ 10-09), c2 (on its deadline day), c6, c8; c3 late (10-09 > 10-08)
    assert pair(h1.on_time_rate) == (4, 5)
    # before the deadline day: c1, c6, c8
    assert pair(h1.early_completion_rate) == (3, 5)
    # late completed: c3; open and ≥1 working day over at 10-12: c4 (dl 10-10, 10-12 is over);
    # c5 suspended (no deadline)
    assert (h1.overdue_completed, h1.overdue_open, h1.overdue_count) == (1, 1, 2)
    # counted evaluations in the period: e1 e2 e3 e4 e6 e8 = 6 (e5 not counted, e7 after)
    assert pair(h1.satisfaction_rate) == (2, 6)  # e1 (key 1), e2 (key 2)
    assert bad(h1) == {3: 1, 4: 1, 5: 1, 6: 1}
    assert pair(h1.bad_review_rate) == (4, 6)
    # called tickets issued in the period: A001 A002 B001 B002 (A003 never called, A004 after)
    assert pair(h1.no_show_rate) == (1, 4)  # A002
    assert pair(h1.avg_wait_minutes) == (15 + 20 + 10, 3)  # A001, B001, B002
    # 在岗率: W1 420 (10-08) + 180 (10-09), W2 420 (10-10), W3 0;
    # opening 3 windows × 4 working days × 420
    assert pair(h1.staffed_rate) == (600 + 420 + 0, 3 * 4 * 420)


def test_an_upheld_appeal_takes_the_evaluation_out_of_satisfaction() -> None:
    # e3 (key 3 on c3) and e8 (key 5 on c5) found 误评 / 恶意差评 on appeal (申诉核减)
    upheld = [replace(e, excluded=True) if e.key in (3, 5) else e for e in EVALUATIONS]
    h1 = compute(PERIOD, Grouping.HALL, CAL, cases=CASES, evaluations=upheld, halls=HALLS)[
        GroupKey(hall="H1")
    ]
    assert pair(h1.satisfaction_rate) == (2, 6 - 2)
    assert bad(h1) == {4: 1, 6: 1}
    assert pair(h1.bad_review_rate) == (2, 4)
    assert h1.appeal_excluded == 2
    assert pair(h1.evaluation_rate) == (4, 6)  # c5 was still evaluated
    assert run(Grouping.HALL)[GroupKey(hall="H1")].appeal_excluded == 0


def test_by_hall_h2_and_empty_denominators() -> None:
    h2 = run(Grouping.HALL)[GroupKey(hall="H2")]
    assert pair(h2.same_day_rate) == (1, 1)
    assert pair(h2.promise_speedup) == (0, 0) and h2.promise_speedup.value is None  # legal 0
    assert pair(h2.handling_speedup) == (0, 0) and h2.handling_speedup.value is None
    assert pair(h2.on_time_rate) == (1, 1)
    assert pair(h2.early_completion_rate) == (0, 1)  # completed on (not before) its deadline
    assert pair(h2.avg_handling_days) == (0, 1)
    assert pair(h2.satisfaction_rate) == (1, 1)
    assert pair(h2.evaluation_rate) == (1, 1)
    assert pair(h2.avg_wait_minutes) == (5, 1)
    assert pair(h2.staffed_rate) == (60, 4 * 180)


def test_by_window() -> None:
    res = run(Grouping.WINDOW)
    # c6 (online, no window) is in no window group; W3 appears through the roster
    assert set(res) == {
        GroupKey(hall="H1", window="W1"),
        GroupKey(hall="H1", window="W2"),
        GroupKey(hall="H1", window="W3"),
        GroupKey(hall="H2", window="W1"),
    }
    w1 = res[GroupKey(hall="H1", window="W1")]
    # cases c1 c2 c8 (c7 withdrawn)
    assert pair(w1.same_day_rate) == (1, 3)
    assert pair(w1.promise_speedup) == (4 + 0 + 2, 5 + 3 + 5)
    assert pair(w1.evaluation_rate) == (3, 3)
    assert pair(w1.avg_handling_days) == (0 + 3 + 2, 3)
    assert pair(w1.handling_speedup) == (5 + 0 + 3, 5 + 3 + 5)
    assert pair(w1.on_time_rate) == (3, 3)
    assert pair(w1.early_completion_rate) == (2, 3)  # c1, c8
    assert w1.overdue_count == 0
    assert pair(w1.satisfaction_rate) == (2, 3)  # e1, e2 of e1 e2 e6
    assert bad(w1) == {6: 1}
    assert pair(w1.no_show_rate) == (1, 2)
    assert pair(w1.avg_wait_minutes) == (15, 1)
    assert pair(w1.staffed_rate) == (420 + 180, 4 * 420)

    w2 = res[GroupKey(hall="H1", window="W2")]
    # cases c3 c4 c5; accepted in the period: c4 c5
    assert pair(w2.same_day_rate) == (0, 2)
    assert pair(w2.promise_speedup) == (0 + 5, 1 + 10)
    assert pair(w2.evaluation_rate) == (1, 2)  # c5 (e8); c4's e5 not counted
    assert pair(w2.avg_handling_days) == (3, 1)  # c3
    assert pair(w2.handling_speedup) == (1, 4)
    assert pair(w2.on_time_rate) == (0, 1)
    assert (w2.overdue_completed, w2.overdue_open) == (1, 1)
    assert pair(w2.satisfaction_rate) == (0, 3)  # e3 e4 e8
    assert bad(w2) == {3: 1, 4: 1, 5: 1}
    assert pair(w2.avg_wait_minutes) == (20 + 10, 2)
    assert pair(w2.no_show_rate) == (0, 2)
    assert pair(w2.staffed_rate) == (420, 4 * 420)

    w3 = res[GroupKey(hall="H1", window="W3")]
    assert pair(w3.staffed_rate) == (0, 4 * 420) and w3.staffed_rate.value == 0
    assert w3.on_time_rate.value is None and w3.satisfaction_rate.value is None


def test_by_department() -> None:
    res = run(Grouping.DEPARTMENT)
    assert set(res) == {GroupKey(hall="H1", department="公安"),
                        GroupKey(hall="H1", department="人社"),
                        GroupKey(hall="H2", department="公安")}  # fmt: skip
    ga = res[GroupKey(hall="H1", department="公安")]
    # cases c1 c2 c6 c8 (the online c6 counts for its department)
    assert pair(ga.same_day_rate) == (1, 4)
    assert pair(ga.promise_speedup) == (4 + 0 + 0 + 2, 5 + 3 + 2 + 5)
    assert pair(ga.evaluation_rate) == (3, 4)  # c1 c2 c8
    assert pair(ga.avg_handling_days) == (0 + 3 + 1 + 2, 4)
    assert pair(ga.handling_speedup) == (5 + 0 + 1 + 3, 5 + 3 + 2 + 5)
    assert pair(ga.on_time_rate) == (4, 4)
    assert pair(ga.early_completion_rate) == (3, 4)  # c1 c6 c8
    # evaluations and sessions by the roster's department of their window (W1)
    assert pair(ga.satisfaction_rate) == (2, 3)
    assert pair(ga.staffed_rate) == (600 + 0, 2 * 4 * 420)  # W1 and W3
    rs = res[GroupKey(hall="H1", department="人社")]
    assert pair(rs.staffed_rate) == (420, 4 * 420)
    assert (rs.overdue_completed, rs.overdue_open) == (1, 1)


def test_by_staff() -> None:
    res = run(Grouping.STAFF)
    s1 = res[GroupKey(hall="H1", staff="s1")]
    assert pair(s1.on_time_rate) == (3, 3)  # c1 c2 c8
    assert pair(s1.satisfaction_rate) == (2, 3)
    assert pair(s1.no_show_rate) == (1, 2)
    # on duty 10-08 (420 staffed) and 10-09 (09–11 = 120): 540 of 2 × 420
    assert pair(s1.staffed_rate) == (420 + 120, 2 * 420)
    # s3 covered 10–12 on 10-09 only
    assert pair(res[GroupKey(hall="H1", staff="s3")].staffed_rate) == (120, 420)
    # s2: on duty 10-10 (420); 10-12 only over lunch, so not a day on duty; Sunday closed
    assert pair(res[GroupKey(hall="H1", staff="s2")].staffed_rate) == (420, 420)
    assert pair(res[GroupKey(hall="H2", staff="s9")].staffed_rate) == (60, 180)


def test_all() -> None:
    (only,) = run(Grouping.ALL).values()
    assert pair(only.on_time_rate) == (4 + 1, 5 + 1)
    assert pair(only.same_day_rate) == (1 + 1, 6 + 1)
    assert pair(only.satisfaction_rate) == (2 + 1, 6 + 1)
    assert pair(only.staffed_rate) == (1020 + 60, 3 * 4 * 420 + 4 * 180)
    assert str(only.on_time_rate) == "5/6"
    assert only.on_time_rate.value == pytest.approx(5 / 6)


def test_period_boundaries() -> None:
    # one day, 10-12: completions c2 c6 c8 (H1) only
    day = compute(DateRange(d(10, 12), d(10, 12)), Grouping.HALL, CAL, cases=CASES,
                  halls=HALLS)  # fmt: skip
    h1 = day[GroupKey(hall="H1")]
    assert pair(h1.on_time_rate) == (3, 3)
    assert pair(h1.same_day_rate) == (0, 1)  # c5 accepted on 10-12
    # at the end of 10-09, c3 is completed late that day and c4's deadline (10-10) is ahead
    before = compute(DateRange(d(10, 8), d(10, 9)), Grouping.HALL, CAL, cases=CASES)
    assert (before[GroupKey(hall="H1")].overdue_completed,
            before[GroupKey(hall="H1")].overdue_open) == (1, 0)  # fmt: skip
    # c4 (deadline Sat 10-10) is not overdue on its deadline day nor on the Sunday after it,
    # only from Monday 10-12, the first working day past it
    for last, overdue in ((d(10, 10), 0), (d(10, 11), 0), (d(10, 12), 1)):
        res = compute(DateRange(d(10, 8), last), Grouping.WINDOW, CAL, cases=CASES)
        assert res[GroupKey(hall="H1", window="W2")].overdue_open == overdue, last


def test_bad_inputs() -> None:
    with pytest.raises(ValueError, match="before it starts"):
        DateRange(d(10, 12), d(10, 8))
    with pytest.raises(ValueError, match="no opening hours"):
        compute(PERIOD, Grouping.HALL, CAL, staffing=STAFFING, halls=HALLS[:1])
    with pytest.raises(ValueError, match="iff completed"):
        case("x", "H1", "公安", "W1", "s1", t(10, 8, 9), None, 1, None, None)
    with pytest.raises(ValueError, match="hardware fault"):
        EvaluationFact("H1", "W1", "s1", 7, None, True, t(10, 8, 9))
    with pytest.raises(ValueError, match="aware"):
        StaffingFact("H1", "W1", "s1", dt.datetime(2026, 10, 8, 9), t(10, 8, 10))
    with pytest.raises(ValueError, match="overlap"):
        HallSetup(
            hall="H",
            opening=(
                OpeningPeriod(start=dt.time(9), end=dt.time(12)),
                OpeningPeriod(start=dt.time(11), end=dt.time(17)),
            ),
        )


def test_reasons_are_keyed_by_device_key() -> None:
    h1 = run(Grouping.HALL)[GroupKey(hall="H1")]
    assert list(h1.bad_reviews) == [K.BAD_ATTITUDE, K.TOO_SLOW, K.UNFAMILIAR, K.OTHER]
    assert [k.label for k in h1.bad_reviews] == ["服务态度不好", "办理时间太长", "业务不熟", "其他"]


def test_staffed_rate_counts_only_time_the_gateway_reported() -> None:
    """在岗率 over opening time ∩ the hall's reporting spans, by hand. H1 reported on 10-08
    09:00–10:30 and 14:00–20:00, all of 10-09, not at all on 10-10, 08:00–09:30 on 10-12;
    H2 never (missing from the mapping)."""
    reporting = {
        "H1": [
            (t(10, 8, 9), t(10, 8, 10, 30)),
            (t(10, 8, 14), t(10, 8, 20)),
            (t(10, 9, 0), t(10, 10, 0)),
            (t(10, 12, 8), t(10, 12, 9, 30)),
        ]
    }

    def run_reported(by: Grouping) -> dict[GroupKey, Indicators]:
        return compute(
            PERIOD,
            by,
            CAL,
            cases=CASES,
            sessions=SESSIONS,
            evaluations=EVALUATIONS,
            staffing=STAFFING,
            halls=HALLS,
            reporting=reporting,
        )

    halls = run_reported(Grouping.HALL)
    h1, h2 = halls[GroupKey(hall="H1")], halls[GroupKey(hall="H2")]
    # covered opening per window: 10-08 90 + 180, 10-09 420, 10-10 0, 10-12 30 = 720
    assert pair(h1.staffed_coverage) == (3 * 720, 3 * 4 * 420)
    # W1: 10-08 s1 inside the covered 270, 10-09 s1 ∪ s3 = 09–12 (180); W2's 调休 Saturday
    # and W3 nothing
    assert pair(h1.staffed_rate) == (270 + 180, 3 * 720)
    assert pair(h2.staffed_rate) == (0, 0) and h2.staffed_rate.value is None  # unknown, not 0 %
    assert pair(h2.staffed_coverage) == (0, 4 * 180)
    staff = run_reported(Grouping.STAFF)
    s1 = staff[GroupKey(hall="H1", staff="s1")]
    assert pair(s1.staffed_rate) == (270 + 120, 270 + 420)  # on duty 10-08 and 10-09
    assert pair(s1.staffed_coverage) == (270 + 420, 2 * 420)
    # s2's only day on duty (10-10) went unreported: no figure rather than a bad one
    assert staff[GroupKey(hall="H1", staff="s2")].staffed_rate.value is None
    # no reporting mapping at all: every opening minute counts, as before
    assert pair(run(Grouping.HALL)[GroupKey(hall="H1")].staffed_coverage) == (
        3 * 4 * 420,
        3 * 4 * 420,
    )
