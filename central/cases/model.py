"""A case (办件) as the approval system (审批系统) reports it, and the form central stores.

``CaseIn`` is the one validation shared by the API, the CSV import and the MQTT feed. Times
without an offset are Beijing time (what approval systems and Excel write); a time of day is
required. Error messages never repeat the value they refuse: a row may carry a phone or ID
number, and errors travel back to the sender and into logs.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from central.rules.indicators import CaseStatus
from central.rules.timelimit import CaseClock, Suspension
from central.rules.workdays import BUSINESS_TZ
from protocols.devices import STAFF_PATTERN
from protocols.topics import ID_PATTERN

# Unified case numbers (统一办件编码) are digits and letters with separators; a case number is
# also the API's id in a URL path, so nothing that needs escaping there.
CASE_NO_PATTERN = r"^[0-9A-Za-z][0-9A-Za-z_.:\-]{0,63}$"

# An approval system's clock may run a little ahead of ours; beyond this a reported time is in
# the future, which the ladder would otherwise record as having happened.
FUTURE_TOLERANCE = dt.timedelta(minutes=15)
EARLIEST_YEAR = 2000  # older dates are typos (0206-09-18), not cases
LATEST_YEAR = 2199
NO_NUL = r"^[^\x00]*$"  # PostgreSQL text cannot hold NUL; refuse it here, not at the INSERT

_LOOSE = re.compile(
    r"^(\d{4})[-/.年](\d{1,2})[-/.月](\d{1,2})日?"
    r"(?:[ T]+(\d{1,2})[:：时](\d{1,2})(?:[:：分](\d{1,2})(?:\.\d+)?秒?)?)?$"
)

# What approval systems call the states; the stored values are the indicators' CaseStatus.
STATUS_ALIASES: dict[str, CaseStatus] = {
    **{s.value: s for s in CaseStatus},
    "受理": CaseStatus.RUNNING,
    "已受理": CaseStatus.RUNNING,
    "在办": CaseStatus.RUNNING,
    "办理中": CaseStatus.RUNNING,
    "暂停": CaseStatus.SUSPENDED,
    "暂停计时": CaseStatus.SUSPENDED,
    "挂起": CaseStatus.SUSPENDED,
    "补正": CaseStatus.SUSPENDED,
    "特别程序": CaseStatus.SUSPENDED,
    "办结": CaseStatus.COMPLETED,
    "已办结": CaseStatus.COMPLETED,
    "准予许可": CaseStatus.COMPLETED,
    "不予许可": CaseStatus.COMPLETED,
    "撤件": CaseStatus.WITHDRAWN,
    "撤回": CaseStatus.WITHDRAWN,
    "终止": CaseStatus.WITHDRAWN,
}


_NEED_TIME = "需要具体时间（时:分） / a time of day is required, not only a date"


def parse_instant(value: Any) -> Any:
    """ISO 8601 or Excel's ``2026/9/18 10:00``; naive means Beijing time; a time is needed."""
    if isinstance(value, dt.datetime):
        moment = value
    elif isinstance(value, str):
        text = value.strip()
        if not text:
            return None
        m = _LOOSE.match(text)
        if m is not None:
            if m.group(4) is None:
                raise ValueError(_NEED_TIME)
            y, mo, d, h, mi = (int(m.group(i)) for i in range(1, 6))
            try:
                moment = dt.datetime(y, mo, d, h, mi, int(m.group(6) or 0))
            except ValueError:
                raise ValueError("日期或时间不存在 / no such date or time") from None
        else:
            try:
                moment = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
            except ValueError:
                raise ValueError(
                    "时间格式无法识别 / not a date and time (use 2026-09-18 10:00 or ISO 8601)"
                ) from None
    elif isinstance(value, dt.date):
        raise ValueError(_NEED_TIME)
    else:
        return value  # pydantic reports the wrong type
    if moment.tzinfo is None or moment.utcoffset() is None:
        moment = moment.replace(tzinfo=BUSINESS_TZ)
    if not EARLIEST_YEAR <= moment.year <= LATEST_YEAR:
        raise ValueError(f"年份不在 {EARLIEST_YEAR}–{LATEST_YEAR} 之间 / implausible year")
    return moment.astimezone(dt.UTC)


def _not_future(value: dt.datetime | None, info: ValidationInfo) -> dt.datetime | None:
    now = (info.context or {}).get("now")
    if value is not None and now is not None and value > now + FUTURE_TOLERANCE:
        raise ValueError("时间晚于当前时间 / lies in the future")
    return value


def _blank_to_none(value: Any) -> Any:
    return None if isinstance(value, str) and not value.strip() else value


Instant = Annotated[dt.datetime, BeforeValidator(parse_instant), AfterValidator(_not_future)]
OptionalInstant = Annotated[
    dt.datetime | None, BeforeValidator(parse_instant), AfterValidator(_not_future)
]
Text = Annotated[str, BeforeValidator(lambda v: v.strip() if isinstance(v, str) else v)]


def _status(value: Any) -> Any:
    if isinstance(value, str):
        key = value.strip()
        status = STATUS_ALIASES.get(key) or STATUS_ALIASES.get(key.lower())
        if status is None:
            known = "、".join(sorted(STATUS_ALIASES))
            raise ValueError(f"未知办件状态 / unknown status (one of: {known})")
        return status
    return value


class SuspensionIn(BaseModel):
    """A stopped clock (补正, 特别程序…); ``end`` empty while it lasts."""

    model_config = ConfigDict(extra="forbid")

    start: Instant = Field(description="暂停开始时间")
    end: OptionalInstant = Field(default=None, description="恢复计时时间; empty while suspended")
    reason: Text = Field(
        min_length=1, max_length=64, pattern=NO_NUL, description="e.g. 补正, 特别程序"
    )


class ApplicantIn(BaseModel):
    """Optional applicant data (申请人). Central keeps only a masked form and a salted digest."""

    model_config = ConfigDict(extra="forbid")

    name: Annotated[str | None, BeforeValidator(_blank_to_none)] = Field(
        default=None,
        max_length=100,
        pattern=NO_NUL,
        description="申请人姓名 / name of a person or organisation",
    )
    phone: Annotated[str | None, BeforeValidator(_blank_to_none)] = Field(
        default=None, description="联系电话: mobile or landline"
    )
    id_no: Annotated[str | None, BeforeValidator(_blank_to_none)] = Field(
        default=None, description="证件号码: resident ID, passport, permit or 统一社会信用代码"
    )
    sms_consent: bool = Field(
        default=False,
        description="同意接收办件进度短信: the applicant agreed to progress SMS at this "
        "mobile number (受理, 办结); central keeps the number only in the outbox message, "
        "erased once sent",
    )

    @field_validator("name")
    @classmethod
    def _name(cls, v: str | None) -> str | None:
        return v.strip() or None if v is not None else None

    @field_validator("phone")
    @classmethod
    def _phone(cls, v: str | None) -> str | None:
        return None if v is None else normalise_phone(v)

    @field_validator("id_no")
    @classmethod
    def _id_no(cls, v: str | None) -> str | None:
        return None if v is None else normalise_id(v)

    @property
    def empty(self) -> bool:
        return self.name is None and self.phone is None and self.id_no is None


_MOBILE = re.compile(r"^1[3-9]\d{9}$")
_LANDLINE = re.compile(r"^0\d{9,11}$")  # area code with its leading 0, then 7–8 digits
_RESIDENT_ID = re.compile(r"^\d{17}[\dX]$")
_OTHER_ID = re.compile(r"^[0-9A-Z]{5,30}$")
_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_ID_CHECK = "10X98765432"


def is_mobile(phone: str | None) -> bool:
    """A normalised number that can receive SMS (a landline cannot)."""
    return phone is not None and _MOBILE.match(phone) is not None


def normalise_phone(raw: str) -> str:
    digits = re.sub(r"[\s\-()（）]", "", raw)
    if digits.startswith("+86"):
        digits = digits[3:]
    elif digits.startswith("0086"):
        digits = digits[4:]
    if not (_MOBILE.match(digits) or _LANDLINE.match(digits)):
        raise ValueError("联系电话格式无效 / not a mobile (11 digits) or landline number")
    return digits


def normalise_id(raw: str) -> str:
    value = re.sub(r"\s", "", raw).upper()
    if re.match(r"^\d(\.\d+)?E\+?\d+$", value):
        raise ValueError(
            "证件号码被 Excel 转成了科学计数法，原号码已丢失：请将该列设为文本后重新导出"
            " / the ID number was turned into scientific notation by Excel and is lost"
        )
    if _RESIDENT_ID.match(value):
        total = sum(int(c) * w for c, w in zip(value[:17], _ID_WEIGHTS, strict=True))
        if _ID_CHECK[total % 11] != value[17]:
            raise ValueError("身份证号码校验位错误 / resident ID check digit is wrong")
        return value
    if not _OTHER_ID.match(value):
        raise ValueError("证件号码格式无效 / ID number must be 5–30 letters and digits")
    return value


class CaseIn(BaseModel):
    """One case as the approval system reports it (the same for API, CSV and MQTT)."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    case_no: str = Field(pattern=CASE_NO_PATTERN, description="办件编号 (unique; the API id)")
    item_code: str = Field(min_length=1, max_length=64, pattern=NO_NUL, description="事项编码")
    item_name: str = Field(min_length=1, max_length=200, pattern=NO_NUL, description="事项名称")
    department: str = Field(min_length=1, max_length=128, pattern=NO_NUL, description="实施部门")
    hall: str = Field(pattern=f"^{ID_PATTERN}$", description="大厅 id (as gateways use it)")
    window: Annotated[int | None, BeforeValidator(_blank_to_none)] = Field(
        default=None, ge=0, le=9999, description="窗口号; empty for a case accepted online (网办)"
    )
    staff: Annotated[str | None, BeforeValidator(_blank_to_none)] = Field(
        default=None, pattern=STAFF_PATTERN, description="受理人工号 (6 digits)"
    )
    accepted_at: Instant = Field(description="受理时间; without an offset: Beijing time")
    legal_days: int = Field(ge=0, le=3650, description="法定时限, working days")
    promised_days: Annotated[int | None, BeforeValidator(_blank_to_none)] = Field(
        default=None, ge=0, le=3650, description="承诺时限, working days (≤ 法定时限)"
    )
    completed_at: OptionalInstant = Field(default=None, description="办结时间")
    status: Annotated[CaseStatus, BeforeValidator(_status)] = Field(
        description="running 在办 | suspended 暂停计时 | completed 办结 | withdrawn 撤件 "
        "(the Chinese words are accepted too)"
    )
    suspensions: list[SuspensionIn] = Field(
        default_factory=list,
        max_length=100,
        description="补正 / 特别程序 periods in order; the clock stops while suspended",
    )
    applicant: ApplicantIn | None = Field(default=None, description="optional; stored masked")

    @model_validator(mode="after")
    def _coherent(self) -> CaseIn:
        if (self.status is CaseStatus.COMPLETED) != (self.completed_at is not None):
            raise ValueError(
                "办结状态与办结时间不一致 / completed_at must be given exactly when the status "
                "is completed"
            )
        open_ = [s for s in self.suspensions if s.end is None]
        if self.status is CaseStatus.SUSPENDED and not open_:
            raise ValueError(
                "状态为暂停计时，但没有未结束的暂停记录 / status suspended needs "
                "a suspension without an end"
            )
        if self.status is CaseStatus.RUNNING and open_:
            raise ValueError(
                "存在未结束的暂停记录，状态应为暂停计时 / an open suspension needs status suspended"
            )
        self.clock()  # the ladder's own checks: limits, order, suspensions inside the case
        return self

    def clock(self) -> CaseClock:
        return CaseClock(
            accepted_at=self.accepted_at,
            legal_days=self.legal_days,
            promised_days=self.promised_days,
            completed_at=self.completed_at,
            suspensions=tuple(
                Suspension(start=s.start, end=s.end, reason=s.reason) for s in self.suspensions
            ),
        )


@dataclass(frozen=True, slots=True)
class RowError:
    """Why one row was refused: ``where`` is a batch index or a CSV line number."""

    where: int
    case_no: str | None
    reasons: tuple[str, ...]

    def __str__(self) -> str:
        who = f" {self.case_no}" if self.case_no else ""
        return f"{self.where}{who}: " + "; ".join(self.reasons)


def describe(exc: ValidationError) -> tuple[str, ...]:
    """Readable reasons without the refused values (``input`` is never included)."""
    out = []
    for err in exc.errors(include_input=False, include_url=False):
        loc = ".".join(str(p) for p in err["loc"]) or "(row)"
        msg = err["msg"].removeprefix("Value error, ")
        out.append(f"{loc}: {msg}")
    return tuple(out)


def validate_row(row: Any, *, now: dt.datetime | None = None) -> CaseIn:
    """Validate one row (a mapping); raises ValidationError. ``now`` refuses future times."""
    return CaseIn.model_validate(row, context={"now": now})


def case_no_of(row: Any) -> str | None:
    """The row's case number, when it has a plausible one (to name it in an error)."""
    if isinstance(row, dict):
        value = row.get("case_no")
        if isinstance(value, str) and re.match(CASE_NO_PATTERN, value.strip()):
            return value.strip()
    return None
