"""Bodies of the device events a gateway journals (evaluators, queue machine, bus health).

Every body says which window it concerns and keeps the device's own raw bytes (hex) or line, so
that central can re-derive anything the gateway decided. Marks record what the gateway noticed
without dropping anything: central decides what counts.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from protocols.body import Body
from protocols.strict import (
    U32,
    Byte,
    Count,
    Fraction,
    Int64,
    MonoNs,
    Name,
    QueueMseq,
    RawHex,
    Text,
    Window,
    safe,
)

KeyMark = Literal[
    "NO_SESSION",  # SESSION 0: pressed while no invitation was open
    "UNKNOWN_SESSION",  # a session token this gateway has no record of giving
    "SESSION_REPEAT",  # a second key for a session that already had one
    "RETRANSMIT",  # the device sent this event again (our echo was lost or late)
]

KEY_LABELS: dict[int, str] = {
    1: "非常满意",
    2: "基本满意",
    3: "服务态度不好",
    4: "办理时间太长",
    5: "业务不熟",
    6: "其他",
}
STAFF_PATTERN = r"^[0-9]{6}$"
MAX_QM_LINE_CHARS = 1024  # the $QM bridge's longest line (bytes), so at most as many characters
QueueText = Annotated[str, safe(MAX_QM_LINE_CHARS)]


class _OnWindow(Body):
    window: Window = Field(description="window number (site configuration maps addresses)")
    addr: Byte = Field(description="evaluator bus address")


class Invitation(Body):
    """What the gateway knew when it invited the citizen to evaluate."""

    session: int = Field(ge=1, le=255)
    ticket: Name | None = None
    staff: str | None = Field(default=None, pattern=STAFF_PATTERN)
    invited_mono_ns: MonoNs
    qm_mseq: QueueMseq | None = Field(default=None, description="the FN message that caused it")


class EvaluatorKey(_OnWindow):
    """evaluator.key: a citizen's evaluation (one of the six keys)."""

    dev_seq: Byte
    key: int = Field(ge=1, le=6)
    label: Name
    session: Byte
    invitation: Invitation | None = None
    marks: list[KeyMark] = Field(default_factory=list, max_length=4)
    raw: RawHex = Field(description="the frame as received, hex")


class EvaluatorFault(_OnWindow):
    """evaluator.fault: a frame that is a hardware fault (a KEY value outside 1–6)."""

    reason: Text
    value: Int64 | None = None
    raw: RawHex


class EvaluatorInviteTimeout(_OnWindow):
    """evaluator.invite_timeout: the invitation closed with no key pressed."""

    dev_seq: Byte
    session: Byte
    invitation: Invitation | None = None
    marks: list[KeyMark] = Field(default_factory=list, max_length=4)
    raw: RawHex


ResetCause = Literal["power_on", "watchdog", "brown_out", "unknown"]
InviteStatus = Literal["ok", "busy", "bad_argument", "no_reply"]


class EvaluatorBoot(_OnWindow):
    """evaluator.boot: the device (re)started; its SEQ and any open invitation are gone."""

    fw: Name
    reset_cause: ResetCause
    marks: list[KeyMark] = Field(default_factory=list, max_length=4)
    raw: RawHex


class EvaluatorInvite(_OnWindow):
    """evaluator.invite: the gateway invited an evaluation after service finished."""

    invitation: Invitation
    timeout_s: int = Field(ge=1, le=255)
    status: InviteStatus


class EvaluatorInviteClosed(_OnWindow):
    """evaluator.invite_closed: the gateway closed an invitation still open on the device (and
    sent it CANCEL): the next service at the window started, or a new invitation replaced it.
    A key that still answers it (the press crossed the CANCEL) keeps its invitation; central
    judges it by time against the next service."""

    session: int = Field(ge=1, le=255)
    invitation: Invitation
    reason: Literal["next_service_started", "superseded"]
    ticket: Name | None = Field(default=None, description="the ticket whose service started")
    qm_mseq: QueueMseq | None = Field(default=None, description="the ST message that closed it")


class EvaluatorHealth(_OnWindow):
    """evaluator.health: online/offline and FLAGS changes (stuck key, display failure)."""

    online: bool
    stuck_key: bool = False
    display_failed: bool = False
    keys_disabled: bool = False
    fw: Name | None = None
    uptime_s: U32 | None = None
    key_count: U32 | None = None
    reason: Text = ""


class BusStats(Body):
    """bus.stats: counters of one serial line (garbage, invalid frames, callers' frames)."""

    port: Text
    device: Literal["ff68", "qm"]
    connected: bool
    counters: dict[Name, Int64 | Fraction | bool | None] = Field(max_length=64)


QueueType = Literal["TK", "CL", "RC", "ST", "FN", "NS", "TR", "LI", "LO", "PS", "RS", "HB"]


class QueueEvent(Body):
    """queue.event: one $QM message. ``machine_time`` is the machine's own (drifting) local
    clock, kept beside the gateway's receive time (the event's utc), never trusted alone."""

    mseq: QueueMseq
    type: QueueType
    ticket: Name | None = None
    service: Name | None = None
    service_name: QueueText | None = None
    window: Window | None = None
    to_service: Name | None = None
    staff: str | None = Field(default=None, pattern=STAFF_PATTERN)
    waiting: Count | None = None
    machine_time: Name | None = Field(default=None, description="YYYY-MM-DDThh:mm:ss local")
    raw: QueueText = Field(description="the line as received, made safe (see raw_hex)")
    raw_hex: RawHex | None = Field(
        default=None, description="the line's bytes, hex, when its text had to be made safe"
    )


class QueueFault(Body):
    """queue.fault: a well-formed $QM line the gateway cannot use (journaled raw, acked)."""

    mseq: Int64 | None = Field(
        default=None, ge=0, description="as the machine sent it, also when outside 1–999999"
    )
    reason: Text
    raw: QueueText = Field(description="the line as received, made safe (see raw_hex)")
    raw_hex: RawHex | None = Field(
        default=None, description="the line's bytes, hex, when its text had to be made safe"
    )


KINDS: dict[str, type[Body]] = {
    "evaluator.key": EvaluatorKey,
    "evaluator.fault": EvaluatorFault,
    "evaluator.invite_timeout": EvaluatorInviteTimeout,
    "evaluator.boot": EvaluatorBoot,
    "evaluator.invite": EvaluatorInvite,
    "evaluator.invite_closed": EvaluatorInviteClosed,
    "evaluator.health": EvaluatorHealth,
    "bus.stats": BusStats,
    "queue.event": QueueEvent,
    "queue.fault": QueueFault,
}
