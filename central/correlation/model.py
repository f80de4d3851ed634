"""Typed inputs of session building and correlation, decoded from stored events.

Every time here is the event time central trusts (``event_time``): the gateway's wall clock
when it was synchronised, else repaired from the same boot's later synchronised events, else
(the boot never synchronised, or its synchronised events have not arrived yet) the gateway's
stamp as it was, marked ``unsynced``. A queue message the gateway received late (the machine's
resend after an outage) is placed by the machine's own clock instead (``machine_clock``).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Literal

from pydantic import ValidationError

from central.store.clockfix import corrected_utc
from protocols.camera import CameraVerdict
from protocols.devices import EvaluatorInvite, EvaluatorKey, Invitation, QueueEvent
from protocols.strict import stamp_plausible

EventId = tuple[str, int]  # (gateway, seq): an event's identity everywhere in central


class TimeSource(StrEnum):
    SYNCED = "synced"  # the gateway's clock was NTP-synchronised
    REPAIRED = "repaired"  # unsynchronised stamp corrected from the boot's offset
    UNSYNCED = "unsynced"  # no offset known (yet): the stamp as the gateway wrote it
    MACHINE = "machine_offset"  # a queue message received late: the machine's clock + offset
    IMPLAUSIBLE = "implausible"  # the (repaired) stamp is far from the receive time: received_at


def event_time(
    utc: dt.datetime,
    synced: bool,
    mono_ns: int,
    offset_us: int | None,
    received_at: dt.datetime | None = None,
) -> tuple[dt.datetime, TimeSource]:
    if synced:
        at, source = utc, TimeSource.SYNCED
    else:
        repaired = corrected_utc(utc, synced, mono_ns, offset_us)
        if repaired is None:
            return utc, TimeSource.UNSYNCED
        at, source = repaired, TimeSource.REPAIRED
    if received_at is not None and not stamp_plausible(at, received_at):
        # a clock far off is recorded (the stamp stays stored as sent); rules use the receive
        # time, so one wrong clock cannot put a press in another year
        return received_at, TimeSource.IMPLAUSIBLE
    return at, source


def event_key(gateway: str, seq: int) -> str:
    return f"{gateway}:{seq}"


@dataclass(frozen=True, slots=True)
class QueueRecord:
    """One queue.event ($QM message) as journaled by a gateway."""

    gateway: str
    seq: int
    at: dt.datetime
    mseq: int
    type: str
    ticket: str | None = None
    window: int | None = None
    staff: str | None = None
    service: str | None = None
    to_service: str | None = None
    machine_time: str | None = None
    raw: str = ""
    time_source: TimeSource = TimeSource.SYNCED

    @classmethod
    def from_body(
        cls,
        gateway: str,
        seq: int,
        at: dt.datetime,
        body: dict[str, Any],
        time_source: TimeSource = TimeSource.SYNCED,
    ) -> QueueRecord:
        q = QueueEvent.model_validate(body)
        return cls(
            gateway=gateway,
            seq=seq,
            at=at,
            mseq=q.mseq,
            type=q.type,
            ticket=q.ticket,
            window=q.window,
            staff=q.staff,
            service=q.service,
            to_service=q.to_service,
            machine_time=q.machine_time,
            raw=q.raw,
            time_source=time_source,
        )


@dataclass(frozen=True, slots=True)
class InvitationInfo:
    """What the gateway knew when it invited the evaluation (protocols.devices.Invitation)."""

    token: int
    ticket: str | None
    staff: str | None
    qm_mseq: int | None

    @classmethod
    def from_model(cls, invitation: Invitation | None) -> InvitationInfo | None:
        if invitation is None:
            return None
        return cls(
            token=invitation.session,
            ticket=invitation.ticket,
            staff=invitation.staff,
            qm_mseq=invitation.qm_mseq,
        )


@dataclass(frozen=True, slots=True)
class Press:
    """One evaluator.key event that is not a device retransmission."""

    gateway: str
    seq: int
    at: dt.datetime
    time_source: TimeSource
    boot: str
    mono_ns: int
    window: int
    addr: int
    dev_seq: int
    key: int
    token: int  # the SESSION byte: 0 = no invitation open on the device
    invitation: InvitationInfo | None
    marks: frozenset[str]

    @property
    def id(self) -> EventId:
        return (self.gateway, self.seq)

    @classmethod
    def from_body(
        cls,
        gateway: str,
        seq: int,
        at: dt.datetime,
        time_source: TimeSource,
        boot: str,
        mono_ns: int,
        body: dict[str, Any],
    ) -> Press:
        k = EvaluatorKey.model_validate(body)
        return cls(
            gateway=gateway,
            seq=seq,
            at=at,
            time_source=time_source,
            boot=boot,
            mono_ns=mono_ns,
            window=k.window,
            addr=k.addr,
            dev_seq=k.dev_seq,
            key=k.key,
            token=k.session,
            invitation=InvitationInfo.from_model(k.invitation),
            marks=frozenset(k.marks),
        )


@dataclass(frozen=True, slots=True)
class InviteRecord:
    """One evaluator.invite event: the gateway asked a device to invite an evaluation."""

    gateway: str
    seq: int
    at: dt.datetime
    window: int
    addr: int
    invitation: InvitationInfo
    timeout_s: int
    status: str

    @classmethod
    def from_body(
        cls, gateway: str, seq: int, at: dt.datetime, body: dict[str, Any]
    ) -> InviteRecord:
        invite = EvaluatorInvite.model_validate(body)
        invitation = InvitationInfo.from_model(invite.invitation)
        assert invitation is not None
        return cls(
            gateway=gateway,
            seq=seq,
            at=at,
            window=invite.window,
            addr=invite.addr,
            invitation=invitation,
            timeout_s=invite.timeout_s,
            status=invite.status,
        )


@dataclass(frozen=True, slots=True)
class CaseInfo:
    """What correlation needs of a case (办件)."""

    case_no: str
    hall: str
    window: int | None
    staff: str | None
    accepted_at: dt.datetime
    department: str
    item_code: str | None = None  # 事项编码: which queue category (service) it is served in
    applicant: str | None = None  # salted digest of the applicant's id: 一次办多件 shares it


CitizenVerdict = Literal["present", "absent", "unknown"]


@dataclass(frozen=True, slots=True)
class Verdict:
    """camera.verdict: was a citizen at the window when the key was pressed?"""

    gateway: str
    seq: int
    at: dt.datetime
    window: int
    addr: int
    dev_seq: int
    verdict: CitizenVerdict
    confidence: float
    snapshot_sha256: str | None = None

    @classmethod
    def from_body(
        cls, gateway: str, seq: int, at: dt.datetime, body: dict[str, Any]
    ) -> Verdict | None:
        try:
            v = CameraVerdict.model_validate(body)
        except ValidationError:
            return None  # a malformed body from a future kind: no verdict, never a crash
        return cls(
            gateway=gateway,
            seq=seq,
            at=at,
            window=v.window,
            addr=v.addr,
            dev_seq=v.dev_seq,
            verdict=v.verdict,
            confidence=v.confidence,
            snapshot_sha256=v.snapshot_sha256,
        )
