"""The complaint's rules, pure: states and the steps between them, deadlines in working days,
overdue and escalation, and what a complainant may type.

States: 待受理 → 已受理 → 办理中 → 已答复 → 已办结, or 不予受理 (with a reason) before it is
accepted. Deadlines count from the business date it was received (that day never counts, as
for cases): acknowledge within ``ack_days``, reply within ``reply_days`` working days."""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from central.rules.workdays import WorkCalendar, business_date
from hallkit.clock import utc_now
from protocols.topics import ID_PATTERN


class ComplaintState(StrEnum):
    PENDING = "pending"
    ACCEPTED = "accepted"
    HANDLING = "handling"
    REPLIED = "replied"
    CLOSED = "closed"
    REJECTED = "rejected"

    @property
    def label(self) -> str:
        return STATE_LABELS[self]

    @property
    def open(self) -> bool:
        return self in OPEN_STATES


STATE_LABELS = {
    ComplaintState.PENDING: "待受理",
    ComplaintState.ACCEPTED: "已受理",
    ComplaintState.HANDLING: "办理中",
    ComplaintState.REPLIED: "已答复",
    ComplaintState.CLOSED: "已办结",
    ComplaintState.REJECTED: "不予受理",
}
OPEN_STATES = frozenset({ComplaintState.PENDING, ComplaintState.ACCEPTED, ComplaintState.HANDLING})
ANSWERED_STATES = frozenset({ComplaintState.REPLIED, ComplaintState.CLOSED})


class Channel(StrEnum):
    WEB = "web"  # the public form
    PHONE = "phone"  # taken by phone (热线)
    COUNTER = "counter"  # at the hall's 投诉台
    LETTER = "letter"  # 来信


# action → (states it may start from, state it leads to)
STEPS: dict[str, tuple[frozenset[ComplaintState], ComplaintState]] = {
    "accept": (frozenset({ComplaintState.PENDING}), ComplaintState.ACCEPTED),
    "reject": (frozenset({ComplaintState.PENDING}), ComplaintState.REJECTED),
    "handle": (frozenset({ComplaintState.ACCEPTED}), ComplaintState.HANDLING),
    "reply": (
        frozenset({ComplaintState.ACCEPTED, ComplaintState.HANDLING}),
        ComplaintState.REPLIED,
    ),
    "close": (frozenset({ComplaintState.REPLIED}), ComplaintState.CLOSED),
}
# 归口: a supervisor hands an open complaint to a department; the state stays
ROUTE = "route"


class ComplaintError(ValueError):
    """A step the state machine does not allow (Chinese first)."""


def next_state(state: ComplaintState, action: str) -> ComplaintState:
    if action not in STEPS:
        raise ComplaintError(f"未知操作 / unknown action {action}")
    sources, target = STEPS[action]
    if state not in sources:
        raise ComplaintError(
            f"投诉当前为「{state.label}」，不能执行该操作 / cannot {action} a complaint that is "
            f"{state.value}"
        )
    return target


class ComplaintsConfig(BaseModel):
    """``complaints:`` in central.yaml."""

    model_config = ConfigDict(extra="forbid")

    ack_days: int = Field(default=1, ge=0, le=30, description="受理时限, working days")
    reply_days: int = Field(default=5, ge=1, le=60, description="答复时限, working days")
    escalate_after_days: int = Field(
        default=3,
        ge=1,
        le=60,
        description="working days past the reply deadline before the supervisors are told "
        "(the department leader is told on the first overdue day)",
    )
    per_address_per_hour: int = Field(
        default=5, ge=1, description="public submissions (and status look-ups) per client address"
    )
    global_per_minute: int = Field(
        default=60, ge=1, description="public submissions from everyone together"
    )
    escalation_every_s: float = Field(default=300, ge=1, le=86400)


@dataclass(frozen=True, slots=True)
class Deadlines:
    ack_due: dt.date
    reply_due: dt.date


def deadlines(calendar: WorkCalendar, received: dt.date, config: ComplaintsConfig) -> Deadlines:
    """Due dates (inclusive: on time until that day ends) from the business date received."""
    return Deadlines(
        ack_due=calendar.add_workdays(received, config.ack_days),
        reply_due=calendar.add_workdays(received, config.reply_days),
    )


def ack_overdue(state: ComplaintState, ack_due: dt.date, today: dt.date) -> bool:
    return state is ComplaintState.PENDING and today > ack_due


def reply_overdue(state: ComplaintState, reply_due: dt.date, today: dt.date) -> bool:
    return state.open and today > reply_due


def escalation_level(
    calendar: WorkCalendar,
    state: ComplaintState,
    d: Deadlines,
    today: dt.date,
    config: ComplaintsConfig,
) -> int:
    """0: on time; 1: overdue (the department leader, or the triage queue's supervisors, are
    told); 2: the reply is ``escalate_after_days`` working days late (督办: the supervisors)."""
    if reply_overdue(state, d.reply_due, today):
        late = calendar.workdays_between(d.reply_due, today)
        return 2 if late >= config.escalate_after_days else 1
    return 1 if ack_overdue(state, d.ack_due, today) else 0


def answered_on_time(reply_due: dt.date, answered_on: dt.date | None) -> bool | None:
    """None while not answered."""
    return None if answered_on is None else answered_on <= reply_due


# ------------------------------------------------------------------------------ what people type

NO_NUL = r"^[^\x00]*$"
CASE_NO = r"^[A-Za-z0-9_\-]{1,64}$"
NUMBER = r"^TS[0-9]{16}$"
MOBILE = re.compile(r"^1[3-9][0-9]{9}$")
PHONE_PATTERN = r"^(1[3-9][0-9]{9}|0[0-9]{2,3}-?[0-9]{7,8})$"  # a mobile or a landline
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def _clean_text(value: str) -> str:
    """Control characters are refused; markup is kept as typed and escaped wherever shown."""
    if _CONTROL.search(value):
        raise ValueError("含有不可见控制字符 / contains control characters")
    return value.strip()


def _one_line(value: str) -> str:
    value = _clean_text(value)
    if "\n" in value or "\r" in value:
        raise ValueError("须为单行 / must be one line")
    return value


Text = Annotated[str, AfterValidator(_clean_text)]
Line = Annotated[str, AfterValidator(_one_line)]
MAX_TEXT = 2000


def is_mobile(phone: str | None) -> bool:
    return phone is not None and MOBILE.match(phone) is not None


class ComplaintIn(BaseModel):
    """What a complainant gives (the public form; staff entering a phone or counter
    complaint give the same). Only the text is required."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    text: Annotated[Text, Field(min_length=5, max_length=MAX_TEXT, description="投诉内容")]
    hall: Annotated[str | None, Field(default=None, pattern=f"^{ID_PATTERN}$")] = None
    window: Annotated[int | None, Field(default=None, ge=1, le=999, description="窗口号")] = None
    staff_name: Annotated[Line | None, Field(default=None, max_length=32)] = None
    staff_number: Annotated[str | None, Field(default=None, pattern=r"^[0-9]{6}$")] = None
    case_no: Annotated[str | None, Field(default=None, pattern=CASE_NO, description="办件编号")] = (
        None
    )
    day: dt.date | None = Field(default=None, description="the day it happened")
    name: Annotated[Line | None, Field(default=None, max_length=32, description="称呼")] = None
    phone: Annotated[str | None, Field(default=None, pattern=PHONE_PATTERN)] = None
    consent: bool = Field(default=False, description="同意通过短信/电话联系")

    @model_validator(mode="after")
    def _consistent(self) -> ComplaintIn:
        if self.consent and not self.phone:
            raise ValueError("同意联系须留电话 / consent to be contacted needs a phone number")
        check_day(self.day, business_date(utc_now()))
        return self


def check_day(day: dt.date | None, today: dt.date) -> None:
    """A day in the future or more than a year back is a typo."""
    if day is not None and not (today - dt.timedelta(days=366) <= day <= today):
        raise ValueError("日期须在一年内且不晚于今天 / the day must lie within the past year")


def mask_phone(phone: str | None) -> str | None:
    if not phone:
        return None
    digits = phone.replace("-", "")
    return digits[:3] + "****" + digits[-4:] if len(digits) >= 8 else "****"
