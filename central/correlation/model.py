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

from central.store.clockfix import corrected_utc

EventId = tuple[str, int]  # (gateway, seq): an event's identity everywhere in central


class TimeSource(StrEnum):
    SYNCED = "synced"  # the gateway's clock was NTP-synchronised
    REPAIRED = "repaired"  # unsynchronised stamp corrected from the boot's offset
    UNSYNCED = "unsynced"  # no offset known (yet): the stamp as the gateway wrote it
    MACHINE = "machine_offset"  # a queue message received late: the machine's clock + offset


def event_time(utc: dt.datetime, synced: bool, mono_ns: int, offset_us: int | None
               ) -> tuple[dt.datetime, TimeSource]:
    if synced:
        return utc, TimeSource.SYNCED
    repaired = corrected_utc(utc, synced, mono_ns, offset_us)
    if repaired is None:
        return utc, TimeSource.UNSYNCED
    return repaired, TimeSource.REPAIRED


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
    def from_body(cls, gateway: str, seq: int, at: dt.datetime, body: dict[str, Any],
                  time_source: TimeSource = TimeSource.SYNCED) -> QueueRecord:
        return cls(gateway=gateway, seq=seq, at=at, mseq=body["mseq"], type=body["type"],
                   ticket=body.get("ticket"), window=body.get("window"),
                   staff=body.get("staff"), service=body.get("service"),
                   to_service=body.get("to_service"), machine_time=body.get("machine_time"),
                   raw=body.get("raw", ""), time_source=time_source)


@dataclass(frozen=True, slots=True)
class InvitationInfo:
    """What the gateway knew when it invited the evaluation (protocols.devices.Invitation)."""

    token: int
    ticket: str | None
    staff: str | None
    qm_mseq: int | None

    @classmethod
    def from_body(cls, body: dict[str, Any] | None) -> InvitationInfo | None:
        if body is None:
            return None
        return cls(token=body["session"], ticket=body.get("ticket"), staff=body.get("staff"),
                   qm_mseq=body.get("qm_mseq"))


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
    def from_body(cls, gateway: str, seq: int, at: dt.datetime, time_source: TimeSource,
                  boot: str, mono_ns: int, body: dict[str, Any]) -> Press:
        return cls(gateway=gateway, seq=seq, at=at, time_source=time_source, boot=boot,
                   mono_ns=mono_ns, window=body["window"], addr=body["addr"],
                   dev_seq=body["dev_seq"], key=body["key"], token=body["session"],
                   invitation=InvitationInfo.from_body(body.get("invitation")),
                   marks=frozenset(body.get("marks", ())))


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
    def from_body(cls, gateway: str, seq: int, at: dt.datetime, body: dict[str, Any]
                  ) -> InviteRecord:
        invitation = InvitationInfo.from_body(body["invitation"])
        assert invitation is not None
        return cls(gateway=gateway, seq=seq, at=at, window=body["window"], addr=body["addr"],
                   invitation=invitation, timeout_s=body["timeout_s"], status=body["status"])


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
    def from_body(cls, gateway: str, seq: int, at: dt.datetime, body: dict[str, Any]
                  ) -> Verdict | None:
        try:
            verdict = body["verdict"]
            if verdict not in ("present", "absent", "unknown"):
                return None
            return cls(gateway=gateway, seq=seq, at=at, window=int(body["window"]),
                       addr=int(body["addr"]), dev_seq=int(body["dev_seq"]), verdict=verdict,
                       confidence=float(body.get("confidence", 0.0)),
                       snapshot_sha256=body.get("snapshot_sha256"))
        except (KeyError, TypeError, ValueError):
            return None  # a malformed body from a future kind: no verdict, never a crash
