"""The working-day calendar (工作日历) that every time limit runs on.

Statutory holidays and 调休 working days come from ``chinese-calendar`` (it knows the State
Council's schedules for 2004–2026). Next year's schedule is published each November, before the
library ships it, so a site loads it from a YAML/JSON override file. Override entries win over
the library date by date, which also lets a site add a regional statutory holiday
(e.g. 广西「三月三」) to a year the library knows.

A date in a year that neither knows is an error, never a silent Mon–Fri guess: guessing would
put a National Day week inside a time limit without anybody noticing. ``assume_weekends=True``
is the explicit, logged way to accept that guess.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import chinese_calendar  # type: ignore[import-untyped,unused-ignore]
import yaml  # type: ignore[import-untyped,unused-ignore]
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

log = logging.getLogger(__name__)

# China has kept UTC+8 without daylight saving since 1991; a fixed offset needs no tzdata on
# the gateway or central host and gives the same business date as Asia/Shanghai.
BUSINESS_TZ = dt.timezone(dt.timedelta(hours=8), "Asia/Shanghai")

# A holiday block longer than this is almost certainly a typo (wrong month or year).
MAX_SPAN_DAYS = 31


def business_date(moment: dt.datetime) -> dt.date:
    """The Asia/Shanghai calendar date of an aware instant."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"naive datetime {moment.isoformat()} has no time zone")
    return moment.astimezone(BUSINESS_TZ).date()


def day_start(day: dt.date) -> dt.datetime:
    """00:00 of a business date, as an aware instant."""
    return dt.datetime.combine(day, dt.time(0), tzinfo=BUSINESS_TZ)


class CalendarError(ValueError):
    """Base class of the calendar's own errors."""


class UnknownYearError(CalendarError):
    """No holiday schedule is known for the year of the date asked about."""

    def __init__(self, day: dt.date, detail: str) -> None:
        self.day = day
        self.year = day.year
        super().__init__(
            f"{day.year} 年节假日安排未知（{detail}）：请在站点配置中加载 {day.year} 年的"
            f"节假日与调休安排，或明确启用 assume_weekends。"
            f" / No holiday schedule for {day.year} (asked about {day.isoformat()}; {detail}):"
            f" load the year's holidays and 调休 working days from the site's calendar override"
            f" file, or enable assume_weekends explicitly."
        )


class CalendarConfigError(CalendarError):
    """An override file that cannot be read or does not validate."""


class DaySpan(BaseModel):
    """One named holiday block or 调休 working day: either ``date`` or ``start``…``end``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, max_length=64, description="e.g. 春节, 国庆节调休")
    date: dt.date | None = None
    start: dt.date | None = None
    end: dt.date | None = Field(default=None, description="inclusive")

    @model_validator(mode="after")
    def _one_form(self) -> DaySpan:
        if self.date is not None:
            if self.start is not None or self.end is not None:
                raise ValueError("give either date or start/end, not both")
        elif self.start is None or self.end is None:
            raise ValueError("give date, or both start and end")
        elif self.end < self.start:
            raise ValueError(f"end {self.end} is before start {self.start}")
        elif (self.end - self.start).days >= MAX_SPAN_DAYS:
            raise ValueError(f"span of {(self.end - self.start).days + 1} days is implausible")
        return self

    def days(self) -> list[dt.date]:
        if self.date is not None:
            return [self.date]
        assert self.start is not None and self.end is not None
        return [self.start + dt.timedelta(days=i) for i in range((self.end - self.start).days + 1)]


class CalendarOverrides(BaseModel):
    """A site's calendar file: the years it defines completely, plus dated exceptions."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    years: list[int] = Field(
        default_factory=list,
        description="years whose whole schedule this file gives (Mon–Fri work, Sat/Sun rest, "
        "except the entries below), used where chinese-calendar does not know the year; "
        "where it does, the library is the base and the entries override it date by date",
    )
    holidays: list[DaySpan] = Field(default_factory=list, description="法定节假日 (rest days)")
    workdays: list[DaySpan] = Field(default_factory=list, description="调休 working days")
    source: str = Field(default="", description="where the schedule comes from, e.g. 国办发明电")

    @model_validator(mode="after")
    def _consistent(self) -> CalendarOverrides:
        seen: dict[dt.date, str] = {}
        for kind, spans in (("holiday", self.holidays), ("workday", self.workdays)):
            for span in spans:
                for day in span.days():
                    if day in seen:
                        raise ValueError(f"{day} is listed twice ({seen[day]} and {kind})")
                    seen[day] = kind
                    if day.year not in self.years and not _library_knows(day.year):
                        raise ValueError(
                            f"{day} ({span.name}) is in {day.year}, which chinese-calendar "
                            f"does not know and 'years' does not declare"
                        )
        return self

    def table(self) -> dict[dt.date, tuple[bool, str]]:
        """date → (is working day, name)."""
        out: dict[dt.date, tuple[bool, str]] = {}
        for span in self.holidays:
            for day in span.days():
                out[day] = (False, span.name)
        for span in self.workdays:
            for day in span.days():
                out[day] = (True, span.name)
        return out


Source = Literal["override", "chinese-calendar", "assumed"]


@dataclass(frozen=True, slots=True)
class DayInfo:
    day: dt.date
    workday: bool
    name: str | None  # holiday or 调休 name, None for an ordinary weekday/weekend
    source: Source


def _library_knows(year: int) -> bool:
    try:
        chinese_calendar.is_workday(dt.date(year, 6, 1))
    except NotImplementedError:
        return False
    return True


class WorkCalendar:
    """Working days from chinese-calendar plus a site's overrides (pure; memoised per date)."""

    def __init__(
        self, overrides: CalendarOverrides | None = None, *, assume_weekends: bool = False
    ) -> None:
        self.overrides = overrides or CalendarOverrides()
        self.assume_weekends = assume_weekends
        self._table = self.overrides.table()
        self._years = frozenset(self.overrides.years)
        self._cache: dict[dt.date, DayInfo] = {}
        self._assumed: set[int] = set()

    @property
    def assumed_years(self) -> frozenset[int]:
        """Years for which the Mon–Fri fallback has actually been used."""
        return frozenset(self._assumed)

    def day_info(self, day: dt.date) -> DayInfo:
        if isinstance(day, dt.datetime):
            # A datetime's date depends on its zone: make the caller say which business date.
            raise TypeError("pass a date (use business_date() for an instant), not a datetime")
        info = self._cache.get(day)
        if info is None:
            info = self._lookup(day)
            self._cache[day] = info
        return info

    def _lookup(self, day: dt.date) -> DayInfo:
        entry = self._table.get(day)
        if entry is not None:
            return DayInfo(day, entry[0], entry[1], "override")
        try:
            holiday, name = chinese_calendar.get_holiday_detail(day)
        except NotImplementedError as exc:
            # The file's own years only fill in where the library has nothing, so that a
            # library upgrade that learns the year cannot be undone by an old site file.
            if day.year in self._years:
                return DayInfo(day, day.weekday() < 5, None, "override")
            if not self.assume_weekends:
                raise UnknownYearError(day, str(exc)) from None
            if day.year not in self._assumed:
                self._assumed.add(day.year)
                log.warning(
                    "calendar: no holiday schedule for %d, assuming Mon–Fri working days "
                    "(assume_weekends); time limits in %d may be wrong",
                    day.year,
                    day.year,
                )
            return DayInfo(day, day.weekday() < 5, None, "assumed")
        return DayInfo(day, not holiday, name, "chinese-calendar")

    def is_workday(self, day: dt.date) -> bool:
        return self.day_info(day).workday

    def add_workdays(self, start: dt.date, n: int) -> dt.date:
        """The n-th working day after ``start`` (``start`` itself never counts, as the day of
        acceptance does not, 行政许可法 art. 82); n = 0 gives ``start``; n < 0 counts back."""
        day, step, left = start, (1 if n >= 0 else -1), abs(n)
        while left:
            day += dt.timedelta(days=step)
            if self.is_workday(day):
                left -= 1
        return day

    def workdays_between(self, a: dt.date, b: dt.date) -> int:
        """Working-day steps from ``a`` to ``b``: the working days in (a, b] when b ≥ a, minus
        the working days in [b, a) when b < a, so that
        ``workdays_between(a, add_workdays(a, n)) == n`` for every n."""
        if b < a:
            return -sum(1 for i in range((a - b).days) if self.is_workday(b + dt.timedelta(days=i)))
        return sum(
            1 for i in range(1, (b - a).days + 1) if self.is_workday(a + dt.timedelta(days=i))
        )

    def next_workday(self, day: dt.date) -> dt.date:
        """The first working day strictly after ``day``."""
        return self.add_workdays(day, 1)

    def workday_on_or_after(self, day: dt.date) -> dt.date:
        return day if self.is_workday(day) else self.next_workday(day)

    def workdays_in(self, first: dt.date, last: dt.date) -> list[dt.date]:
        """Working days of [first, last], both inclusive."""
        return [
            first + dt.timedelta(days=i)
            for i in range((last - first).days + 1)
            if self.is_workday(first + dt.timedelta(days=i))
        ]


class _Loader(yaml.SafeLoader):  # type: ignore[misc,unused-ignore]
    """SafeLoader that leaves dates as text, so pydantic validates them (with a line number)
    instead of PyYAML raising a bare ValueError on 2027-13-01."""


_Loader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def _line_of(text: str, loc: Sequence[int | str]) -> int | None:
    """1-based line of the YAML node at a pydantic error location, when it can be found."""
    try:
        node: Any = yaml.compose(text, Loader=_Loader)
    except yaml.YAMLError:
        return None
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            node = next((v for k, v in node.value if k.value == part), None)
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int):
            node = node.value[part] if part < len(node.value) else None
        else:
            break
        if node is None:
            return None
    return int(node.start_mark.line) + 1 if node is not None else None


def parse_overrides(text: str, *, origin: str = "<calendar>") -> CalendarOverrides:
    """Validate the text of an override file (YAML, or JSON, which YAML reads too)."""
    try:
        data: Any = (
            json.loads(text) if origin.endswith(".json") else yaml.load(text, Loader=_Loader)
        )
    except (yaml.YAMLError, json.JSONDecodeError) as exc:
        raise CalendarConfigError(f"{origin}: 无法解析 / cannot parse: {exc}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise CalendarConfigError(f"{origin}: 顶层应为映射 / top level must be a mapping")
    try:
        return CalendarOverrides.model_validate(data)
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            loc = err["loc"]
            where = ".".join(str(p) for p in loc) or "(top)"
            line = _line_of(text, loc)
            at = f"{origin}:{line}" if line else origin
            lines.append(f"{at}: {where}: {err['msg']}")
        raise CalendarConfigError(
            "日历配置无效 / invalid calendar override file:\n  " + "\n  ".join(lines)
        ) from None


def load_overrides(path: str | Path) -> CalendarOverrides:
    """Read and validate a site's calendar override file (.yaml, .yml or .json)."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise CalendarConfigError(f"{p}: 无法读取 / cannot read: {exc.strerror}") from None
    return parse_overrides(text, origin=str(p))


__all__ = [
    "BUSINESS_TZ",
    "CalendarConfigError",
    "CalendarError",
    "CalendarOverrides",
    "DayInfo",
    "DaySpan",
    "UnknownYearError",
    "WorkCalendar",
    "business_date",
    "day_start",
    "load_overrides",
    "parse_overrides",
]
