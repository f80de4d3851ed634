# Long module: every indicator's definition, as INDICATORS.md gives it, over one accumulator;
# splitting would part definitions that share it.
"""Hall indicators (效能指标) over typed facts, for any date range and grouping.

Pure: central loads the facts from its store and passes them in; every indicator comes back
as a numerator and a denominator (a dashboard shows "37/40"), with ``value`` None when the
denominator is 0. The precise definitions are in INDICATORS.md beside this file; the code
follows them line by line.
"""

from __future__ import annotations

import datetime as dt
import itertools
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field, model_validator

from central.rules.scale import BAD_REVIEW_KEYS, SATISFIED_KEYS, DeviceKey, device_key
from central.rules.workdays import BUSINESS_TZ, WorkCalendar, business_date

Span = tuple[dt.datetime, dt.datetime]  # [start, end)

# ---------------------------------------------------------------------------------- facts


class CaseStatus(StrEnum):
    RUNNING = "running"  # 在办
    SUSPENDED = "suspended"  # 暂停计时 (补正, 特别程序)
    COMPLETED = "completed"  # 办结 (准予 or 不予)
    WITHDRAWN = "withdrawn"  # 撤件 / 终止: left out of every case indicator


class SessionOutcome(StrEnum):
    FINISHED = "finished"
    NO_SHOW = "no_show"  # 过号: called, never came
    TRANSFERRED = "transferred"  # 转窗


def _aware(name: str, value: dt.datetime | None) -> None:
    if value is not None and (value.tzinfo is None or value.utcoffset() is None):
        raise ValueError(f"{name} must be an aware datetime, got {value!r}")


@dataclass(frozen=True, slots=True)
class CaseFact:
    """One case (办件) as central knows it now."""

    case_no: str
    hall: str
    department: str
    window: str | None  # None for a case accepted online (网办)
    staff: str | None  # the accepting staff member
    item: str  # 事项编码
    accepted_at: dt.datetime
    completed_at: dt.datetime | None
    legal_days: int
    promised_days: int | None
    deadline: dt.date | None  # None while suspended (timelimit.deadline)
    status: CaseStatus
    suspended_days: int = 0  # working days not counted (timelimit.suspended_workdays)

    def __post_init__(self) -> None:
        _aware("accepted_at", self.accepted_at)
        _aware("completed_at", self.completed_at)
        if (self.status is CaseStatus.COMPLETED) != (self.completed_at is not None):
            raise ValueError(f"case {self.case_no}: completed_at must be set iff completed")
        if self.legal_days < 0 or (self.promised_days or 0) < 0 or self.suspended_days < 0:
            raise ValueError(f"case {self.case_no}: negative working days")


@dataclass(frozen=True, slots=True)
class SessionFact:
    """One service of one queue ticket at one window (a transfer gives a second session)."""

    hall: str
    window: str
    staff: str | None
    ticket: str
    issued_at: dt.datetime
    called_at: dt.datetime | None
    started_at: dt.datetime | None
    finished_at: dt.datetime | None
    outcome: SessionOutcome
    case_nos: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for name in ("issued_at", "called_at", "started_at", "finished_at"):
            _aware(name, getattr(self, name))


@dataclass(frozen=True, slots=True)
class EvaluationFact:
    hall: str
    window: str
    staff: str | None
    key: int  # evaluator key 1–6
    case_no: str | None
    counted: bool  # False: discarded by correlation (suspicious, duplicate…)
    evaluated_at: dt.datetime
    excluded: bool = False  # 申诉核减: a supervisor upheld an appeal (误评 / 恶意差评) against it

    def __post_init__(self) -> None:
        device_key(self.key)
        _aware("evaluated_at", self.evaluated_at)


@dataclass(frozen=True, slots=True)
class StaffingFact:
    """A span during which a staff member was at a window (在岗)."""

    hall: str
    window: str
    staff: str
    start: dt.datetime
    end: dt.datetime

    def __post_init__(self) -> None:
        _aware("start", self.start)
        _aware("end", self.end)
        if self.end < self.start:
            raise ValueError(f"staffing span of {self.staff} ends before it starts")


# --------------------------------------------------------------------------------- config


class OpeningPeriod(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    start: dt.time
    end: dt.time

    @model_validator(mode="after")
    def _ordered(self) -> OpeningPeriod:
        if self.end <= self.start:
            raise ValueError(f"opening period ends ({self.end}) before it starts ({self.start})")
        return self

    @property
    def minutes(self) -> float:
        return (
            dt.datetime.combine(dt.date.min, self.end)
            - dt.datetime.combine(dt.date.min, self.start)
        ).total_seconds() / 60


class HallSetup(BaseModel):
    """A hall's opening hours (on its calendar's working days) and window roster."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    hall: str
    opening: tuple[OpeningPeriod, ...] = Field(min_length=1)
    windows: dict[str, str] = Field(default_factory=dict, description="window → department")
    staff: dict[str, str] = Field(default_factory=dict, description="staff number → name")

    @model_validator(mode="after")
    def _no_overlap(self) -> HallSetup:
        periods = sorted(self.opening, key=lambda p: p.start)
        for a, b in itertools.pairwise(periods):
            if b.start < a.end:
                raise ValueError(f"opening periods overlap: {a.start}–{a.end}, {b.start}–{b.end}")
        return self


@dataclass(frozen=True, slots=True)
class DateRange:
    """Business dates [first, last], both inclusive."""

    first: dt.date
    last: dt.date

    def __post_init__(self) -> None:
        if self.last < self.first:
            raise ValueError(f"date range ends ({self.last}) before it starts ({self.first})")

    def __contains__(self, day: object) -> bool:
        return isinstance(day, dt.date) and self.first <= day <= self.last

    def days(self) -> list[dt.date]:
        return [self.first + dt.timedelta(days=i) for i in range((self.last - self.first).days + 1)]


class Grouping(StrEnum):
    ALL = "all"
    HALL = "hall"
    DEPARTMENT = "department"
    WINDOW = "window"
    STAFF = "staff"


@dataclass(frozen=True, slots=True)
class GroupKey:
    """Which group a result is for; the fields the grouping does not use are None."""

    hall: str | None = None
    department: str | None = None
    window: str | None = None
    staff: str | None = None

    def sort_key(self) -> tuple[str, str, str, str]:
        return (self.hall or "", self.department or "", self.window or "", self.staff or "")


# -------------------------------------------------------------------------------- results


@dataclass(frozen=True, slots=True)
class Ratio:
    numerator: int | float
    denominator: int | float

    @property
    def value(self) -> float | None:
        return None if self.denominator == 0 else self.numerator / self.denominator

    def __str__(self) -> str:
        return f"{self.numerator:g}/{self.denominator:g}"


@dataclass(frozen=True, slots=True)
class Indicators:
    group: GroupKey
    on_time_rate: Ratio  # 按时办结率: on-time completions / completions
    avg_handling_days: Ratio  # 平均办理时长: working days used / completions
    overdue_completed: int  # completed late in the range
    overdue_open: int  # open and ≥ 1 working day past the deadline at the range's end
    promise_speedup: Ratio  # 承诺提速率: Σ(legal − promised) / Σ legal
    handling_speedup: Ratio  # 办理提速率: Σ(legal − used) / Σ legal
    early_completion_rate: Ratio  # 提前办结率: completed before the deadline day / completions
    same_day_rate: Ratio  # 现场办结率: completed on the acceptance day / accepted
    satisfaction_rate: Ratio  # 群众满意率: keys 1–2 / counted evaluations
    evaluation_rate: Ratio  # 评价率: evaluated cases / accepted cases
    bad_reviews: Mapping[DeviceKey, int]  # 差评 by reason (keys 3–6)
    bad_review_rate: Ratio  # 差评率: keys 3–6 / counted evaluations
    avg_wait_minutes: Ratio  # 平均等候时长: Σ(called − issued) / served tickets
    no_show_rate: Ratio  # 过号率: no-shows / called tickets
    staffed_rate: Ratio  # 在岗率: staffed minutes / covered opening minutes
    # what 在岗率 covers: opening minutes during which the hall's gateway reported / all
    # opening minutes (the rest is unknown, neither staffed nor absent)
    staffed_coverage: Ratio = Ratio(0, 0)
    # 申诉核减: counted evaluations an upheld appeal took out of 满意率 and the 差评 counts
    appeal_excluded: int = 0

    @property
    def overdue_count(self) -> int:
        """超时件数."""
        return self.overdue_completed + self.overdue_open


@dataclass
class _Acc:
    on_time: list[float] = field(default_factory=lambda: [0, 0])
    handling: list[float] = field(default_factory=lambda: [0, 0])
    overdue_completed: int = 0
    overdue_open: int = 0
    promise: list[float] = field(default_factory=lambda: [0, 0])
    speedup: list[float] = field(default_factory=lambda: [0, 0])
    early: list[float] = field(default_factory=lambda: [0, 0])
    same_day: list[float] = field(default_factory=lambda: [0, 0])
    satisfied: list[float] = field(default_factory=lambda: [0, 0])
    evaluated: list[float] = field(default_factory=lambda: [0, 0])
    bad: Counter[DeviceKey] = field(default_factory=Counter)
    wait: list[float] = field(default_factory=lambda: [0, 0])
    no_show: list[float] = field(default_factory=lambda: [0, 0])
    staffed: list[float] = field(default_factory=lambda: [0, 0])
    covered: list[float] = field(default_factory=lambda: [0, 0])
    appeal_excluded: int = 0

    def result(self, group: GroupKey) -> Indicators:
        def r(pair: list[float]) -> Ratio:
            return Ratio(pair[0], pair[1])

        return Indicators(
            group=group,
            on_time_rate=r(self.on_time),
            avg_handling_days=r(self.handling),
            overdue_completed=self.overdue_completed,
            overdue_open=self.overdue_open,
            promise_speedup=r(self.promise),
            handling_speedup=r(self.speedup),
            early_completion_rate=r(self.early),
            same_day_rate=r(self.same_day),
            satisfaction_rate=r(self.satisfied),
            evaluation_rate=r(self.evaluated),
            bad_reviews={k: self.bad[k] for k in sorted(BAD_REVIEW_KEYS)},
            bad_review_rate=Ratio(sum(self.bad.values()), self.satisfied[1]),
            avg_wait_minutes=r(self.wait),
            no_show_rate=r(self.no_show),
            staffed_rate=r(self.staffed),
            staffed_coverage=r(self.covered),
            appeal_excluded=self.appeal_excluded,
        )


def _add(pair: list[float], numerator: float, denominator: float = 1) -> None:
    pair[0] += numerator
    pair[1] += denominator


# ------------------------------------------------------------------------------ computing


def _key(
    by: Grouping, hall: str, department: str | None, window: str | None, staff: str | None
) -> GroupKey | None:
    if by is Grouping.ALL:
        return GroupKey()
    if by is Grouping.HALL:
        return GroupKey(hall=hall)
    if by is Grouping.DEPARTMENT:
        return None if department is None else GroupKey(hall=hall, department=department)
    if by is Grouping.WINDOW:
        return None if window is None else GroupKey(hall=hall, window=window)
    return None if staff is None else GroupKey(hall=hall, staff=staff)


group_key = _key  # the group a fact with these fields belongs to (None: in no group of ``by``)


def _minutes(delta: dt.timedelta) -> float:
    return delta.total_seconds() / 60


def _opening_spans(setup: HallSetup, day: dt.date) -> list[Span]:
    return [
        (
            dt.datetime.combine(day, p.start, tzinfo=BUSINESS_TZ),
            dt.datetime.combine(day, p.end, tzinfo=BUSINESS_TZ),
        )
        for p in setup.opening
    ]


def _merge(spans: Iterable[tuple[dt.datetime, dt.datetime]]) -> list[list[dt.datetime]]:
    merged: list[list[dt.datetime]] = []
    for start, end in sorted(spans):
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    return merged


def _intersect(spans: list[Span], merged: list[list[dt.datetime]]) -> list[Span]:
    out: list[Span] = []
    for a, b in spans:
        for start, end in merged:
            lo, hi = max(a, start), min(b, end)
            if hi > lo:
                out.append((lo, hi))
    return out


def _overlap_minutes(
    merged: list[list[dt.datetime]], opening: list[tuple[dt.datetime, dt.datetime]]
) -> float:
    total = 0.0
    for o_start, o_end in opening:
        for start, end in merged:
            lo, hi = max(start, o_start), min(end, o_end)
            if hi > lo:
                total += _minutes(hi - lo)
    return total


def compute(
    period: DateRange,
    by: Grouping,
    calendar: WorkCalendar,
    *,
    cases: Iterable[CaseFact] = (),
    sessions: Iterable[SessionFact] = (),
    evaluations: Iterable[EvaluationFact] = (),
    staffing: Iterable[StaffingFact] = (),
    halls: Sequence[HallSetup] = (),
    reporting: Mapping[str, Sequence[Span]] | None = None,
) -> dict[GroupKey, Indicators]:
    """Every indicator of INDICATORS.md for ``period``, one result per group of ``by``.
    ``reporting``: per hall, the spans its gateway reported (None: assume always; a hall
    missing from it never reported)."""
    setups = {h.hall: h for h in halls}
    accs: defaultdict[GroupKey, _Acc] = defaultdict(_Acc)

    def department_of(hall: str, window: str) -> str | None:
        setup = setups.get(hall)
        return None if setup is None else setup.windows.get(window)

    def acc(hall: str, dep: str | None, window: str | None, staff: str | None) -> _Acc | None:
        key = _key(by, hall, dep, window, staff)
        return None if key is None else accs[key]

    # Evaluations: in-range ones for satisfaction; all up to the range's end for 评价率.
    evaluated_cases: set[str] = set()
    for ev in evaluations:
        if not ev.counted:
            continue
        day = business_date(ev.evaluated_at)
        if ev.case_no is not None and day <= period.last:
            evaluated_cases.add(ev.case_no)
        if day not in period:
            continue
        a = acc(ev.hall, department_of(ev.hall, ev.window), ev.window, ev.staff)
        if a is None:
            continue
        if ev.excluded:
            a.appeal_excluded += 1
            continue
        key = device_key(ev.key)
        _add(a.satisfied, 1 if key in SATISFIED_KEYS else 0)
        if key in BAD_REVIEW_KEYS:
            a.bad[key] += 1

    for case in cases:
        if case.status is CaseStatus.WITHDRAWN:
            continue
        a = acc(case.hall, case.department, case.window, case.staff)
        if a is None:
            continue
        accepted = business_date(case.accepted_at)
        completed = None if case.completed_at is None else business_date(case.completed_at)
        if accepted in period:
            _add(a.same_day, 1 if completed == accepted else 0)
            _add(a.evaluated, 1 if case.case_no in evaluated_cases else 0)
            if case.legal_days > 0:
                promised = case.legal_days if case.promised_days is None else case.promised_days
                _add(a.promise, case.legal_days - promised, case.legal_days)
        if completed is not None and completed in period:
            used = calendar.workdays_between(accepted, completed) - case.suspended_days
            _add(a.handling, used)
            if case.legal_days > 0:
                _add(a.speedup, case.legal_days - used, case.legal_days)
            if case.deadline is not None:
                _add(a.on_time, 1 if completed <= case.deadline else 0)
                _add(a.early, 1 if completed < case.deadline else 0)
                if completed > case.deadline:
                    a.overdue_completed += 1
        open_at_end = accepted <= period.last and (completed is None or completed > period.last)
        if (
            open_at_end
            and case.deadline is not None
            and calendar.workdays_between(case.deadline, period.last) >= 1
        ):
            a.overdue_open += 1

    for s in sessions:
        if business_date(s.issued_at) not in period or s.called_at is None:
            continue
        a = acc(s.hall, department_of(s.hall, s.window), s.window, s.staff)
        if a is None:
            continue
        _add(a.no_show, 1 if s.outcome is SessionOutcome.NO_SHOW else 0)
        if s.outcome is not SessionOutcome.NO_SHOW:
            _add(a.wait, _minutes(s.called_at - s.issued_at))

    _staffed(period, by, calendar, list(staffing), setups, accs, reporting)
    return {k: accs[k].result(k) for k in sorted(accs, key=GroupKey.sort_key)}


def _staffed(
    period: DateRange,
    by: Grouping,
    calendar: WorkCalendar,
    staffing: list[StaffingFact],
    setups: Mapping[str, HallSetup],
    accs: defaultdict[GroupKey, _Acc],
    reporting: Mapping[str, Sequence[Span]] | None,
) -> None:
    """在岗率: see INDICATORS.md. Per window (hall level and up) or per staff member; only
    opening time during which the hall's gateway reported counts, on either side."""
    for s in staffing:
        if s.hall not in setups:
            raise ValueError(f"no opening hours configured for hall {s.hall!r}")
    workdays = calendar.workdays_in(period.first, period.last)
    covered_cache: dict[tuple[str, dt.date], tuple[list[Span], float, float]] = {}

    def opening_of(hall: str, day: dt.date) -> tuple[list[Span], float, float]:
        """(the day's opening spans the gateway reported in, their minutes, all opening)."""
        key = (hall, day)
        if key not in covered_cache:
            opening = _opening_spans(setups[hall], day)
            full = sum(p.minutes for p in setups[hall].opening)
            if reporting is not None:
                opening = _intersect(opening, _merge(reporting.get(hall, ())))
            minutes = sum(_minutes(b - a) for a, b in opening)
            covered_cache[key] = (opening, minutes, full)
        return covered_cache[key]

    def key_of(hall: str, window: str | None, staff: str | None) -> GroupKey | None:
        dep = None if window is None else setups[hall].windows.get(window)
        return _key(by, hall, dep, window, staff)

    if by is Grouping.STAFF:
        by_person: defaultdict[tuple[str, str], list[StaffingFact]] = defaultdict(list)
        for s in staffing:
            by_person[(s.hall, s.staff)].append(s)
        for (hall, staff), spans in by_person.items():
            merged = _merge((s.start, s.end) for s in spans)
            key = key_of(hall, None, staff)
            assert key is not None
            for day in workdays:
                opening, covered, full = opening_of(hall, day)
                minutes = _overlap_minutes(merged, opening)
                if minutes > 0:  # a day on duty
                    _add(accs[key].staffed, minutes, covered)
                    _add(accs[key].covered, covered, full)
        return

    windows: dict[tuple[str, str], list[StaffingFact]] = {
        (setup.hall, w): [] for setup in setups.values() for w in setup.windows
    }
    for s in staffing:
        windows.setdefault((s.hall, s.window), []).append(s)
    for (hall, window), spans in windows.items():
        key = key_of(hall, window, None)
        if key is None:
            continue
        merged = _merge((s.start, s.end) for s in spans)
        for day in workdays:
            opening, covered, full = opening_of(hall, day)
            _add(accs[key].staffed, _overlap_minutes(merged, opening), covered)
            _add(accs[key].covered, covered, full)


__all__ = [
    "CaseFact",
    "CaseStatus",
    "DateRange",
    "EvaluationFact",
    "GroupKey",
    "Grouping",
    "HallSetup",
    "Indicators",
    "OpeningPeriod",
    "Ratio",
    "SessionFact",
    "SessionOutcome",
    "Span",
    "StaffingFact",
    "compute",
    "group_key",
]
