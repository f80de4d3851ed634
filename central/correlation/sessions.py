"""Service sessions and staff presence from one hall's queue feed for one business day.

Pure. Order is the gateway's receive order (its journal seq), never the queue machine's clock.
Times and durations come from the gateway's corrected receive times (``model.event_time``),
except for messages the gateway received late (the machine's resend after an outage), which
the store has placed by the machine's clock and its learned offset (``machine_clock``); each
stage says which (``time_sources``: receive | machine_offset), the machine's own reading is kept
beside it (``machine_times``). A hall with several gateways feeding
queue events is merged gateway by gateway in seq order, across gateways by time.

A session is one service of one ticket at one window: called (CL) → recalled (RC) → started
(ST) → finished (FN) / no-show (NS) / transferred (TR). A transferred ticket waits again in its
new queue and its next call opens a second session, whose ``queued_at`` is the transfer. The
$QM feed's own repeats (same mseq, same line) count once.

Presence (在岗) at a window: from LI or RS (or the person's first ST/FN there without either)
to LO, PS, the same person appearing at another window, or the end of the data.
"""

from __future__ import annotations

import datetime as dt
import heapq
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from itertools import groupby

from central.correlation.model import QueueRecord, TimeSource, event_key

_SERVICE_TYPES = frozenset({"CL", "RC", "ST", "FN", "NS", "TR"})
_ENDING = {"FN": "finished", "NS": "no_show", "TR": "transferred"}


class Outcome(StrEnum):
    FINISHED = "finished"
    NO_SHOW = "no_show"  # 过号: called, never came
    TRANSFERRED = "transferred"  # 转窗: ended here, waits in another queue
    INTERRUPTED = "interrupted"  # the window went on to another ticket with no FN/NS/TR
    OPEN = "open"  # called or being served when the data ends
    NOT_CALLED = "not_called"  # issued and never called (left, or still waiting)


@dataclass(frozen=True, slots=True)
class ServiceSession:
    session_id: str  # gateway:seq of the event that opened it (stable under late data)
    hall: str
    ticket: str
    service: str | None
    window: int | None
    staff: str | None
    outcome: Outcome
    queued_at: dt.datetime | None
    called_at: dt.datetime | None
    started_at: dt.datetime | None
    ended_at: dt.datetime | None
    next_call_at: dt.datetime | None  # the next session opened at this window
    machine_times: tuple[tuple[str, str], ...]  # (stage, the machine's own local time)
    recalls: int = 0
    # (stage, where its time came from): receive | machine_offset (received late, see
    # machine_clock)
    time_sources: tuple[tuple[str, str], ...] = ()
    finish_mseq: int | None = None
    case_nos: tuple[str, ...] = ()  # set by correlation (engine.tie_cases)
    next_start_at: dt.datetime | None = None  # the next session at this window started (ST)

    def belongs_until(self, late_grace: dt.timedelta) -> dt.datetime | None:
        """Until when the person at the window's evaluator is this session's citizen: the next
        service's start, else ``late_grace`` after the next call (a no-show never starts)."""
        if self.next_start_at is not None:
            return self.next_start_at
        return None if self.next_call_at is None else self.next_call_at + late_grace

    @property
    def service_start(self) -> dt.datetime | None:
        """When the citizen was at the window: ST, else the call."""
        return self.started_at or self.called_at

    @property
    def served(self) -> bool:
        """Someone was (or may have been) at the window for it."""
        return self.outcome not in (Outcome.NO_SHOW, Outcome.NOT_CALLED) and (
            self.service_start is not None
        )

    def wait_minutes(self) -> float | None:
        if self.queued_at is None or self.called_at is None:
            return None
        return (self.called_at - self.queued_at).total_seconds() / 60

    def service_minutes(self) -> float | None:
        if self.started_at is None or self.ended_at is None:
            return None
        return (self.ended_at - self.started_at).total_seconds() / 60


@dataclass(frozen=True, slots=True)
class PresencePeriod:
    hall: str
    window: int
    staff: str
    start: dt.datetime
    end: dt.datetime
    opened_by: str  # LI | RS | activity
    closed_by: str  # LO | PS | moved | end_of_data


@dataclass(frozen=True, slots=True)
class SessionDay:
    sessions: tuple[ServiceSession, ...]
    presence: tuple[PresencePeriod, ...]
    horizon: dt.datetime | None  # the last queue event seen (data ends here)
    repeats: int  # $QM messages seen again and ignored
    anomalies: tuple[str, ...]  # events that fitted no session (for the technician)
    # when the queue feed was reporting (its 30 s heartbeat): presence is known only then
    reporting: tuple[tuple[dt.datetime, dt.datetime], ...] = ()


@dataclass
class _Draft:
    session_id: str
    ticket: str
    service: str | None
    window: int | None
    queued_at: dt.datetime | None
    staff: str | None = None
    outcome: Outcome = Outcome.OPEN
    called_at: dt.datetime | None = None
    started_at: dt.datetime | None = None
    ended_at: dt.datetime | None = None
    next_call_at: dt.datetime | None = None
    next_start_at: dt.datetime | None = None
    previous: _Draft | None = None  # the session this one followed at the window
    machine: dict[str, str] = field(default_factory=dict)
    sources: dict[str, str] = field(default_factory=dict)
    recalls: int = 0
    finish_mseq: int | None = None

    @property
    def ended(self) -> bool:
        return self.ended_at is not None or self.outcome is Outcome.INTERRUPTED

    def end(self, outcome: Outcome, at: dt.datetime) -> None:
        self.outcome, self.ended_at = outcome, at

    def freeze(self, hall: str) -> ServiceSession:
        return ServiceSession(
            session_id=self.session_id,
            hall=hall,
            ticket=self.ticket,
            service=self.service,
            window=self.window,
            staff=self.staff,
            outcome=self.outcome,
            queued_at=self.queued_at,
            called_at=self.called_at,
            started_at=self.started_at,
            ended_at=self.ended_at,
            next_call_at=self.next_call_at,
            machine_times=tuple(sorted(self.machine.items())),
            recalls=self.recalls,
            finish_mseq=self.finish_mseq,
            time_sources=tuple(sorted(self.sources.items())),
            next_start_at=self.next_start_at,
        )

    def stage(self, name: str, r: QueueRecord) -> None:
        """Record where the stage's time came from, and the machine's own time beside it."""
        self.sources[name] = source_of(r)
        if r.machine_time:
            self.machine[name] = r.machine_time


@dataclass
class _Ticket:
    """One issue of a ticket number (a number can be issued again after a transfer)."""

    number: str
    opened_by: str
    queued_at: dt.datetime | None
    service: str | None
    machine_queued: str | None
    queued_source: str = "receive"
    active: _Draft | None = None
    used: bool = False  # it has had a session


def source_of(r: QueueRecord) -> str:
    return "machine_offset" if r.time_source is TimeSource.MACHINE else "receive"


def in_receive_order(records: Iterable[QueueRecord]) -> Iterator[QueueRecord]:
    """Seq order per gateway; gateways merged by corrected time."""
    ordered = sorted(records, key=lambda r: (r.gateway, r.seq))
    streams = [list(group) for _, group in groupby(ordered, key=lambda r: r.gateway)]
    return heapq.merge(*streams, key=lambda r: r.at)


class _Builder:
    def __init__(self, hall: str) -> None:
        self.hall = hall
        self.tickets: dict[str, _Ticket] = {}
        self.current: dict[int, _Draft] = {}  # window → session not yet ended
        self.interrupted: dict[tuple[int, str], _Draft] = {}  # (window, ticket)
        self.last: dict[int, _Draft] = {}  # window → the latest session opened there
        self.drafts: list[_Draft] = []
        self.uncalled: list[_Ticket] = []
        self.open_presence: dict[tuple[int, str], tuple[dt.datetime, str]] = {}
        self.periods: list[PresencePeriod] = []
        self.anomalies: list[str] = []

    # -- presence ------------------------------------------------------------------------

    def _open(self, window: int, staff: str, at: dt.datetime, why: str) -> None:
        if (window, staff) in self.open_presence:
            return
        for w, s in list(self.open_presence):
            if s == staff and w != window:  # one person, one window
                self._close(w, s, at, "moved")
        self.open_presence[(window, staff)] = (at, why)

    def _close(self, window: int, staff: str, at: dt.datetime, why: str) -> None:
        opened = self.open_presence.pop((window, staff), None)
        if opened is None:
            return
        start, opened_by = opened
        self.periods.append(
            PresencePeriod(self.hall, window, staff, start, max(start, at), opened_by, why)
        )

    # -- sessions ------------------------------------------------------------------------

    def _ticket(self, r: QueueRecord, number: str) -> _Ticket:
        ticket = self.tickets.get(number)
        if ticket is None:  # its TK was before the day, or lost
            ticket = _Ticket(number, event_key(r.gateway, r.seq), None, None, None)
            self.tickets[number] = ticket
        return ticket

    def _interrupt(self, draft: _Draft, at: dt.datetime) -> None:
        """Another ticket took the window (or this ticket another window) with no FN/NS/TR:
        ended for now; an FN/NS/TR that still comes for it (staff often call the next number
        before pressing finish) ends it properly."""
        draft.end(Outcome.INTERRUPTED, at)
        if draft.window is not None:
            if self.current.get(draft.window) is draft:
                del self.current[draft.window]
            self.interrupted[(draft.window, draft.ticket)] = draft
        ticket = self.tickets.get(draft.ticket)
        if ticket is not None and ticket.active is draft:
            ticket.active = None

    def _session_for(self, r: QueueRecord, number: str, window: int) -> _Draft | None:
        current = self.current.get(window)
        if current is not None and current.ticket == number:
            if r.type == "CL":
                current.recalls += 1  # called again with CL instead of RC
            return current
        if r.type in _ENDING:
            late = self.interrupted.pop((window, number), None)
            if late is not None:
                return late
            last = self.last.get(window)
            if last is not None and last.ticket == number:
                self.anomalies.append(
                    f"{event_key(r.gateway, r.seq)}: {r.type} {number} at "
                    f"window {window} after its session ended"
                )
                return None
        elif r.type == "ST" and (window, number) in self.interrupted:
            self.anomalies.append(
                f"{event_key(r.gateway, r.seq)}: ST {number} at window "
                f"{window} after another ticket was called there"
            )
            return None
        # a call (or a service start) takes the window; an end event of a session whose call
        # we never saw stands alone and leaves the current one be
        takes_window = r.type in ("CL", "RC", "ST")
        if current is not None and takes_window:
            self._interrupt(current, r.at)
        ticket = self._ticket(r, number)
        if ticket.active is not None:  # the same ticket still open at another window
            self._interrupt(ticket.active, r.at)
        present = [s for (w, s) in self.open_presence if w == window]
        draft = _Draft(
            session_id=event_key(r.gateway, r.seq),
            ticket=number,
            service=ticket.service,
            window=window,
            queued_at=None if ticket.used else ticket.queued_at,
            # who called it: ST/FN name the server, a no-show has only this
            staff=present[0] if len(present) == 1 else None,
        )
        if not ticket.used and ticket.queued_at is not None:
            draft.sources["queued"] = ticket.queued_source
        if not ticket.used and ticket.machine_queued:
            draft.machine["queued"] = ticket.machine_queued
        ticket.active, ticket.used = draft, True
        if takes_window:
            last = self.last.get(window)
            if last is not None and last.next_call_at is None:
                last.next_call_at = r.at
                draft.previous = last
            self.last[window] = self.current[window] = draft
        self.drafts.append(draft)
        return draft

    def feed(self, r: QueueRecord) -> None:
        if r.type == "TK" and r.ticket:
            previous = self.tickets.get(r.ticket)
            if previous is not None and not previous.used:
                self.uncalled.append(previous)  # the number was issued again
            self.tickets[r.ticket] = _Ticket(
                r.ticket, event_key(r.gateway, r.seq), r.at, r.service, r.machine_time, source_of(r)
            )
        elif r.type in _SERVICE_TYPES and r.ticket and r.window is not None:
            self._service(r, r.ticket, r.window)
        elif r.type in ("LI", "RS") and r.window is not None and r.staff:
            self._open(r.window, r.staff, r.at, r.type)
        elif r.type in ("LO", "PS") and r.window is not None and r.staff:
            self._close(r.window, r.staff, r.at, r.type)

    def _service(self, r: QueueRecord, number: str, window: int) -> None:
        draft = self._session_for(r, number, window)
        if draft is None:
            return
        if r.type in ("CL", "RC"):
            if draft.called_at is None:
                draft.called_at = r.at
                draft.stage("called", r)
            elif r.type == "RC":
                draft.recalls += 1
        elif r.type == "ST":
            if draft.started_at is None:
                draft.started_at = r.at
                draft.stage("started", r)
                if draft.previous is not None and draft.previous.next_start_at is None:
                    draft.previous.next_start_at = r.at
            draft.staff = r.staff or draft.staff
        else:  # FN, NS, TR end the session
            draft.end(Outcome(_ENDING[r.type]), r.at)
            draft.stage("ended", r)
            draft.staff = draft.staff or r.staff
            if r.type == "FN":
                draft.finish_mseq = r.mseq
            if self.current.get(window) is draft:
                del self.current[window]
            ticket = self.tickets[number]
            if ticket.active is draft:
                ticket.active = None
            if r.type == "TR":  # the same number waits again, in the new service's queue
                # "/TR": the transfer may itself have opened a session under its own key
                self.tickets[number] = _Ticket(
                    number,
                    f"{event_key(r.gateway, r.seq)}/TR",
                    r.at,
                    r.to_service,
                    r.machine_time,
                    source_of(r),
                )
        if r.staff and r.type in ("ST", "FN"):
            self._open(window, r.staff, r.at, "activity")

    def finish(
        self, horizon: dt.datetime | None
    ) -> tuple[list[ServiceSession], list[PresencePeriod]]:
        sessions = [d.freeze(self.hall) for d in self.drafts]
        for ticket in [*self.uncalled, *(t for t in self.tickets.values() if not t.used)]:
            sessions.append(
                ServiceSession(
                    session_id=ticket.opened_by,
                    hall=self.hall,
                    ticket=ticket.number,
                    service=ticket.service,
                    window=None,
                    staff=None,
                    outcome=Outcome.NOT_CALLED,
                    queued_at=ticket.queued_at,
                    called_at=None,
                    started_at=None,
                    ended_at=None,
                    next_call_at=None,
                    machine_times=(("queued", ticket.machine_queued),)
                    if ticket.machine_queued
                    else (),
                    time_sources=(("queued", ticket.queued_source),)
                    if ticket.queued_at is not None
                    else (),
                )
            )
        if horizon is not None:
            for window, staff in sorted(self.open_presence):
                self._close(window, staff, horizon, "end_of_data")
        sessions.sort(key=lambda s: s.session_id)
        periods = sorted(self.periods, key=lambda p: (p.window, p.staff, p.start))
        return sessions, periods


def reporting_spans(
    times: Iterable[dt.datetime], gap: dt.timedelta
) -> tuple[tuple[dt.datetime, dt.datetime], ...]:
    """Runs of queue messages no more than ``gap`` apart: the feed was reporting from the first
    to the last of each run (the machine's 30 s heartbeat keeps a live feed dense)."""
    spans: list[list[dt.datetime]] = []
    for at in sorted(times):
        if spans and at - spans[-1][1] <= gap:
            spans[-1][1] = at
        else:
            spans.append([at, at])
    return tuple((a, b) for a, b in spans if b > a)


def build_sessions(
    hall: str,
    records: Iterable[QueueRecord],
    reporting_gap: dt.timedelta = dt.timedelta(seconds=120),
) -> SessionDay:
    """Sessions and presence of one hall's business day from its queue records."""
    records = list(records)
    builder = _Builder(hall)
    seen: set[tuple[int, str]] = set()
    repeats = 0
    horizon: dt.datetime | None = None
    for r in in_receive_order(records):
        horizon = r.at if horizon is None else max(horizon, r.at)
        key = (r.mseq, r.raw)
        if r.raw and key in seen:
            repeats += 1  # a replay the gateway could not recognise (e.g. after replacement)
            continue
        seen.add(key)
        builder.feed(r)
    sessions, periods = builder.finish(horizon)
    return SessionDay(
        tuple(sessions),
        tuple(periods),
        horizon,
        repeats,
        tuple(builder.anomalies),
        reporting_spans((r.at for r in records), reporting_gap),
    )
