"""差评 work orders (差评整改): every evaluation the mapping version in force rates 不满意 or
非常不满意 opens an order that goes through three stages, each with its own deadline in
working days: 核实 (verify, 1), 整改 (rectify, 5), 回访 (call back, 15).

    created → assigned → verified ─(属实)→ rectified → called_back → closed
                  │          └──(不属实)──────────────→ called_back
                  └→ appealed (申诉: 误评 / 恶意差评, with evidence)
                         ├─ upheld by a supervisor  → closed, excluded (不计入)
                         └─ rejected                → verified (属实) → rectify

Pure functions: each takes an order and returns the new order with the events to record;
nothing is stored here. Times are aware datetimes; dates are Asia/Shanghai business dates.

Deadlines, as for cases: the day a stage starts is not counted; the stage is due on the N-th
working day after it. 核实 starts when the order opens, 整改 when verification (or a rejected
appeal's decision) ends, 回访 when rectification (or an unfounded verification) ends; the
order is closed within its 回访 stage. The stage lengths in force when the order opened are
kept on it (``stage_days``): changing the configuration never moves an open order's
deadlines. ``due`` is the current stage's due day. An appeal waits on the supervisor: it is
never overdue and never escalates.

A stage still open after its due day is overdue; escalations fall on working days: level i
is reached on the ``escalate_after[i-1]``-th working day after the stage's due day (default:
level 1, the department leader, on the first working day after it; level 2, the supervisor,
three working days later). A new stage starts at level 0 again. A stage finished after its
due day was finished late, whether or not it was escalated.
"""

# Long module: the work order's whole state machine, deadlines and escalation read in one place
from __future__ import annotations

import dataclasses
import datetime as dt
import itertools
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from central.rules.scale import (
    DEFAULT_BOOK,
    DeviceKey,
    MappingBook,
    NationalLevel,
    Tag,
    device_key,
    to_national,
)
from central.rules.workdays import WorkCalendar, business_date, day_start


class FollowUpState(StrEnum):
    CREATED = "created"
    ASSIGNED = "assigned"
    VERIFIED = "verified"
    APPEALED = "appealed"
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
    FollowUpState.APPEALED: "申诉待审",
    FollowUpState.RECTIFIED: "已整改",
    FollowUpState.CALLED_BACK: "已回访",
    FollowUpState.CLOSED: "已办结",
}


class Stage(StrEnum):
    """The stage an order is in; each of the first three has its own deadline."""

    VERIFY = "verify"  # 核实
    RECTIFY = "rectify"  # 整改
    CALL_BACK = "call_back"  # 回访
    APPEAL = "appeal"  # 申诉待审: the supervisor's decision, no deadline for the hall
    DONE = "done"

    @property
    def label(self) -> str:
        return _STAGE_LABELS[self]


_STAGE_LABELS = {
    Stage.VERIFY: "核实",
    Stage.RECTIFY: "整改",
    Stage.CALL_BACK: "回访",
    Stage.APPEAL: "申诉审核",
    Stage.DONE: "办结",
}
TIMED_STAGES = (Stage.VERIFY, Stage.RECTIFY, Stage.CALL_BACK)


class AppealGround(StrEnum):
    MISJUDGED = "misjudged"  # 误评: the citizen pressed the wrong key
    MALICIOUS = "malicious"  # 恶意差评

    @property
    def label(self) -> str:
        return "误评" if self is AppealGround.MISJUDGED else "恶意差评"


class CallBackAnswer(StrEnum):
    """The citizen's answer at 回访."""

    SATISFIED = "satisfied"  # 满意
    BASICALLY = "basically"  # 基本满意
    NOT_SATISFIED = "not_satisfied"  # 不满意
    UNREACHABLE = "unreachable"  # 联系不上

    @property
    def label(self) -> str:
        return _ANSWER_LABELS[self]

    @property
    def reached(self) -> bool:
        return self is not CallBackAnswer.UNREACHABLE


_ANSWER_LABELS = {
    CallBackAnswer.SATISFIED: "满意",
    CallBackAnswer.BASICALLY: "基本满意",
    CallBackAnswer.NOT_SATISFIED: "不满意",
    CallBackAnswer.UNREACHABLE: "联系不上",
}

# Where each state may go next (verified → called_back only for an unfounded review;
# appealed → closed when upheld, → verified when rejected).
NEXT: dict[FollowUpState, tuple[FollowUpState, ...]] = {
    FollowUpState.CREATED: (FollowUpState.ASSIGNED,),
    FollowUpState.ASSIGNED: (FollowUpState.VERIFIED, FollowUpState.APPEALED),
    FollowUpState.VERIFIED: (FollowUpState.RECTIFIED, FollowUpState.CALLED_BACK),
    FollowUpState.APPEALED: (FollowUpState.CLOSED, FollowUpState.VERIFIED),
    FollowUpState.RECTIFIED: (FollowUpState.CALLED_BACK,),
    FollowUpState.CALLED_BACK: (FollowUpState.CLOSED,),
    FollowUpState.CLOSED: (),
}


class StageDays(BaseModel):
    """Working days allowed for each stage, counted from the day the stage starts."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    verify: int = Field(default=1, ge=1, le=60, description="核实")
    rectify: int = Field(default=5, ge=1, le=60, description="整改")
    call_back: int = Field(default=15, ge=1, le=60, description="回访")

    def of(self, stage: Stage) -> int:
        return int(getattr(self, stage.value))


class FollowUpConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    stage_workdays: StageDays = Field(
        default_factory=StageDays, description="working days per stage: 核实 1, 整改 5, 回访 15"
    )
    hall_stage_workdays: dict[str, StageDays] = Field(
        default_factory=dict, description="a hall's own stage lengths, where they differ"
    )
    escalate_after: tuple[int, ...] = Field(
        default=(1, 4),
        description="working days after a stage's due day at which escalation level 1 "
        "(department leader), 2 (supervisor), … is reached",
    )

    @field_validator("escalate_after")
    @classmethod
    def _increasing(cls, v: tuple[int, ...]) -> tuple[int, ...]:
        if not v or v[0] < 1 or any(b <= a for a, b in itertools.pairwise(v)):
            raise ValueError(f"escalate_after must be increasing working days ≥ 1, got {v}")
        return v

    @model_validator(mode="before")
    @classmethod
    def _no_single_deadline(cls, data: Any) -> Any:
        # Sites configured before work orders had one deadline for the whole item; guessing
        # which stage it meant would move due days silently, so say what replaced it.
        if isinstance(data, dict) and "due_workdays" in data:
            raise ValueError(
                "followup.due_workdays (one deadline for the whole item) was replaced by "
                "followup.stage_workdays: {verify: 1, rectify: 5, call_back: 15} "
                "(核实 / 整改 / 回访, working days each); set the stages and remove due_workdays"
            )
        return data

    def stages_for(self, hall: str) -> StageDays:
        return self.hall_stage_workdays.get(hall, self.stage_workdays)


DEFAULT_FOLLOWUP = FollowUpConfig()
DEFAULT_STAGE_DAYS = StageDays()


@dataclass(frozen=True, slots=True)
class FollowUpItem:
    item_id: str
    evaluation_id: str
    reason: DeviceKey  # the evaluator key
    hall: str
    window: str
    staff: str | None
    case_no: str | None
    created_at: dt.datetime
    due: dt.date  # the current stage's due day
    state: FollowUpState = FollowUpState.CREATED
    updated_at: dt.datetime | None = None
    assignee: str | None = None
    founded: bool | None = None  # set by verification: was the complaint borne out?
    escalation_level: int = 0  # highest escalation recorded in the current stage
    closed_at: dt.datetime | None = None
    level: NationalLevel = NationalLevel.DISSATISFIED
    tag: Tag | None = None
    mapping_version: str = ""
    stage_days: StageDays = DEFAULT_STAGE_DAYS
    verify_due: dt.date | None = None
    rectify_due: dt.date | None = None
    call_back_due: dt.date | None = None
    verified_at: dt.datetime | None = None  # 核实 ended (verification or appeal filed)
    rectified_at: dt.datetime | None = None
    called_back_at: dt.datetime | None = None
    answer: CallBackAnswer | None = None
    appeal_ground: AppealGround | None = None
    appeal_evidence: str | None = None  # sha256 of the evidence in the vault
    appeal_upheld: bool | None = None
    excluded: bool = False  # appeal upheld: not a 差评 of the hall's

    @property
    def stage(self) -> Stage:
        return stage_of(self.state, self.founded)

    @property
    def closed_late(self) -> bool | None:
        if self.closed_at is None:
            return None
        return not self.excluded and business_date(self.closed_at) > self.due


def stage_of(state: FollowUpState, founded: bool | None) -> Stage:
    if state in (FollowUpState.CREATED, FollowUpState.ASSIGNED):
        return Stage.VERIFY
    if state is FollowUpState.APPEALED:
        return Stage.APPEAL
    if state is FollowUpState.VERIFIED and founded is not False:
        return Stage.RECTIFY
    if state is FollowUpState.CLOSED:
        return Stage.DONE
    return Stage.CALL_BACK


@dataclass(frozen=True, slots=True)
class FollowUpEvent:
    """Something to record: ``kind`` is followup.<created|assigned|…|closed|escalated|
    appealed|appeal_upheld|appeal_rejected>."""

    kind: str
    item_id: str
    at: dt.datetime
    state: FollowUpState
    actor: str | None = None
    note: str = ""
    level: int | None = None  # for followup.escalated
    assignee: str | None = None
    founded: bool | None = None
    stage: Stage | None = None  # the stage escalated, or the one that ended
    ground: AppealGround | None = None
    evidence_sha256: str | None = None
    answer: CallBackAnswer | None = None


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
    evaluated_at: dt.datetime | None = None,
    book: MappingBook = DEFAULT_BOOK,
) -> tuple[FollowUpItem, list[FollowUpEvent]]:
    """Open the order of an evaluation the mapping in force at ``evaluated_at`` rates 差评
    (不满意 or 非常不满意); other evaluations are refused."""
    rating = to_national(key, evaluated_at or created_at, book)
    if not rating.level.is_bad:
        raise FollowUpError(
            f"key {key} ({device_key(key).label}) is {rating.level.label} under mapping "
            f"{rating.version}: not a bad review"
        )
    days = cfg.stages_for(hall)
    due = calendar.add_workdays(business_date(created_at), days.verify)
    item = FollowUpItem(
        item_id=item_id,
        evaluation_id=evaluation_id,
        reason=device_key(key),
        hall=hall,
        window=window,
        staff=staff,
        case_no=case_no,
        created_at=created_at,
        due=due,
        updated_at=created_at,
        level=rating.level,
        tag=rating.tag,
        mapping_version=rating.version,
        stage_days=days,
        verify_due=due,
    )
    return item, [FollowUpEvent("followup.created", item_id, created_at, item.state)]


def opens_order(key: int, evaluated_at: dt.datetime, book: MappingBook = DEFAULT_BOOK) -> bool:
    """Whether the mapping in force at ``evaluated_at`` rates ``key`` 不满意 or 非常不满意."""
    return to_national(key, evaluated_at, book).level.is_bad


def _refuse_move(item: FollowUpItem, to: FollowUpState) -> FollowUpError:
    allowed = "、".join(s.label for s in NEXT[item.state]) or "无（已办结）"
    return FollowUpError(
        f"工单 {item.item_id} 处于「{item.state.label}」，不能转为「{to.label}」；"
        f"下一步只能是：{allowed} / order {item.item_id} is {item.state.value}, cannot go "
        f"to {to.value}; allowed next: {', '.join(s.value for s in NEXT[item.state]) or '-'}"
    )


def _start(
    item: FollowUpItem, stage: Stage, at: dt.datetime, calendar: WorkCalendar
) -> dict[str, object]:
    """The changes that start ``stage`` on ``at``'s business day: its due day, level 0."""
    due = calendar.add_workdays(business_date(at), item.stage_days.of(stage))
    return {"due": due, f"{stage.value}_due": due, "escalation_level": 0}


def _move(
    item: FollowUpItem,
    to: FollowUpState,
    at: dt.datetime,
    actor: str,
    note: str,
    changes: dict[str, object],
    kind: str | None = None,
) -> tuple[FollowUpItem, list[FollowUpEvent]]:
    if to not in NEXT[item.state]:
        raise _refuse_move(item, to)
    last = item.updated_at or item.created_at
    if at < last:
        raise FollowUpError(
            f"工单 {item.item_id}：时间 {at.isoformat()} 早于上一步 {last.isoformat()} / "
            "a step cannot be earlier than the previous one"
        )
    new = dataclasses.replace(item, state=to, updated_at=at, **changes)  # type: ignore[arg-type]
    event = FollowUpEvent(
        kind or f"followup.{to.value}",
        item.item_id,
        at,
        to,
        actor=actor,
        note=note,
        assignee=new.assignee if to is FollowUpState.ASSIGNED else None,
        founded=new.founded if to is FollowUpState.VERIFIED else None,
        stage=item.stage if new.stage is not item.stage else None,
        ground=new.appeal_ground if to is FollowUpState.APPEALED else None,
        evidence_sha256=new.appeal_evidence if to is FollowUpState.APPEALED else None,
        answer=new.answer if to is FollowUpState.CALLED_BACK else None,
    )
    return new, [event]


def assign(
    item: FollowUpItem, *, at: dt.datetime, actor: str, assignee: str, note: str = ""
) -> tuple[FollowUpItem, list[FollowUpEvent]]:
    """分派: hand the order to the person responsible (usually the department's contact)."""
    return _move(item, FollowUpState.ASSIGNED, at, actor, note, {"assignee": assignee})


def verify(
    item: FollowUpItem,
    *,
    at: dt.datetime,
    actor: str,
    founded: bool,
    calendar: WorkCalendar,
    note: str = "",
) -> tuple[FollowUpItem, list[FollowUpEvent]]:
    """核实: was the complaint borne out? An unfounded one skips rectification."""
    following = Stage.RECTIFY if founded else Stage.CALL_BACK
    changes = _start(item, following, at, calendar)
    return _move(
        item,
        FollowUpState.VERIFIED,
        at,
        actor,
        note,
        {**changes, "founded": founded, "verified_at": at},
    )


def appeal(
    item: FollowUpItem,
    *,
    at: dt.datetime,
    actor: str,
    ground: AppealGround,
    note: str,
    evidence_sha256: str | None = None,
) -> tuple[FollowUpItem, list[FollowUpEvent]]:
    """申诉 at 核实: the hall or department concludes 误评 or 恶意差评 and says why (``note``,
    with the evidence vault's sha256 if there is a recording). Ends the 核实 stage; the order
    waits on a supervisor's decision."""
    if not note.strip():
        raise FollowUpError("申诉须说明理由和证据 / an appeal needs its grounds and evidence")
    return _move(
        item,
        FollowUpState.APPEALED,
        at,
        actor,
        note,
        {
            "appeal_ground": ground,
            "appeal_evidence": evidence_sha256,
            "verified_at": at,
            "escalation_level": 0,
        },
    )


def decide_appeal(
    item: FollowUpItem,
    *,
    at: dt.datetime,
    actor: str,
    upheld: bool,
    calendar: WorkCalendar,
    note: str = "",
) -> tuple[FollowUpItem, list[FollowUpEvent]]:
    """The supervisor's decision. Upheld: the order closes, excluded (the review is not held
    against the hall). Rejected: the review stands as founded and 整改 starts now."""
    if item.state is not FollowUpState.APPEALED:
        raise FollowUpError(
            f"工单 {item.item_id} 没有待审的申诉 / order {item.item_id} has no appeal to decide"
        )
    if upheld:
        return _move(
            item,
            FollowUpState.CLOSED,
            at,
            actor,
            note,
            {"appeal_upheld": True, "excluded": True, "closed_at": at},
            kind="followup.appeal_upheld",
        )
    return _move(
        item,
        FollowUpState.VERIFIED,
        at,
        actor,
        note,
        {**_start(item, Stage.RECTIFY, at, calendar), "appeal_upheld": False, "founded": True},
        kind="followup.appeal_rejected",
    )


def rectify(
    item: FollowUpItem,
    *,
    at: dt.datetime,
    actor: str,
    calendar: WorkCalendar,
    note: str = "",
) -> tuple[FollowUpItem, list[FollowUpEvent]]:
    """整改: what was changed. Only for a review found to be founded."""
    if item.state is FollowUpState.VERIFIED and item.founded is False:
        raise FollowUpError(
            f"工单 {item.item_id} 经核实不属实，无需整改，应直接回访 / the review was "
            "found unfounded: call the citizen back instead of rectifying"
        )
    changes = _start(item, Stage.CALL_BACK, at, calendar)
    return _move(item, FollowUpState.RECTIFIED, at, actor, note, {**changes, "rectified_at": at})


def call_back(
    item: FollowUpItem,
    *,
    at: dt.datetime,
    actor: str,
    answer: CallBackAnswer,
    note: str = "",
) -> tuple[FollowUpItem, list[FollowUpEvent]]:
    """回访: the citizen was told the outcome; ``answer`` is what they said of it."""
    if item.state is FollowUpState.VERIFIED and item.founded is not False:
        raise FollowUpError(
            f"工单 {item.item_id} 经核实属实，须先整改再回访 / the review was found "
            "founded: rectify before calling back"
        )
    return _move(
        item, FollowUpState.CALLED_BACK, at, actor, note, {"called_back_at": at, "answer": answer}
    )


def close(
    item: FollowUpItem, *, at: dt.datetime, actor: str, note: str = ""
) -> tuple[FollowUpItem, list[FollowUpEvent]]:
    """办结."""
    if item.state is FollowUpState.APPEALED:
        raise _refuse_move(item, FollowUpState.CLOSED)  # only the supervisor's decision
    return _move(item, FollowUpState.CLOSED, at, actor, note, {"closed_at": at})


def waits_on_hall(state: FollowUpState) -> bool:
    """Open and on the hall's clock (an appeal waits on the supervisor)."""
    return state not in (FollowUpState.CLOSED, FollowUpState.APPEALED)


def overdue(item: FollowUpItem, now: dt.datetime) -> bool:
    """The current stage is still open after its due day."""
    return waits_on_hall(item.state) and business_date(now) > item.due


def escalation_level(
    item: FollowUpItem,
    now: dt.datetime,
    calendar: WorkCalendar,
    cfg: FollowUpConfig = DEFAULT_FOLLOWUP,
) -> int:
    """The escalation level the current stage has reached by ``now`` (0 = none)."""
    if not waits_on_hall(item.state):
        return item.escalation_level
    over = calendar.workdays_between(item.due, business_date(now))
    return sum(1 for n in cfg.escalate_after if over >= n)


def escalate(
    item: FollowUpItem,
    now: dt.datetime,
    calendar: WorkCalendar,
    cfg: FollowUpConfig = DEFAULT_FOLLOWUP,
) -> tuple[FollowUpItem, list[FollowUpEvent]]:
    """The escalations reached by ``now`` and not yet recorded on the order, one event per
    level, each dated 00:00 of the working day it fell due (so re-running is idempotent)."""
    reached = escalation_level(item, now, calendar, cfg)
    stage = item.stage
    events = [
        FollowUpEvent(
            "followup.escalated",
            item.item_id,
            day_start(calendar.add_workdays(item.due, cfg.escalate_after[level - 1])),
            item.state,
            level=level,
            stage=stage,
            note=f"{stage.label}逾期升级督办（{level} 级） / {stage.value} overdue, "
            f"escalation level {level}",
        )
        for level in range(item.escalation_level + 1, reached + 1)
    ]
    if not events:
        return item, []
    return dataclasses.replace(item, escalation_level=reached), events


def escalation_target(level: int) -> str:
    """Who an escalation level goes to: 1 the department leader, 2 and above the supervisor."""
    return "leader" if level <= 1 else "supervisor"


__all__ = [
    "DEFAULT_FOLLOWUP",
    "NEXT",
    "TIMED_STAGES",
    "AppealGround",
    "CallBackAnswer",
    "FollowUpConfig",
    "FollowUpError",
    "FollowUpEvent",
    "FollowUpItem",
    "FollowUpState",
    "Stage",
    "StageDays",
    "appeal",
    "assign",
    "call_back",
    "close",
    "decide_appeal",
    "escalate",
    "escalation_level",
    "escalation_target",
    "open_item",
    "opens_order",
    "overdue",
    "rectify",
    "stage_of",
    "verify",
    "waits_on_hall",
]
