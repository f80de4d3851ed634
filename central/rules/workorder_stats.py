"""差评 work-order figures: the monthly statistic as provinces publish it, and the two
indicators 回访率 and 整改按时率 (defined in INDICATORS.md). Pure: the store hands in one
``OrderFact`` per order; ``today`` is the business date the figures are taken on.

A stage is *decided* once it was finished, or once its due day has passed with the stage still
open (late, whatever happens next); a stage not yet due and still open is *pending* and counts
nowhere. A stage's month is the month of its due day.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from dataclasses import dataclass, field

from central.rules.followup import TIMED_STAGES, CallBackAnswer, Stage
from central.rules.indicators import DateRange, Ratio
from central.rules.scale import NationalLevel, Tag


@dataclass(frozen=True, slots=True)
class OrderFact:
    """What the figures need of one order (business dates, Asia/Shanghai)."""

    opened: dt.date
    level: NationalLevel
    tag: Tag | None
    due: dict[Stage, dt.date | None]  # each timed stage's due day, None until it started
    done: dict[Stage, dt.date | None]  # the day each timed stage ended
    closed: dt.date | None = None
    appealed: bool = False
    appeal_upheld: bool | None = None  # None: no decision yet (or no appeal)
    answer: CallBackAnswer | None = None

    @property
    def excluded(self) -> bool:
        return self.appeal_upheld is True


def stage_on_time(order: OrderFact, stage: Stage, today: dt.date) -> bool | None:
    """True finished by its due day, False late (finished after it, or still open past it),
    None pending or never started."""
    due, done = order.due.get(stage), order.done.get(stage)
    if due is None:
        return None
    if done is not None:
        return done <= due
    return False if today > due else None


def rectify_on_time_rate(orders: list[OrderFact], span: DateRange, today: dt.date) -> Ratio:
    """整改按时率: 整改 stages due in ``span`` finished by their due day / those decided."""
    verdicts = [
        stage_on_time(o, Stage.RECTIFY, today)
        for o in orders
        if (due := o.due.get(Stage.RECTIFY)) is not None and due in span
    ]
    decided = [v for v in verdicts if v is not None]
    return Ratio(sum(decided), len(decided))


def call_back_rate(orders: list[OrderFact], span: DateRange) -> Ratio:
    """回访率: orders opened in ``span`` whose citizen was reached at 回访 / orders opened in
    ``span`` that owe a call-back (all but those an upheld or pending appeal takes out)."""
    owed = [o for o in orders if o.opened in span and not o.excluded]
    owed = [o for o in owed if not (o.appealed and o.appeal_upheld is None)]
    reached = [o for o in owed if o.answer is not None and o.answer.reached]
    return Ratio(len(reached), len(owed))


@dataclass(frozen=True, slots=True)
class StageFigures:
    due: int  # stages due in the month
    on_time: int
    late: int
    pending: int

    @property
    def rate(self) -> Ratio:
        return Ratio(self.on_time, self.on_time + self.late)


@dataclass(frozen=True, slots=True)
class MonthlyStatistic:
    month: str  # YYYY-MM
    opened: int  # orders opened in the month (excluded ones included)
    closed: int  # orders closed in the month, whenever opened (excluded ones included)
    excluded: int  # of those opened, taken out by an upheld appeal
    by_level: dict[NationalLevel, int]  # opened and not excluded
    by_tag: dict[Tag, int]  # opened and not excluded
    appeals_filed: int  # of those opened
    appeals_upheld: int
    appeals_rejected: int
    stages: dict[Stage, StageFigures] = field(default_factory=dict)  # stages due in the month
    call_back: Ratio = field(default_factory=lambda: Ratio(0, 0))  # 回访率 of those opened
    answers: dict[CallBackAnswer, int] = field(default_factory=dict)  # of those opened


def month_span(month: str) -> DateRange:
    first = dt.date.fromisoformat(f"{month}-01")
    after = (first.replace(day=28) + dt.timedelta(days=4)).replace(day=1)
    return DateRange(first, after - dt.timedelta(days=1))


def monthly(orders: list[OrderFact], month: str, today: dt.date) -> MonthlyStatistic:
    span = month_span(month)
    opened = [o for o in orders if o.opened in span]
    kept = [o for o in opened if not o.excluded]
    stages = {}
    for stage in TIMED_STAGES:
        due_here = [o for o in orders if (d := o.due.get(stage)) is not None and d in span]
        verdicts = Counter(stage_on_time(o, stage, today) for o in due_here)
        stages[stage] = StageFigures(
            due=len(due_here), on_time=verdicts[True], late=verdicts[False], pending=verdicts[None]
        )
    return MonthlyStatistic(
        month=month,
        opened=len(opened),
        closed=sum(1 for o in orders if o.closed is not None and o.closed in span),
        excluded=len(opened) - len(kept),
        by_level={lv: n for lv in NationalLevel if (n := sum(o.level is lv for o in kept))},
        by_tag={tag: n for tag in Tag if (n := sum(o.tag is tag for o in kept))},
        appeals_filed=sum(o.appealed for o in opened),
        appeals_upheld=sum(o.appeal_upheld is True for o in opened),
        appeals_rejected=sum(o.appeal_upheld is False for o in opened),
        stages=stages,
        call_back=call_back_rate(orders, span),
        answers={a: n for a in CallBackAnswer if (n := sum(o.answer is a for o in opened))},
    )


__all__ = [
    "MonthlyStatistic",
    "OrderFact",
    "StageFigures",
    "call_back_rate",
    "month_span",
    "monthly",
    "rectify_on_time_rate",
    "stage_on_time",
]
