"""What the gaming detector reads and what it reports, as frozen dataclasses on plain values.

The detector is a pure function of ``Facts`` (one hall over one day or ISO week, plus the
hall's baseline); loading them from the database lives beside it. Times are UTC, as stored.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Literal, TypeAlias

PressRef = tuple[str, int]  # (gateway_id, seq): an evaluation's identity everywhere in central
PeriodKind = Literal["day", "week"]
JSONValue: TypeAlias = (
    str | int | float | bool | Sequence["JSONValue"] | Mapping[str, "JSONValue"] | None
)

KEYS = (1, 2, 3, 4, 5, 6)  # 非常满意, 基本满意, 服务态度不好, 办理时间太长, 业务不熟, 其他
GOOD_KEYS = frozenset({1, 2})
BAD_KEYS = frozenset({3, 4, 5, 6})


class Pattern(StrEnum):
    # 1. staff pressing for citizens (刷好评 without a camera)
    REGULAR_TIMING = "regular_timing"
    KEY_STREAK = "key_streak"
    PRESS_WITHOUT_CITIZEN = "press_without_citizen"
    INSTANT_PRESS = "instant_press"
    # 2. selective inviting
    SELECTIVE_INVITING = "selective_inviting"
    CANCELLED_INVITATIONS = "cancelled_invitations"
    LOW_EVALUATION_RATE = "low_evaluation_rate"
    # 3. 恶意差评
    MALICIOUS_SAME_APPLICANT = "malicious_same_applicant"
    MALICIOUS_ABANDONED_CASES = "malicious_abandoned_cases"
    CONTRADICTS_RECORD = "contradicts_record"
    # 4. distribution shifts
    DISTRIBUTION_SHIFT = "distribution_shift"


class InvitationEnd(StrEnum):
    """How an invitation to evaluate ended."""

    PRESSED = "pressed"  # a key answered it
    CLOSED = "closed"  # the next service started first (no key)
    CANCELLED = "cancelled"  # cancelled by staff or the device before any key
    TIMED_OUT = "timed_out"  # expired on the device


@dataclass(frozen=True, slots=True)
class Period:
    start: dt.date
    end: dt.date  # inclusive
    kind: PeriodKind

    @classmethod
    def day(cls, day: dt.date) -> Period:
        return cls(day, day, "day")

    @classmethod
    def iso_week(cls, any_day: dt.date) -> Period:
        monday = any_day - dt.timedelta(days=any_day.weekday())
        return cls(monday, monday + dt.timedelta(days=6), "week")


@dataclass(frozen=True, slots=True)
class PressFact:
    """One correlated evaluation (the current version of its correlation result)."""

    gateway_id: str
    seq: int
    hall_id: str
    business_day: dt.date
    window: int
    staff: str | None
    key: int  # 1..6
    at: dt.datetime
    session_id: str | None  # the service session it answered, if any
    invited: bool  # an invitation was open on the device when the key came
    seconds_after_invitation: float | None  # key time − invitation (FN) time
    flags: tuple[str, ...] = ()
    counted: bool = True
    case_nos: tuple[str, ...] = ()
    applicant_digests: tuple[str, ...] = ()  # of the tied cases, where known (salted, masked)
    citizen: str | None = None  # camera verdict: present | absent | unknown; None: no camera

    @property
    def ref(self) -> PressRef:
        return (self.gateway_id, self.seq)


@dataclass(frozen=True, slots=True)
class SessionFact:
    """One service session at a window (called → started → ended), from the queue."""

    session_id: str
    hall_id: str
    business_day: dt.date
    window: int | None
    staff: str | None
    service: str | None  # the queue category (comparable services share it)
    called_at: dt.datetime | None
    started_at: dt.datetime | None
    ended_at: dt.datetime | None
    next_call_at: dt.datetime | None  # the next ticket called at the same window
    overdue: bool = False  # a tied case ran (or runs) past its time limit
    invited: bool = False  # an evaluation was invited at its end (FN)
    invited_at: dt.datetime | None = None
    invitation_end: InvitationEnd | None = None
    case_nos: tuple[str, ...] = ()

    @property
    def duration_s(self) -> float | None:
        if self.started_at is None or self.ended_at is None:
            return None
        return (self.ended_at - self.started_at).total_seconds()


@dataclass(frozen=True, slots=True)
class CaseFact:
    """One case (办件) the period's evaluations or sessions touch."""

    case_no: str
    hall_id: str
    item_code: str
    department: str
    window: int | None
    staff: str | None
    applicant_digest: str | None  # salted SHA-256 of the applicant id; never the id itself
    accepted_at: dt.datetime
    completed_at: dt.datetime | None
    status: str  # CaseStatus value
    legal_days: int
    promised_days: int | None = None
    overdue: bool = False  # past its time limit (the ladder's verdict)
    on_site: bool | None = None  # 当场办结 / handled at the window; None: unknown
    complaint: bool | None = None  # a founded complaint on record; None: unknown
    abandoned: bool = False  # withdrawn (撤件) or never completed and given up


@dataclass(frozen=True, slots=True)
class KeyCounts:
    """Counts of keys 1..6 (index 0 is key 1)."""

    counts: tuple[int, int, int, int, int, int] = (0, 0, 0, 0, 0, 0)

    @property
    def total(self) -> int:
        return sum(self.counts)

    @classmethod
    def of(cls, keys: Sequence[int]) -> KeyCounts:
        c = [0] * 6
        for k in keys:
            c[k - 1] += 1
        return cls((c[0], c[1], c[2], c[3], c[4], c[5]))


@dataclass(frozen=True, slots=True)
class Baseline:
    """The hall's (or the province's) normal behaviour, from a longer window than the period.

    Empty mappings mean "unknown": the detector then compares each subject with the rest of
    its hall in the period itself.
    """

    keys: KeyCounts = KeyCounts()  # counted keys, all services
    keys_by_service: Mapping[str, KeyCounts] = field(default_factory=dict)
    seconds_after_invitation: tuple[float, ...] = ()  # a sample of invited delays
    sessions_by_service: Mapping[str, int] = field(default_factory=dict)
    evaluated_by_service: Mapping[str, int] = field(default_factory=dict)  # with a counted key
    days: int = 0  # business days it covers
    # invitations and how many were cancelled or timed out, per service
    invited_by_service: Mapping[str, int] = field(default_factory=dict)
    cancelled_by_service: Mapping[str, int] = field(default_factory=dict)
    presses: int = 0  # all presses
    idle_presses: int = 0  # of which with no citizen served (no session near, or camera: absent)


@dataclass(frozen=True, slots=True)
class Facts:
    """One hall over one period: everything the detector may look at."""

    hall_id: str
    period: Period
    presses: tuple[PressFact, ...] = ()
    sessions: tuple[SessionFact, ...] = ()
    cases: tuple[CaseFact, ...] = ()
    baseline: Baseline | None = None


@dataclass(frozen=True, slots=True)
class Anomaly:
    """One suspicion for review, with the evidence that made it."""

    pattern: Pattern
    hall_id: str
    window: int | None
    staff: str | None
    period: Period
    p_value: float | None
    effect: float
    effect_name: str  # e.g. "variance_ratio", "total_variation", "odds_ratio"
    method: str  # the test, in words (English)
    summary: str  # Chinese, one sentence, no personal data
    evidence: Mapping[str, JSONValue]  # presses [[gw, seq], …], sessions, cases, figures
    q_value: float | None = None  # Benjamini–Hochberg adjusted across the run, where tested

    @property
    def fingerprint(self) -> str:
        return fingerprint(
            self.pattern, self.hall_id, self.window, self.staff, self.period, self.evidence
        )


def fingerprint(
    pattern: Pattern,
    hall_id: str,
    window: int | None,
    staff: str | None,
    period: Period,
    evidence: Mapping[str, JSONValue],
) -> str:
    """A stable hash of what the anomaly is about: pattern, subject, period and the facts it
    names (press refs, sessions, cases), sorted so the order facts arrived in changes nothing.
    Figures (p-values, counts) are left out: a dismissed anomaly stays dismissed for the same
    facts even if a baseline moves."""
    refs = {
        name: sorted(json.dumps(item, sort_keys=True) for item in _items(evidence.get(name)))
        for name in ("presses", "sessions", "cases")
    }
    doc = {
        "pattern": pattern.value,
        "hall": hall_id,
        "window": window,
        "staff": staff,
        "period": [period.start.isoformat(), period.end.isoformat(), period.kind],
        "refs": refs,
    }
    text = json.dumps(doc, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def _items(value: JSONValue) -> list[JSONValue]:
    if value is None or isinstance(value, str | int | float | bool | Mapping):
        return []
    return list(value)
