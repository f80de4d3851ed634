"""The time-limit ladder (时限预警与督办): blue → yellow light → red light → yellow card →
red card → supervision letter (监察建议书).

How a limit is counted (行政许可法 art. 82: working days, statutory holidays excluded):

- The limit is the promised one (承诺时限) where there is one, else the legal one (法定时限).
- The day of acceptance is not counted; the first counted day is the next working day. The
  deadline is the last of ``limit`` counted working days (limit 0, 即办件: the acceptance day).
- **Which days count.** A working day counts when the case is running at its start (00:00
  Asia/Shanghai): accepted before, not completed, not suspended. This one rule gives the
  acceptance rule above (at 00:00 of the acceptance day the case did not exist) and says how a
  partial-day suspension (补正, 特别程序) counts:
    * suspended and resumed on the same day: no day is lost;
    * suspended on day S, resumed on day E > S: S counts (the case ran that morning); every
      working day after S up to and including E does not (E is treated like a new acceptance:
      the clock restarts on the next working day, as after 受理).
  A suspension still open when the case is completed ends at the completion.
- **Position.** ``days_over(day)`` = counted working days in (acceptance, day] − limit:
  negative before the deadline (−1 = the deadline is the next counted working day), 0 on
  the deadline day, n > 0 once n counted working days have passed beyond it. It only moves at
  the start of a counted working day, so weekends, holidays and suspended days never advance
  the ladder: a yellow card falls due on the first working day that is one working day over.
- **Stage.** With the default thresholds: position ≤ −2 blue, −1 yellow light, 0 red light,
  +1 yellow card, +2 red card, ≥ +3 supervision letter (``LadderConfig``).
- A case completed on or before its deadline day is on time (DONE_ON_TIME), after it late
  (DONE_LATE) — a Saturday completion after a Friday deadline is late although no yellow card
  was ever shown.

``stage_on(day)`` is the stage at the close of that day. ``steps(until)`` lists every change
with its date: the ladder's changes happen at 00:00 of a day, suspension, resumption and
completion at their own instants, so a case completed on its deadline day shows RED_LIGHT then
DONE_ON_TIME on the same date. Only what has happened by the close of a day is used, so
``steps(until=d)`` never changes once ``d`` has closed and later data only appends.
"""

from __future__ import annotations

import datetime as dt
import itertools
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator

from central.rules.workdays import WorkCalendar, business_date, day_start


class LadderStage(StrEnum):
    BLUE = "blue"
    YELLOW_LIGHT = "yellow_light"
    RED_LIGHT = "red_light"
    YELLOW_CARD = "yellow_card"
    RED_CARD = "red_card"
    SUPERVISION_LETTER = "supervision_letter"
    SUSPENDED = "suspended"
    DONE_ON_TIME = "done_on_time"
    DONE_LATE = "done_late"

    @property
    def label(self) -> str:
        return _LABELS[self]

    @property
    def is_done(self) -> bool:
        return self in (LadderStage.DONE_ON_TIME, LadderStage.DONE_LATE)


_LABELS = {
    LadderStage.BLUE: "蓝灯（正常办理）",
    LadderStage.YELLOW_LIGHT: "黄灯（临近时限）",
    LadderStage.RED_LIGHT: "红灯（时限到期）",
    LadderStage.YELLOW_CARD: "黄牌（超时）",
    LadderStage.RED_CARD: "红牌（严重超时）",
    LadderStage.SUPERVISION_LETTER: "监察建议书",
    LadderStage.SUSPENDED: "暂停计时",
    LadderStage.DONE_ON_TIME: "按时办结",
    LadderStage.DONE_LATE: "超时办结",
}


class Suspension(BaseModel):
    """A stopped clock (补正, 特别程序…): [start, end), end None while still suspended.
    Also accepts a plain ``(start, end)`` pair."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    start: AwareDatetime
    end: AwareDatetime | None = None
    reason: str = Field(default="", max_length=64, description="e.g. 补正, 特别程序")

    @model_validator(mode="before")
    @classmethod
    def _from_pair(cls, data: Any) -> Any:
        if isinstance(data, tuple | list) and len(data) == 2:
            return {"start": data[0], "end": data[1]}
        return data

    @model_validator(mode="after")
    def _ordered(self) -> Suspension:
        if self.end is not None and self.end <= self.start:
            raise ValueError(f"suspension ends ({self.end}) before it starts ({self.start})")
        return self


class CaseClock(BaseModel):
    """What the ladder needs to know about one case (办件)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    accepted_at: AwareDatetime
    legal_days: int = Field(ge=0, description="法定时限, working days")
    promised_days: int | None = Field(default=None, ge=0, description="承诺时限, working days")
    completed_at: AwareDatetime | None = None
    suspensions: tuple[Suspension, ...] = ()

    @model_validator(mode="after")
    def _coherent(self) -> CaseClock:
        if self.promised_days is not None and self.promised_days > self.legal_days:
            raise ValueError(
                f"承诺时限 {self.promised_days} exceeds 法定时限 {self.legal_days} working days"
            )
        if self.completed_at is not None and self.completed_at < self.accepted_at:
            raise ValueError("completed before it was accepted")
        previous_end: dt.datetime | None = self.accepted_at
        for i, s in enumerate(self.suspensions):
            if previous_end is None:
                raise ValueError(f"suspension {i} starts while suspension {i - 1} is still open")
            if s.start < previous_end:
                raise ValueError(
                    f"suspension {i} starts at {s.start}, before the acceptance or the end of "
                    f"the previous suspension ({previous_end})"
                )
            if self.completed_at is not None and s.start > self.completed_at:
                raise ValueError(f"suspension {i} starts after the completion")
            previous_end = s.end
        return self

    @property
    def limit_days(self) -> int:
        """The limit the ladder runs on: promised where there is one, else legal."""
        return self.legal_days if self.promised_days is None else self.promised_days

    @property
    def accepted_on(self) -> dt.date:
        return business_date(self.accepted_at)

    @property
    def completed_on(self) -> dt.date | None:
        return None if self.completed_at is None else business_date(self.completed_at)

    def _suspension_end(self, s: Suspension) -> dt.datetime | None:
        if s.end is not None:
            return s.end
        return self.completed_at  # an open suspension ends with the completion

    def suspended_at(self, moment: dt.datetime) -> bool:
        for s in self.suspensions:
            end = self._suspension_end(s)
            if s.start <= moment and (end is None or moment < end):
                return True
        return False

    def running_at(self, moment: dt.datetime) -> bool:
        return (
            self.accepted_at <= moment
            and (self.completed_at is None or moment < self.completed_at)
            and not self.suspended_at(moment)
        )


class LadderConfig(BaseModel):
    """Thresholds in counted working days relative to the deadline (0 = the deadline day)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    yellow_light: int = -1
    red_light: int = 0
    yellow_card: int = 1
    red_card: int = 2
    supervision_letter: int = 3

    @model_validator(mode="after")
    def _increasing(self) -> LadderConfig:
        values = [
            self.yellow_light,
            self.red_light,
            self.yellow_card,
            self.red_card,
            self.supervision_letter,
        ]
        if any(b <= a for a, b in itertools.pairwise(values)):
            raise ValueError(
                "thresholds must increase: yellow_light < red_light < yellow_card < red_card "
                f"< supervision_letter, got {values}"
            )
        return self

    def stage_for(self, days_over: int) -> LadderStage:
        if days_over >= self.supervision_letter:
            return LadderStage.SUPERVISION_LETTER
        if days_over >= self.red_card:
            return LadderStage.RED_CARD
        if days_over >= self.yellow_card:
            return LadderStage.YELLOW_CARD
        if days_over >= self.red_light:
            return LadderStage.RED_LIGHT
        if days_over >= self.yellow_light:
            return LadderStage.YELLOW_LIGHT
        return LadderStage.BLUE


DEFAULT_LADDER = LadderConfig()


@dataclass(frozen=True, slots=True)
class LadderStep:
    """One step event: the case entered ``stage`` on ``on_date`` (at ``at``)."""

    stage: LadderStage
    on_date: dt.date
    at: dt.datetime
    days_over: int  # position when it happened (see module doc)


class ClockSuspended(ValueError):
    """The deadline is not defined while the clock is stopped."""


def _counts(clock: CaseClock, day: dt.date, calendar: WorkCalendar) -> bool:
    """Does this date count toward the limit? (a working day, the case running at 00:00)."""
    return calendar.is_workday(day) and clock.running_at(day_start(day))


def _check_day(clock: CaseClock, day: dt.date) -> None:
    if day < clock.accepted_on:
        raise ValueError(f"{day} is before the case was accepted ({clock.accepted_on})")


def counted_workdays(clock: CaseClock, day: dt.date, calendar: WorkCalendar) -> int:
    """Counted working days in (acceptance day, day]: the time used by the close of ``day``."""
    _check_day(clock, day)
    return sum(
        1
        for i in range(1, (day - clock.accepted_on).days + 1)
        if _counts(clock, clock.accepted_on + dt.timedelta(days=i), calendar)
    )


def days_over(clock: CaseClock, day: dt.date, calendar: WorkCalendar) -> int:
    """Position on ``day`` relative to the deadline (−1 one working day before, 0 on it…)."""
    return counted_workdays(clock, day, calendar) - clock.limit_days


def suspended_workdays(clock: CaseClock, day: dt.date, calendar: WorkCalendar) -> int:
    """Working days in (acceptance day, day] not counted because the clock was stopped."""
    _check_day(clock, day)
    total = 0
    for i in range(1, (day - clock.accepted_on).days + 1):
        d = clock.accepted_on + dt.timedelta(days=i)
        if calendar.is_workday(d) and clock.suspended_at(day_start(d)):
            total += 1
    return total


def deadline(clock: CaseClock, calendar: WorkCalendar) -> dt.date:
    """The deadline day, given every suspension known so far.

    Raises ClockSuspended while a suspension is open on a case not yet completed: how many days
    it will take away is not known until it ends."""
    open_ = [s for s in clock.suspensions if s.end is None]
    if open_ and clock.completed_at is None:
        raise ClockSuspended(
            f"办件暂停计时中（自 {open_[0].start.isoformat()}），办理期限待恢复后确定"
            " / clock stopped: the deadline is known once the case resumes"
        )
    day, left = clock.accepted_on, clock.limit_days
    while left:
        day += dt.timedelta(days=1)
        if calendar.is_workday(day) and not clock.suspended_at(day_start(day)):
            left -= 1
    return day


def completed_on_time(clock: CaseClock, calendar: WorkCalendar) -> bool:
    """Completed on or before its deadline day. Raises ValueError if not completed."""
    done = clock.completed_on
    if done is None:
        raise ValueError("the case is not completed")
    return done <= deadline(clock, calendar)


def _done_stage(clock: CaseClock, calendar: WorkCalendar) -> LadderStage:
    if completed_on_time(clock, calendar):
        return LadderStage.DONE_ON_TIME
    return LadderStage.DONE_LATE


def stage_on(
    clock: CaseClock,
    day: dt.date,
    calendar: WorkCalendar,
    cfg: LadderConfig = DEFAULT_LADDER,
) -> LadderStage:
    """The stage at the close of ``day`` (its last moment)."""
    _check_day(clock, day)
    close = day_start(day + dt.timedelta(days=1))
    if clock.completed_at is not None and clock.completed_at < close:
        return _done_stage(clock, calendar)
    for s in clock.suspensions:
        if s.start < close and (s.end is None or s.end >= close):
            return LadderStage.SUSPENDED
    return cfg.stage_for(days_over(clock, day, calendar))


def steps(
    clock: CaseClock,
    until: dt.date,
    calendar: WorkCalendar,
    cfg: LadderConfig = DEFAULT_LADDER,
) -> list[LadderStep]:
    """Every stage change from acceptance to the close of ``until``, in order.

    Only stages actually reached are listed (a case accepted with limit 0 starts at the red
    light). The list for an earlier ``until`` is always a prefix of the list for a later one,
    so central can re-derive it at any time and record the steps it has not recorded yet."""
    out: list[LadderStep] = []
    first = clock.accepted_on
    if until < first:
        return out
    counted = 0

    def emit(stage: LadderStage, day: dt.date, at: dt.datetime) -> None:
        if not out or out[-1].stage is not stage:
            out.append(LadderStep(stage, day, at, counted - clock.limit_days))

    # Instants inside a day where the stage may change; the stage after each is recomputed
    # from the whole clock, so back-to-back suspensions or simultaneous events need no rules.
    instants = sorted(
        {s.start for s in clock.suspensions}
        | {s.end for s in clock.suspensions if s.end is not None}
        | ({clock.completed_at} if clock.completed_at is not None else set())
    )

    def state_at(moment: dt.datetime) -> LadderStage:
        if clock.completed_at is not None and clock.completed_at <= moment:
            return _done_stage(clock, calendar)
        if clock.suspended_at(moment):
            return LadderStage.SUSPENDED
        return cfg.stage_for(counted - clock.limit_days)

    day = first
    while day <= until:
        start = day_start(day)
        if day == first:
            emit(state_at(clock.accepted_at), day, clock.accepted_at)
        else:
            if clock.completed_at is not None and clock.completed_at < start:
                break
            if calendar.is_workday(day) and clock.running_at(start):
                counted += 1
            emit(state_at(start), day, start)
        for at in instants:
            if business_date(at) == day and at >= clock.accepted_at:
                emit(state_at(at), day, at)
        day += dt.timedelta(days=1)
    return out


__all__ = [
    "DEFAULT_LADDER",
    "CaseClock",
    "ClockSuspended",
    "LadderConfig",
    "LadderStage",
    "LadderStep",
    "Suspension",
    "completed_on_time",
    "counted_workdays",
    "days_over",
    "deadline",
    "stage_on",
    "steps",
    "suspended_workdays",
]
