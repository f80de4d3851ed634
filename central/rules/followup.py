"""Bad-review follow-up (差评整改): every 差评 opens an item that must be assigned, verified
(核实), rectified (整改), called back (回访) and closed within N working days.

    created → assigned → verified → rectified → called_back → closed
                              └─ (found unfounded, 不属实) ─→ called_back

Pure functions: each takes an item and returns the new item with the events to record;
nothing is stored here. Times are aware datetimes; dates are Asia/Shanghai business dates.

Deadlines, as for cases: the creation day is not counted; the item is due on the N-th working
day after it (5 by default). An item still open after its due day is overdue; escalations
fall on working days: level i is reached on the ``escalate_after[i-1]``-th working day after
the due day (default: level 1 on the first working day after it, level 2 three working days
later). An item closed after its due day was closed late, whether or not it was escalated.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import itertools
from dataclasses import dataclass
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field, field_validator

from central.rules.scale import DeviceKey, device_key, is_bad_review
from central.rules.workdays import WorkCalendar, business_date, day_start


class FollowUpState(StrEnum):
    CREATED = "created"
    ASSIGNED = "assigned"
    VERIFIED = "verified"
    RECTIFIED = "rectified"
    CALLED_BACK = "called_back"
    CLOSED = "closed"

    @property
    def label(self) -> str:
        return _STATE_LABELS[self]


_STATE_LABELS = {
    FollowUpState.CREATED: "待分派",
    FollowUpState.ASSIGNED: "已分派",
    FollowUpState.VERIFIED: "已核实",
    FollowUpState.RECTIFIED: "已整改",
    FollowUpState.CALLED_BACK: "已回访",
    FollowUpState.CLOSED: "已办结",
}

# Where each state may go next (verified → called_back only for an unfounded review).
NEXT: dict[FollowUpState, tuple[FollowUpState, ...]] = {
    FollowUpState.CREATED: (FollowUpState.ASSIGNED,),
    FollowUpState.ASSIGNED: (FollowUpState.VERIFIED,),
    FollowUpState.VERIFIED: (FollowUpState.RECTIFIED, FollowUpState.CALLED_BACK),
    FollowUpState.RECTIFIED: (FollowUpState.CALLED_BACK,),
    FollowUpState.CALLED_BACK: (FollowUpState.CLOSED,),
    FollowUpState.CLOSED: (),
}


class FollowUpConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    due_workdays: int = Field(default=5, ge=1, le=60, description="working days to close")
    escalate_after: tuple[int, ...] = Field(
        default=(1, 4),
        description="working days after the due day at which escalation level 1, 2, … is reached",
    )

    @field_validator("escalate_after")
    @classmethod
    def _increasing(cls, v: tuple[int, ...]) -> tuple[int, ...]:
        if not v or v[0] < 1 or any(b <= a for a, b in itertools.pairwise(v)):
            raise ValueError(f"escalate_after must be increasing working days ≥ 1, got {v}")
        return v


DEFAULT_FOLLOWUP = FollowUpConfig()


@dataclass(frozen=True, slots=True)
class FollowUpItem:
    item_id: str
    evaluation_id: str
    reason: DeviceKey  # key 3–6
    hall: str
    window: str
    staff: str | None
    case_no: str | None
    created_at: dt.datetime
    due: dt.date
    state: FollowUpState = FollowUpState.CREATED
    updated_at: dt.datetime | None = None
    assignee: str | None = None
    founded: bool | None = None  # set by verification: was the complaint borne out?
    escalation_level: int = 0  # highest escalation already recorded
    closed_at: dt.datetime | None = None

    @property
    def closed_late(self) -> bool | None:
        if self.closed_at is None:
            return None
        return business_date(self.closed_at) > self.due


@dataclass(frozen=True, slots=True)
class FollowUpEvent:
    """Something to record: ``kind`` is followup.<created|assigned|…|closed|escalated>."""

    kind: str
    item_id: str
    at: dt.datetime
    state: FollowUpState
    actor: str | None = None
    note: str = ""
    level: int | None = None  # for followup.escalated
    assignee: str | None = None
    founded: bool | None = None


class FollowUpError(ValueError):
    """A transition the state machine does not allow."""


def open_item(
    *,
    item_id: str,
    evaluation_id: str,
    key: int,
    created_at: dt.datetime,
    hall: str,
    window: str,
    staff: str | None,
    calendar: WorkCalendar,
    case_no: str | None = None,
    cfg: FollowUpConfig = DEFAULT_FOLLOWUP,
) -> tuple[FollowUpItem, list[FollowUpEvent]]:
    """Open the follow-up item of a bad review (keys 3–6); other keys are refused."""
    if not is_bad_review(key):
        raise FollowUpError(f"key {key} ({device_key(key).label}) is not a bad review")
    item = FollowUpItem(
        item_id=item_id,
        evaluation_id=evaluation_id,
        reason=device_key(key),
        hall=hall,
        window=window,
        staff=staff,
        case_no=case_no,
        created_at=created_at,
        due=calendar.add_workdays(business_date(created_at), cfg.due_workdays),
        updated_at=created_at,
    )
    return item, [FollowUpEvent("followup.created", item_id, created_at, item.state)]


def _move(
    item: FollowUpItem,
    to: FollowUpState,
    at: dt.datetime,
    actor: str,
    note: str,
    **changes: object,
) -> tuple[FollowUpItem, list[FollowUpEvent]]:
    if to not in NEXT[item.state]:
        allowed = "、".join(s.label for s in NEXT[item.state]) or "无（已办结）"
        raise FollowUpError(
            f"跟踪事项 {item.item_id} 处于「{item.state.label}」，不能转为「{to.label}」；"
            f"下一步只能是：{allowed} / item {item.item_id} is {item.state.value}, cannot go "
            f"to {to.value}; allowed next: {', '.join(s.value for s in NEXT[item.state]) or '-'}"
        )
    last = item.updated_at or item.created_at
    if at < last:
        raise FollowUpError(
            f"跟踪事项 {item.item_id}：时间 {at.isoformat()} 早于上一步 {last.isoformat()} / "
            "a step cannot be earlier than the previous one"
        )
    new = dataclasses.replace(item, state=to, updated_at=at, **changes)  # type: ignore[arg-type]
    event = FollowUpEvent(
        f"followup.{to.value}",
        item.item_id,
        at,
        to,
        actor=actor,
        note=note,
        assignee=new.assignee if to is FollowUpState.ASSIGNED else None,
        founded=new.founded if to is FollowUpState.VERIFIED else None,
    )
    return new, [event]


def assign(
    item: FollowUpItem, *, at: dt.datetime, actor: str, assignee: str, note: str = ""
) -> tuple[FollowUpItem, list[FollowUpEvent]]:
    """分派: hand the item to the person responsible (usually the department's contact)."""
    return _move(item, FollowUpState.ASSIGNED, at, actor, note, assignee=assignee)


def verify(
    item: FollowUpItem, *, at: dt.datetime, actor: str, founded: bool, note: str = ""
) -> tuple[FollowUpItem, list[FollowUpEvent]]:
    """核实: was the complaint borne out? An unfounded one skips rectification."""
    return _move(item, FollowUpState.VERIFIED, at, actor, note, founded=founded)


def rectify(
    item: FollowUpItem, *, at: dt.datetime, actor: str, note: str = ""
) -> tuple[FollowUpItem, list[FollowUpEvent]]:
    """整改: what was changed. Only for a review found to be founded."""
    if item.state is FollowUpState.VERIFIED and item.founded is False:
        raise FollowUpError(
            f"跟踪事项 {item.item_id} 经核实不属实，无需整改，应直接回访 / the review was "
            "found unfounded: call the citizen back instead of rectifying"
        )
    return _move(item, FollowUpState.RECTIFIED, at, actor, note)


def call_back(
    item: FollowUpItem, *, at: dt.datetime, actor: str, note: str = ""
) -> tuple[FollowUpItem, list[FollowUpEvent]]:
    """回访: the citizen was told the outcome."""
    if item.state is FollowUpState.VERIFIED and item.founded is not False:
        raise FollowUpError(
            f"跟踪事项 {item.item_id} 经核实属实，须先整改再回访 / the review was found "
            "founded: rectify before calling back"
        )
    return _move(item, FollowUpState.CALLED_BACK, at, actor, note)


def close(
    item: FollowUpItem, *, at: dt.datetime, actor: str, note: str = ""
) -> tuple[FollowUpItem, list[FollowUpEvent]]:
    """办结."""
    return _move(item, FollowUpState.CLOSED, at, actor, note, closed_at=at)


def overdue(item: FollowUpItem, now: dt.datetime) -> bool:
    """Still open after its due day."""
    return item.state is not FollowUpState.CLOSED and business_date(now) > item.due


def escalation_level(
    item: FollowUpItem,
    now: dt.datetime,
    calendar: WorkCalendar,
    cfg: FollowUpConfig = DEFAULT_FOLLOWUP,
) -> int:
    """The escalation level an open item has reached by ``now`` (0 = none)."""
    if item.state is FollowUpState.CLOSED:
        return item.escalation_level
    over = calendar.workdays_between(item.due, business_date(now))
    return sum(1 for n in cfg.escalate_after if over >= n)


def escalate(
    item: FollowUpItem,
    now: dt.datetime,
    calendar: WorkCalendar,
    cfg: FollowUpConfig = DEFAULT_FOLLOWUP,
) -> tuple[FollowUpItem, list[FollowUpEvent]]:
    """The escalations reached by ``now`` and not yet recorded on the item, one event per
    level, each dated 00:00 of the working day it fell due (so re-running is idempotent)."""
    reached = escalation_level(item, now, calendar, cfg)
    events = [
        FollowUpEvent(
            "followup.escalated",
            item.item_id,
            day_start(calendar.add_workdays(item.due, cfg.escalate_after[level - 1])),
            item.state,
            level=level,
            note=f"逾期升级督办（{level} 级） / overdue, escalation level {level}",
        )
        for level in range(item.escalation_level + 1, reached + 1)
    ]
    if not events:
        return item, []
    return dataclasses.replace(item, escalation_level=reached), events


__all__ = [
    "DEFAULT_FOLLOWUP",
    "NEXT",
    "FollowUpConfig",
    "FollowUpError",
    "FollowUpEvent",
    "FollowUpItem",
    "FollowUpState",
    "assign",
    "call_back",
    "close",
    "escalate",
    "escalation_level",
    "open_item",
    "overdue",
    "rectify",
    "verify",
]
