"""Correlation: tie every evaluation (evaluator.key) to its service session and case(s), with
a confidence, flags and whether it counts. Pure and deterministic: the same inputs always give
the same output, whatever order they come in. The rules are spelled out in README.md beside
this file; the comments here name them.
"""

from __future__ import annotations

import datetime as dt
import heapq
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from enum import StrEnum
from itertools import groupby, pairwise
from typing import Any, TypeVar

from central.correlation.caseties import CaseTie, tie_cases
from central.correlation.config import CorrelationConfig
from central.correlation.model import (
    CaseInfo,
    CitizenVerdict,
    EventId,
    InvitationInfo,
    InviteRecord,
    Press,
    TimeSource,
    Verdict,
)
from central.correlation.sessions import Outcome, PresencePeriod, ServiceSession

DEFAULT_CONFIG = CorrelationConfig()


class Flag(StrEnum):
    ORPHAN = "ORPHAN"  # no service session to belong to
    OUT_OF_SESSION = "OUT_OF_SESSION"  # no invitation known to the gateway or to central
    DUPLICATE = "DUPLICATE"  # its session (and so its cases) already has a kept evaluation
    LATE = "LATE"  # answers an invitation after the next service at that window started
    RAPID_REPEAT = "RAPID_REPEAT"  # pressed within rapid_repeat_s of the device's previous press
    SELF_PRESS_SUSPECTED = "SELF_PRESS_SUSPECTED"  # the camera saw no citizen at the window
    CASE_AMBIGUOUS = "CASE_AMBIGUOUS"  # a case of its service could as well be another's


# A flagged evaluation is not counted for 满意率 if it carries any of these. RAPID_REPEAT and
# CASE_AMBIGUOUS (a doubt about which cases, not about the evaluation) exclude nothing: the
# repeat of a kept press is already OUT_OF_SESSION or DUPLICATE, and a press that answers an
# open invitation stays the citizen's own evaluation however soon it follows an earlier (stray)
# press.
EXCLUDING = frozenset(
    {Flag.ORPHAN, Flag.OUT_OF_SESSION, Flag.DUPLICATE, Flag.LATE, Flag.SELF_PRESS_SUSPECTED}
)
# The flags that keep a press from being the one its session keeps (一事一评 keeps the first
# press that is otherwise sound; DUPLICATE is what the others get).
_NOT_KEEPABLE = EXCLUDING - {Flag.DUPLICATE}


class Basis(StrEnum):
    """How the session was found."""

    INVITATION = "invitation"  # the key carried the gateway's invitation; FN matched by mseq
    INVITATION_TICKET = "invitation_ticket"  # … matched by ticket number only
    INVITE_RECORD = "invite_record"  # UNKNOWN_SESSION: central's own evaluator.invite record
    INVITE_RECORD_TICKET = "invite_record_ticket"
    IN_SERVICE = "in_service"  # no invitation: pressed during a service at that window
    AFTER_SERVICE = "after_service"  # no invitation: soon after one ended, nobody called since
    NONE = "none"


BASE_CONFIDENCE: Mapping[Basis, float] = {
    Basis.INVITATION: 1.0,
    Basis.INVITATION_TICKET: 0.9,
    Basis.INVITE_RECORD: 0.9,
    Basis.INVITE_RECORD_TICKET: 0.8,
    Basis.IN_SERVICE: 0.6,
    Basis.AFTER_SERVICE: 0.5,
    Basis.NONE: 0.0,
}
_BY_TIME = frozenset({Basis.IN_SERVICE, Basis.AFTER_SERVICE})
_INVITED = frozenset(
    {Basis.INVITATION, Basis.INVITATION_TICKET, Basis.INVITE_RECORD, Basis.INVITE_RECORD_TICKET}
)
UNSYNCED_FACTOR = 0.5  # a time-based match on a clock nobody could repair
LATE_FACTOR = 0.8  # the person pressing may already be the next citizen
CASE_TOLERANCE_FACTOR = 0.9  # a case tied from outside its session's interval
CASE_AMBIGUITY_FACTOR = 0.7  # a case of the session could as well belong to another one


@dataclass(frozen=True, slots=True)
class Correlation:
    gateway: str
    seq: int
    hall: str
    window: int
    addr: int
    dev_seq: int
    key: int
    evaluated_at: dt.datetime
    time_source: TimeSource
    session_id: str | None
    ticket: str | None
    staff: str | None
    case_nos: tuple[str, ...]
    confidence: float
    flags: tuple[Flag, ...]  # sorted
    counted: bool
    basis: Basis
    citizen: CitizenVerdict | None = None

    @property
    def id(self) -> EventId:
        return (self.gateway, self.seq)

    def content(self) -> dict[str, Any]:
        """The fields a new version is issued for when any of them changes (JSON-able)."""
        return {
            "hall": self.hall,
            "window": self.window,
            "addr": self.addr,
            "dev_seq": self.dev_seq,
            "key": self.key,
            "evaluated_at": self.evaluated_at.astimezone(dt.UTC).isoformat(),
            "time_source": self.time_source.value,
            "session_id": self.session_id,
            "ticket": self.ticket,
            "staff": self.staff,
            "case_nos": list(self.case_nos),
            "confidence": self.confidence,
            "flags": [f.value for f in self.flags],
            "counted": self.counted,
            "basis": self.basis.value,
            "citizen": self.citizen,
        }


@dataclass(frozen=True, slots=True)
class CorrelationDay:
    results: tuple[Correlation, ...]  # by (gateway, seq)
    sessions: tuple[ServiceSession, ...]  # the input sessions with their case_nos filled in
    ties: Mapping[str, CaseTie]  # case_no → its session


T = TypeVar("T")


def receive_order(
    items: Iterable[T],
    gateway: Callable[[T], str],
    seq: Callable[[T], int],
    at: Callable[[T], dt.datetime],
) -> Iterator[T]:
    """Seq order within a gateway (its journal order), gateways merged by time."""
    ordered = sorted(items, key=lambda i: (gateway(i), seq(i)))
    return heapq.merge(*(list(g) for _, g in groupby(ordered, key=gateway)), key=at)


def _interval(s: ServiceSession) -> tuple[dt.datetime, dt.datetime | None]:
    start = s.service_start
    assert start is not None
    return start, s.ended_at  # None: still open, as far as the data goes


class _Index:
    """Sessions by window, invitations by device, for one hall-day."""

    def __init__(
        self,
        sessions: Sequence[ServiceSession],
        invites: Iterable[InviteRecord],
        presence: Iterable[PresencePeriod],
        cfg: CorrelationConfig,
    ) -> None:
        self.cfg = cfg
        self.late_grace = dt.timedelta(seconds=cfg.late_grace_s)
        self.by_window: dict[int, list[ServiceSession]] = defaultdict(list)
        for s in sorted(sessions, key=lambda s: s.session_id):
            if s.window is not None and s.served:
                self.by_window[s.window].append(s)
        self.invites: dict[tuple[str, int, int], list[InviteRecord]] = defaultdict(list)
        for inv in invites:
            if inv.status == "ok":
                self.invites[(inv.gateway, inv.addr, inv.invitation.token)].append(inv)
        self.presence: dict[int, list[PresencePeriod]] = defaultdict(list)
        for p in presence:
            self.presence[p.window].append(p)

    def by_invitation(
        self, window: int, inv: InvitationInfo, at: dt.datetime
    ) -> tuple[ServiceSession | None, bool]:
        """The finished session whose FN caused the invitation: by the FN's mseq, else by
        ticket; the latest one finished before the press. Returns (session, matched by mseq)."""
        slack = dt.timedelta(seconds=self.cfg.invite_slack_s)
        finished = [
            s
            for s in self.by_window.get(window, ())
            if s.outcome is Outcome.FINISHED and s.ended_at is not None and s.ended_at <= at + slack
        ]
        if inv.qm_mseq is not None:
            hits = [
                s
                for s in finished
                if s.finish_mseq == inv.qm_mseq and (inv.ticket is None or s.ticket == inv.ticket)
            ]
            if hits:
                return max(hits, key=_ended_key), True
        if inv.ticket is not None:
            hits = [s for s in finished if s.ticket == inv.ticket]
            if hits:
                return max(hits, key=_ended_key), False
        return None, False

    def invite_record(self, p: Press) -> InviteRecord | None:
        """UNKNOWN_SESSION: central's record of an invitation with this token on this device,
        made before the press and still open (its timeout plus slack) when it was pressed."""
        slack = dt.timedelta(seconds=self.cfg.invite_slack_s)
        hits = [
            inv
            for inv in self.invites.get((p.gateway, p.addr, p.token), ())
            if inv.at <= p.at + slack
            and p.at - inv.at <= dt.timedelta(seconds=inv.timeout_s) + slack
        ]
        return max(hits, key=lambda i: (i.at, i.seq)) if hits else None

    def by_time(self, window: int, at: dt.datetime) -> tuple[ServiceSession | None, Basis]:
        inside = []
        after = []
        limit = dt.timedelta(seconds=self.cfg.after_service_s)
        for s in self.by_window.get(window, ()):
            start, end = _interval(s)
            if start <= at and (end is None or at < end):
                inside.append(s)
            elif (
                end is not None
                and end <= at
                and at - end <= limit
                and not _taken_over(s, at, self.late_grace)
            ):
                after.append(s)
        if inside:
            return max(inside, key=lambda s: (_interval(s)[0], s.session_id)), Basis.IN_SERVICE
        if after:
            return max(after, key=_ended_key), Basis.AFTER_SERVICE
        return None, Basis.NONE

    def staff_at(self, window: int, at: dt.datetime) -> str | None:
        present = sorted({p.staff for p in self.presence.get(window, ()) if p.start <= at <= p.end})
        return present[0] if len(present) == 1 else None


def _taken_over(s: ServiceSession, at: dt.datetime, late_grace: dt.timedelta) -> bool:
    """The next citizen may be the one at the evaluator: the window's next service started
    (or, when it never starts, late_grace passed since its call)."""
    until = s.belongs_until(late_grace)
    return until is not None and at > until


def _ended_key(s: ServiceSession) -> tuple[dt.datetime, str]:
    assert s.ended_at is not None
    return s.ended_at, s.session_id


def _rapid_repeats(presses: Sequence[Press], cfg: CorrelationConfig) -> set[EventId]:
    """Presses within rapid_repeat_s of the previous press on the same device; measured on the
    gateway's monotonic clock within one boot (immune to clock steps), else on event time."""
    out: set[EventId] = set()
    by_device: dict[tuple[str, int], list[Press]] = defaultdict(list)
    for p in presses:
        by_device[(p.gateway, p.addr)].append(p)
    for device in by_device.values():
        device.sort(key=lambda p: p.seq)
        for prev, cur in pairwise(device):
            if prev.boot == cur.boot:
                gap = (cur.mono_ns - prev.mono_ns) / 1e9
            else:
                gap = (cur.at - prev.at).total_seconds()
            if 0 <= gap < cfg.rapid_repeat_s:
                out.add(cur.id)
    return out


def _verdicts(
    presses: Sequence[Press], verdicts: Iterable[Verdict], cfg: CorrelationConfig
) -> dict[EventId, Verdict]:
    """A verdict belongs to the press on the same device with its dev_seq (which wraps at 255,
    hence the time window), the nearest in time."""
    by_device: dict[tuple[str, int, int], list[Verdict]] = defaultdict(list)
    for v in verdicts:
        by_device[(v.gateway, v.addr, v.dev_seq)].append(v)
    window = dt.timedelta(seconds=cfg.verdict_window_s)
    out: dict[EventId, Verdict] = {}
    for p in presses:
        near = [
            v
            for v in by_device.get((p.gateway, p.addr, p.dev_seq), ())
            if abs(v.at - p.at) <= window
        ]
        if near:
            out[p.id] = min(near, key=lambda v: (abs(v.at - p.at), -v.seq))
    return out


@dataclass
class _Draft:
    press: Press
    session: ServiceSession | None
    basis: Basis
    invitation: InvitationInfo | None
    flags: set[Flag]
    citizen: CitizenVerdict | None


def correlate(
    hall: str,
    sessions: Sequence[ServiceSession],
    presses: Iterable[Press],
    *,
    invites: Iterable[InviteRecord] = (),
    cases: Iterable[CaseInfo] = (),
    verdicts: Iterable[Verdict] = (),
    presence: Iterable[PresencePeriod] = (),
    cfg: CorrelationConfig = DEFAULT_CONFIG,
) -> CorrelationDay:
    """One Correlation per press (device retransmissions must already be left out)."""
    ties = tie_cases(hall, sessions, cases, cfg)
    session_cases: dict[str, list[str]] = defaultdict(list)
    for tie in ties.values():
        session_cases[tie.session_id].append(tie.case_no)
    sessions = tuple(
        s if s.session_id not in session_cases else _with_cases(s, session_cases[s.session_id])
        for s in sessions
    )
    index = _Index(sessions, invites, presence, cfg)
    press_list = sorted(presses, key=lambda p: (p.gateway, p.seq))
    rapid = _rapid_repeats(press_list, cfg)
    seen = _verdicts(press_list, verdicts, cfg)
    late_grace = dt.timedelta(seconds=cfg.late_grace_s)
    # services whose cases are in doubt: the chosen one of an ambiguous tie and its rivals
    in_doubt = {
        sid
        for tie in ties.values()
        if tie.ambiguous
        for sid in (tie.session_id, *tie.ambiguous_with)
    }

    drafts: list[_Draft] = []
    for p in press_list:
        session, basis, invitation = _resolve(index, p)
        flags: set[Flag] = set()
        if session is None:
            flags.add(Flag.ORPHAN)
        if invitation is None:
            flags.add(Flag.OUT_OF_SESSION)
        if session is not None and basis in _INVITED and _taken_over(session, p.at, late_grace):
            flags.add(Flag.LATE)
        if p.id in rapid:
            flags.add(Flag.RAPID_REPEAT)
        if session is not None and session.session_id in in_doubt:
            flags.add(Flag.CASE_AMBIGUOUS)
        verdict = seen.get(p.id)
        if verdict is not None and verdict.verdict == "absent":
            flags.add(Flag.SELF_PRESS_SUSPECTED)
        drafts.append(
            _Draft(
                p,
                session,
                basis,
                invitation,
                flags,
                verdict.verdict if verdict is not None else None,
            )
        )

    kept = _keep_first(drafts)
    results = tuple(_finish(d, d.press.id in kept, hall, ties, index) for d in drafts)
    return CorrelationDay(results, sessions, ties)


def _with_cases(s: ServiceSession, case_nos: list[str]) -> ServiceSession:
    return replace(s, case_nos=tuple(sorted(case_nos)))


def _resolve(index: _Index, p: Press) -> tuple[ServiceSession | None, Basis, InvitationInfo | None]:
    if p.invitation is not None and "UNKNOWN_SESSION" not in p.marks:
        session, by_mseq = index.by_invitation(p.window, p.invitation, p.at)
        basis = Basis.INVITATION if by_mseq else Basis.INVITATION_TICKET
        return session, basis if session is not None else Basis.NONE, p.invitation
    if p.token != 0:
        record = index.invite_record(p)
        if record is not None:
            session, by_mseq = index.by_invitation(record.window, record.invitation, p.at)
            basis = Basis.INVITE_RECORD if by_mseq else Basis.INVITE_RECORD_TICKET
            return session, basis if session is not None else Basis.NONE, record.invitation
    session, basis = index.by_time(p.window, p.at)
    return session, basis, None


def _keep_first(drafts: Sequence[_Draft]) -> set[EventId]:
    """一事一评: per session, the first press in receive order that is otherwise sound is kept;
    every press of that session after it is DUPLICATE (presses before it keep their own flags)."""
    by_session: dict[str, list[_Draft]] = defaultdict(list)
    for d in drafts:
        if d.session is not None:
            by_session[d.session.session_id].append(d)
    kept: set[EventId] = set()
    for group in by_session.values():
        ordered = list(
            receive_order(
                group, lambda d: d.press.gateway, lambda d: d.press.seq, lambda d: d.press.at
            )
        )
        first = next((i for i, d in enumerate(ordered) if not d.flags & _NOT_KEEPABLE), None)
        if first is None:
            continue
        kept.add(ordered[first].press.id)
        for d in ordered[first + 1 :]:
            d.flags.add(Flag.DUPLICATE)
    return kept


def _finish(
    d: _Draft, kept: bool, hall: str, ties: Mapping[str, CaseTie], index: _Index
) -> Correlation:
    p, s = d.press, d.session
    case_nos = s.case_nos if s is not None else ()
    confidence = BASE_CONFIDENCE[d.basis]
    if d.basis in _BY_TIME and p.time_source is TimeSource.UNSYNCED:
        confidence *= UNSYNCED_FACTOR
    if Flag.LATE in d.flags:
        confidence *= LATE_FACTOR
    if any(ties[c].distance_s > 0 for c in case_nos):
        confidence *= CASE_TOLERANCE_FACTOR
    if Flag.CASE_AMBIGUOUS in d.flags:
        confidence *= CASE_AMBIGUITY_FACTOR
    ticket: str | None
    staff: str | None
    if s is not None:
        ticket, staff = s.ticket, s.staff
    elif d.invitation is not None:
        ticket, staff = d.invitation.ticket, d.invitation.staff
    else:
        ticket, staff = None, index.staff_at(p.window, p.at)
    if staff is None and d.invitation is not None:
        staff = d.invitation.staff
    return Correlation(
        gateway=p.gateway,
        seq=p.seq,
        hall=hall,
        window=p.window,
        addr=p.addr,
        dev_seq=p.dev_seq,
        key=p.key,
        evaluated_at=p.at,
        time_source=p.time_source,
        session_id=s.session_id if s is not None else None,
        ticket=ticket,
        staff=staff,
        case_nos=case_nos,
        confidence=round(confidence, 3),
        flags=tuple(sorted(d.flags)),
        counted=kept and not d.flags & EXCLUDING,
        basis=d.basis,
        citizen=d.citizen,
    )


__all__ = [
    "BASE_CONFIDENCE",
    "EXCLUDING",
    "Basis",
    "CaseTie",
    "Correlation",
    "CorrelationDay",
    "Flag",
    "correlate",
    "receive_order",
    "tie_cases",
]
