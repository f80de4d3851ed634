"""What every pattern needs from one hall's facts: the subjects (a staff member at a window),
each press's service, which presses had no citizen, and the hall's baseline."""

from __future__ import annotations

import bisect
import datetime as dt
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property

from central.gaming.config import GamingConfig
from central.gaming.model import (
    BAD_KEYS,
    Baseline,
    CaseFact,
    Facts,
    InvitationEnd,
    KeyCounts,
    PressFact,
    SessionFact,
)

Subject = tuple[int, str | None]  # (window, staff)
SKIPPED_ENDS = frozenset({InvitationEnd.CANCELLED, InvitationEnd.TIMED_OUT})


def press_order(p: PressFact) -> tuple[dt.datetime, str, int]:
    """Time order, ties broken by identity: the facts' order never matters."""
    return (p.at, p.gateway_id, p.seq)


def session_order(s: SessionFact) -> tuple[dt.datetime, str]:
    at = s.called_at or s.started_at or s.ended_at or dt.datetime.min.replace(tzinfo=dt.UTC)
    return (at, s.session_id)


def evaluated_sessions(presses: Iterable[PressFact]) -> set[str]:
    return {p.session_id for p in presses if p.counted and p.session_id is not None}


def baseline_from(facts: Sequence[Facts], grace_s: float = 120.0) -> Baseline:
    """A hall's baseline from earlier periods' facts (the job passes the last weeks)."""
    by_service: dict[str, list[int]] = defaultdict(list)
    keys: list[int] = []
    delays: list[float] = []
    sessions: dict[str, int] = defaultdict(int)
    evaluated: dict[str, int] = defaultdict(int)
    invited: dict[str, int] = defaultdict(int)
    cancelled: dict[str, int] = defaultdict(int)
    presses = idle = 0
    for f in facts:
        hall = HallView(f, GamingConfig(idle_grace_s=grace_s))
        done = evaluated_sessions(f.presses)
        for p in f.presses:
            presses += 1
            idle += hall.is_idle(p)
            if p.invited and p.seconds_after_invitation is not None:
                delays.append(p.seconds_after_invitation)
            if p.counted:
                keys.append(p.key)
                by_service[hall.service_of(p)].append(p.key)
        for s in f.sessions:
            service = s.service or ""
            sessions[service] += 1
            evaluated[service] += s.session_id in done
            if s.invited:
                invited[service] += 1
                cancelled[service] += s.invitation_end in SKIPPED_ENDS
    return Baseline(
        keys=KeyCounts.of(keys),
        keys_by_service={k: KeyCounts.of(v) for k, v in by_service.items()},
        seconds_after_invitation=tuple(sorted(delays)),
        sessions_by_service=dict(sessions),
        evaluated_by_service=dict(evaluated),
        days=len({d for f in facts for d in _days(f)}),
        invited_by_service=dict(invited),
        cancelled_by_service=dict(cancelled),
        presses=presses,
        idle_presses=idle,
    )


def _days(f: Facts) -> list[dt.date]:
    n = (f.period.end - f.period.start).days + 1
    return [f.period.start + dt.timedelta(days=i) for i in range(n)]


@dataclass
class HallView:
    """One hall's facts indexed for the patterns."""

    facts: Facts
    cfg: GamingConfig
    _sessions_at: dict[int, list[SessionFact]] = field(init=False)
    _starts_at: dict[int, list[dt.datetime]] = field(init=False)

    def __post_init__(self) -> None:
        by_window: dict[int, list[SessionFact]] = defaultdict(list)
        for s in self.facts.sessions:
            if s.window is not None and (s.called_at or s.started_at) is not None:
                by_window[s.window].append(s)
        self._sessions_at = {w: sorted(v, key=session_order) for w, v in by_window.items()}
        self._starts_at = {
            w: [session_order(s)[0] for s in v] for w, v in self._sessions_at.items()
        }

    @cached_property
    def sessions_by_id(self) -> Mapping[str, SessionFact]:
        return {s.session_id: s for s in self.facts.sessions}

    @cached_property
    def cases_by_no(self) -> Mapping[str, CaseFact]:
        return {c.case_no: c for c in self.facts.cases}

    @cached_property
    def baseline(self) -> Baseline:
        return self.facts.baseline or baseline_from([self.facts], self.cfg.idle_grace_s)

    def service_of(self, p: PressFact) -> str:
        s = self.sessions_by_id.get(p.session_id) if p.session_id else None
        return (s.service or "") if s else ""

    def _latest_before(self, window: int, at: dt.datetime) -> SessionFact | None:
        starts = self._starts_at.get(window)
        if not starts:
            return None
        i = bisect.bisect_right(starts, at) - 1
        return self._sessions_at[window][i] if i >= 0 else None

    def staff_at(self, window: int, at: dt.datetime) -> str | None:
        s = self._latest_before(window, at)
        return s.staff if s else None

    def is_idle(self, p: PressFact) -> bool:
        """No citizen at the window: the camera saw none, or no one was called since the last
        service ended more than the grace before (a press before any call counts too)."""
        if p.citizen in ("absent", "present"):
            return p.citizen == "absent"
        s = self._latest_before(p.window, p.at)
        if s is None:
            return True
        end = s.ended_at
        return end is not None and (p.at - end).total_seconds() > self.cfg.idle_grace_s

    def subject_of(self, p: PressFact) -> Subject:
        return (p.window, p.staff if p.staff is not None else self.staff_at(p.window, p.at))

    @cached_property
    def presses_by_subject(self) -> Mapping[Subject, list[PressFact]]:
        out: dict[Subject, list[PressFact]] = defaultdict(list)
        for p in sorted(self.facts.presses, key=press_order):
            out[self.subject_of(p)].append(p)
        return out

    @cached_property
    def sessions_by_subject(self) -> Mapping[Subject, list[SessionFact]]:
        out: dict[Subject, list[SessionFact]] = defaultdict(list)
        for s in sorted(self.facts.sessions, key=session_order):
            if s.window is not None:
                out[(s.window, s.staff)].append(s)
        return out

    @cached_property
    def evaluated(self) -> set[str]:
        return evaluated_sessions(self.facts.presses)

    def is_bad(self, p: PressFact) -> bool:
        return p.key in BAD_KEYS


# A service's own baseline counts as this many presses (or sessions) of the hall's: a service
# seen a few dozen times is pulled towards the hall instead of trusted as exact.
SHRINK = 100.0


def shrunk_shares(kc: KeyCounts | None, overall: KeyCounts) -> list[float]:
    """A service's key shares, shrunk towards the hall's (empirical Bayes, ``SHRINK`` presses)."""
    if overall.total == 0:
        return [1 / 6] * 6
    prior = [c / overall.total for c in overall.counts]
    if kc is None:
        return prior
    return [(c + SHRINK * q) / (kc.total + SHRINK) for c, q in zip(kc.counts, prior, strict=True)]


def service_mix(
    by_service: Mapping[str, KeyCounts], overall: KeyCounts, services: Iterable[str]
) -> list[float]:
    """Expected key probabilities (keys 1..6) for presses of these services: the mean of each
    press's service distribution (shrunk towards the hall's)."""
    cache: dict[str, list[float]] = {}
    total = [0.0] * 6
    n = 0
    for service in services:
        shares = cache.get(service)
        if shares is None:
            shares = cache[service] = shrunk_shares(by_service.get(service), overall)
        for i, c in enumerate(shares):
            total[i] += c
        n += 1
    return [t / n for t in total] if n else shrunk_shares(None, overall)


def rate_by_service(
    num: Mapping[str, int], den: Mapping[str, int], services: Iterable[str], floor: float = 0.0
) -> float:
    """The mean over these services (one per session) of each service's rate, shrunk towards
    the hall's."""
    all_num, all_den = sum(num.values()), sum(den.values())
    overall = all_num / all_den if all_den else 0.0
    rates = [(num.get(s, 0) + SHRINK * overall) / (den.get(s, 0) + SHRINK) for s in services]
    return max(floor, sum(rates) / len(rates)) if rates else max(floor, overall)
