"""差评 work-order figures against a hand computation: seven orders around October 2026, the
figures taken on Tue 2026-11-10.

| order | opened | level, tag | 核实 due → done | 整改 | 回访, answer | appeal | closed |
|---|---|---|---|---|---|---|---|
| A | 10-08 | 2 服务态度 | 10-09 → 10-09 | 10-16 → 10-19 (late) | 11-09 → 10-20 满意 | — | 10-21 |
| B | 10-12 | 1 办理时限 | 10-13 → 10-12 | — | — | upheld | 10-14 |
| C | 10-20 | 2 业务水平 | 10-21 → 10-23 (late) | 10-30 → open (late) | — | rejected | — |
| D | 10-28 | 2 服务态度 | 10-29 → open (late) | — | — | — | — |
| E | 10-30 | 2 其他 | 11-02 → 11-02 | — | 11-23 → 11-05 联系不上 | — | — |
| F | 09-28 | 2 服务态度 | 09-29 → 09-29 | 10-09 → 10-09 | 10-30 → open (late) | — | — |
| G | 10-31 | 2 办理时限 | 11-02 → open | — | — | — | — |

October: opened A B C D E G = 6; closed A B = 2; excluded B = 1; by level (not excluded)
不满意 5; by tag 服务态度 A D = 2, 办理时限 G, 业务水平 C, 其他 E = 1 each; appeals filed B C = 2,
upheld 1, rejected 1. Stages due in October: 核实 A B on time, C D late (2/4); 整改 F on time,
A C late (1/3); 回访 F late (0/1). 回访率: owed A C D E G (B excluded) = 5, reached A = 1.
"""

from __future__ import annotations

import datetime as dt

from central.rules.followup import CallBackAnswer, Stage
from central.rules.indicators import DateRange
from central.rules.scale import NationalLevel, Tag
from central.rules.workorder_stats import (
    OrderFact,
    StageFigures,
    call_back_rate,
    month_span,
    monthly,
    rectify_on_time_rate,
    stage_on_time,
)

V, R, C = Stage.VERIFY, Stage.RECTIFY, Stage.CALL_BACK
TODAY = dt.date(2026, 11, 10)


def d(m: int, day: int) -> dt.date:
    return dt.date(2026, m, day)


def order(
    opened: dt.date,
    tag: Tag,
    due: tuple[dt.date | None, dt.date | None, dt.date | None],
    done: tuple[dt.date | None, dt.date | None, dt.date | None],
    **more: object,
) -> OrderFact:
    return OrderFact(
        opened=opened,
        level=more.pop("level", NationalLevel.DISSATISFIED),  # type: ignore[arg-type]
        tag=tag,
        due=dict(zip((V, R, C), due, strict=True)),
        done=dict(zip((V, R, C), done, strict=True)),
        **more,  # type: ignore[arg-type]
    )


A = order(d(10, 8), Tag.ATTITUDE, (d(10, 9), d(10, 16), d(11, 9)),
          (d(10, 9), d(10, 19), d(10, 20)), closed=d(10, 21),
          answer=CallBackAnswer.SATISFIED)  # fmt: skip
B = order(d(10, 12), Tag.TIME_LIMIT, (d(10, 13), None, None), (d(10, 12), None, None),
          level=NationalLevel.VERY_DISSATISFIED, appealed=True, appeal_upheld=True,
          closed=d(10, 14))  # fmt: skip
C_ = order(d(10, 20), Tag.SKILL, (d(10, 21), d(10, 30), None), (d(10, 23), None, None),
           appealed=True, appeal_upheld=False)  # fmt: skip
D = order(d(10, 28), Tag.ATTITUDE, (d(10, 29), None, None), (None, None, None))
E = order(d(10, 30), Tag.OTHER, (d(11, 2), None, d(11, 23)), (d(11, 2), None, d(11, 5)),
          answer=CallBackAnswer.UNREACHABLE)  # fmt: skip
F = order(d(9, 28), Tag.ATTITUDE, (d(9, 29), d(10, 9), d(10, 30)), (d(9, 29), d(10, 9), None))
G = order(d(10, 31), Tag.TIME_LIMIT, (d(11, 2), None, None), (None, None, None))
ORDERS = [A, B, C_, D, E, F, G]


def test_the_october_statistic_matches_the_hand_computation() -> None:
    m = monthly(ORDERS, "2026-10", TODAY)
    assert (m.opened, m.closed, m.excluded) == (6, 2, 1)
    assert m.by_level == {NationalLevel.DISSATISFIED: 5}
    assert m.by_tag == {Tag.ATTITUDE: 2, Tag.TIME_LIMIT: 1, Tag.SKILL: 1, Tag.OTHER: 1}
    assert (m.appeals_filed, m.appeals_upheld, m.appeals_rejected) == (2, 1, 1)
    assert m.stages == {
        V: StageFigures(due=4, on_time=2, late=2, pending=0),
        R: StageFigures(due=3, on_time=1, late=2, pending=0),
        C: StageFigures(due=1, on_time=0, late=1, pending=0),
    }
    assert m.stages[V].rate.value == 0.5
    assert (m.call_back.numerator, m.call_back.denominator) == (1, 5)
    assert m.answers == {CallBackAnswer.SATISFIED: 1, CallBackAnswer.UNREACHABLE: 1}


def test_stages_not_yet_due_are_pending_and_count_nowhere() -> None:
    early = dt.date(2026, 10, 25)
    assert stage_on_time(C_, R, early) is None  # due 10-30, still open on 10-25
    assert stage_on_time(C_, R, d(10, 30)) is None  # the due day itself is still in time
    assert stage_on_time(C_, R, d(10, 31)) is False
    assert stage_on_time(B, R, TODAY) is None  # never started
    october = month_span("2026-10")
    assert (october.first, october.last) == (d(10, 1), d(10, 31))
    assert month_span("2026-12").last == d(12, 31)
    r = rectify_on_time_rate(ORDERS, october, early)
    assert (r.numerator, r.denominator) == (1, 2)  # F on time, A late, C pending
    r = rectify_on_time_rate(ORDERS, october, TODAY)
    assert (r.numerator, r.denominator) == (1, 3)


def test_a_pending_appeal_owes_no_call_back_yet() -> None:
    pending = order(d(10, 5), Tag.OTHER, (d(10, 8), None, None), (d(10, 8), None, None),
                    appealed=True)  # fmt: skip
    r = call_back_rate([A, pending], DateRange(d(10, 1), d(10, 31)))
    assert (r.numerator, r.denominator) == (1, 1)
