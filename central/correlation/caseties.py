"""Case (办件) → service session: which service produced each case the approval system reports.

Pure. A case names its hall, window, staff member, item (事项编码) and acceptance time (受理时间);
a session names its window, staff member, queue category and service interval. Acceptance is
not always inside the service: staff often enter a case in the approval system after the
citizen left (entry lag, up to ``case_entry_lag_s``), and by then the window is serving the next
ticket. So, per window:

1. **Candidates**: served sessions at the case's window whose staff agrees (when both name one)
   and whose queue category agrees with the category the case's item is served in (learned from
   the day, below), with the acceptance at most ``case_tolerance_s`` before the service started
   and at most ``case_entry_lag_s`` after it ended.
2. **Entry habit** per (window, staff member), learned from the day: when at least
   ``LAG_SHARE`` of that person's cases (and at least ``LAG_MIN_CASES``) were accepted about the
   same time after some service of theirs ended (within ``±LAG_SPREAD_S`` of one lag), and that
   lag explains more of them than any steady moment inside a service does, that lag is their
   habit and a case is expected that long after its service; otherwise cases are expected
   inside their service.
3. **Cost** of a candidate, in seconds: distance from where the habit expects the acceptance
   (inside the service: 0; after it: the lag; before it: ``EARLY_WEIGHT`` × the distance: a
   clock that far off is rarer than entry lag).
4. **Assignment**: the cases of a window in acceptance order go to sessions in service order
   (staff enter cases in the order they served people) at the least total cost; one service
   holds cases of one applicant (一次办多件 shares the applicant); two cases whose applicants
   are unknown share a service at a cost of ``SHARE_UNKNOWN_S``.
5. **Ambiguity**: a tie is ambiguous when another candidate service that holds no other
   applicant's case fits within ``case_ambiguity_s`` of the chosen one. The tie names those
   services; their evaluations are flagged (``CASE_AMBIGUOUS``), never silently right or wrong.

The category of an item is learned from the first assignment's unambiguous ties: an item tied at
least twice, ``CATEGORY_SHARE`` of the time to one category, is served in that category.
"""

from __future__ import annotations

import bisect
import datetime as dt
import math
import statistics
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from central.correlation.config import CorrelationConfig
from central.correlation.model import CaseInfo
from central.correlation.sessions import ServiceSession

LAG_MIN_CASES = 4  # fewer cases than this say nothing about a person's habit
LAG_SHARE = 0.75  # this share of a person's cases lagging alike makes it their habit
LAG_SPREAD_S = 45.0  # how far one person's lags spread around their habit
# a second before the service counts as a minute of entry lag: only a clock that is off explains it,
# while entering a case after the citizen left is ordinary
EARLY_WEIGHT = 60.0
SHARE_UNKNOWN_S = 30.0  # a second case of unknown applicant in one service
CATEGORY_SHARE = 0.8
_UNTIED = 1e9  # leaving a case with a candidate untied is worse than any tie


class TieReason:
    INSIDE = "inside"  # accepted during the service
    ENTRY_LAG = "entry_lag"  # accepted after the service ended
    EARLY = "early"  # accepted before it started (the approval system's clock)


@dataclass(frozen=True, slots=True)
class CaseTie:
    case_no: str
    session_id: str
    distance_s: float  # 0 when the acceptance lies inside the service interval
    reason: str = TieReason.INSIDE
    ambiguous_with: tuple[str, ...] = ()  # other services that fit nearly as well

    @property
    def ambiguous(self) -> bool:
        return bool(self.ambiguous_with)


@dataclass(frozen=True, slots=True)
class _Candidate:
    index: int  # the session's position at its window
    cost: float
    distance: float
    reason: str


def _interval(s: ServiceSession) -> tuple[dt.datetime, dt.datetime | None]:
    start = s.service_start
    assert start is not None
    return start, s.ended_at


def _best_offset(offsets: Sequence[Sequence[float]], limit: float) -> tuple[int, float]:
    """(how many cases, offset): the offset in [0, limit] that the most cases have one of their
    offsets within LAG_SPREAD_S of (the smallest such offset). A sweep over each case's union
    of [offset ± LAG_SPREAD_S] spans, so a case counts once."""
    events: list[tuple[float, int]] = []
    for offs in offsets:
        spans = sorted(
            (max(0.0, o - LAG_SPREAD_S), min(limit, o + LAG_SPREAD_S))
            for o in offs
            if 0.0 <= o <= limit
        )
        merged: list[list[float]] = []
        for lo, hi in spans:
            if merged and lo <= merged[-1][1]:
                merged[-1][1] = max(merged[-1][1], hi)
            else:
                merged.append([lo, hi])
        for lo, hi in merged:
            events += [(lo, -1), (hi, 1)]  # at equal points a span opens before one closes
    best: tuple[int, float] = (0, 0.0)
    count = 0
    for point, step in sorted(events):
        count -= step
        if count > best[0]:
            best = (count, point)
    return best


def entry_lag(
    accepted: Sequence[dt.datetime],
    intervals: Sequence[tuple[dt.datetime, dt.datetime | None]],
    cfg: CorrelationConfig,
) -> float | None:
    """A person's habitual entry lag in seconds (their cases' acceptance after the end of one
    of their services), or None when their cases are entered during the service.

    A steady lag after the previous service's end looks like a steady moment inside the next
    service whenever the next citizen is called at once; only the cases that fall where no
    service runs (idle time, before lunch, at the day's end) tell the two apart. So a lag is
    a habit only when it explains more cases than any steady moment inside a service does."""
    if len(accepted) < LAG_MIN_CASES:
        return None
    ends = sorted(end.timestamp() for _, end in intervals if end is not None)
    spans = sorted(
        (start.timestamp(), math.inf if end is None else end.timestamp())
        for start, end in intervals
    )
    starts = [start for start, _ in spans]
    after_end, into_service = [], []
    for moment in accepted:
        t = moment.timestamp()
        lo = bisect.bisect_left(ends, t - cfg.case_entry_lag_s)
        after_end.append([t - e for e in ends[lo : bisect.bisect_left(ends, t)]])
        into_service.append(
            [t - start for start, end in spans[: bisect.bisect_right(starts, t)] if t < end]
        )
    lag_hits, lag = _best_offset(after_end, cfg.case_entry_lag_s)
    inside_hits, _ = _best_offset(into_service, 4 * 3600)
    if lag_hits < LAG_SHARE * len(accepted) or lag_hits <= inside_hits:
        return None
    near = [
        min(offs, key=lambda o: abs(o - lag))
        for offs in after_end
        if any(abs(o - lag) <= LAG_SPREAD_S for o in offs)
    ]
    return float(statistics.median(near))


def _candidate(
    case: CaseInfo, index: int, s: ServiceSession, lag: float | None, cfg: CorrelationConfig
) -> _Candidate | None:
    start, end = _interval(s)
    at = case.accepted_at
    if at < start:
        distance, reason = (start - at).total_seconds(), TieReason.EARLY
        if distance > cfg.case_tolerance_s:
            return None
    elif end is not None and at >= end:
        distance, reason = (at - end).total_seconds(), TieReason.ENTRY_LAG
        if distance > cfg.case_entry_lag_s:
            return None
    else:
        distance, reason = 0.0, TieReason.INSIDE
    if lag is None:  # expected inside the service
        cost = EARLY_WEIGHT * distance if reason == TieReason.EARLY else distance
    else:  # expected ``lag`` after the service ended
        expected = None if end is None else end + dt.timedelta(seconds=lag)
        cost = lag if expected is None else abs((at - expected).total_seconds())
        if reason == TieReason.EARLY:
            cost += EARLY_WEIGHT * distance
    return _Candidate(index, cost, distance, reason)


def _share_cost(a: CaseInfo, b: CaseInfo) -> float | None:
    """Cost of two cases in one service; None: they cannot share one (two applicants)."""
    if a.applicant is not None and b.applicant is not None:
        return 0.0 if a.applicant == b.applicant else None
    return SHARE_UNKNOWN_S


@dataclass(frozen=True, slots=True)
class _Step:
    """One case's choice in a partial assignment, linked to the choices before it."""

    case: int
    session: int  # -1: left untied
    before: _Step | None


@dataclass(frozen=True, slots=True)
class _State:
    cost: float
    last_case: int  # the latest case tied to the state's session (-1: none yet)
    step: _Step | None


def _relax(states: dict[int, _State], last: int, state: _State) -> None:
    old = states.get(last)
    if old is None or state.cost < old.cost:  # equal cost: the first found stays
        states[last] = state


def _assign(
    cases: Sequence[CaseInfo], candidates: Sequence[Sequence[_Candidate]]
) -> list[_Candidate | None]:
    """Least-cost assignment keeping acceptance order = service order (dynamic programming over
    the last session used). Deterministic: the inputs come sorted, states are tried in order."""
    states: dict[int, _State] = {-1: _State(0.0, -1, None)}
    for i, options in enumerate(candidates):
        nxt: dict[int, _State] = {}
        for last, state in states.items():
            _relax(
                nxt,
                last,
                _State(
                    state.cost + (_UNTIED if options else 0.0),
                    state.last_case,
                    _Step(i, -1, state.step),
                ),
            )
            for c in options:
                if c.index < last:
                    continue
                extra = 0.0
                if c.index == last:
                    share = _share_cost(cases[state.last_case], cases[i])
                    if share is None:
                        continue
                    extra = share
                _relax(
                    nxt,
                    c.index,
                    _State(state.cost + c.cost + extra, i, _Step(i, c.index, state.step)),
                )
        # a state whose last session is later and that costs no less than one with an earlier
        # last session can only do worse from here (fewer sessions left to choose): drop it
        # … and one that leaves a case more untied than the best state never ends cheaper
        # than the best state's own continuation
        bound = min(s.cost for s in nxt.values()) + _UNTIED / 2
        states = {}
        cheapest = bound
        for last in sorted(nxt):
            if nxt[last].cost < cheapest:
                states[last] = nxt[last]
                cheapest = nxt[last].cost
    best = min(states.values(), key=lambda s: s.cost)
    chosen: list[_Candidate | None] = [None] * len(candidates)
    step = best.step
    while step is not None:
        if step.session >= 0:
            chosen[step.case] = next(c for c in candidates[step.case] if c.index == step.session)
        step = step.before
    return chosen


def _ambiguous(
    i: int,
    chosen: _Candidate,
    cases: Sequence[CaseInfo],
    options: Sequence[_Candidate],
    held: Mapping[int, list[int]],
    cfg: CorrelationConfig,
) -> list[int]:
    """Other services that fit case i within case_ambiguity_s and hold no other applicant's
    case: the case could as well be theirs."""
    out = []
    for c in options:
        if c.index == chosen.index or c.cost - chosen.cost > cfg.case_ambiguity_s:
            continue
        if all(_share_cost(cases[k], cases[i]) == 0.0 for k in held.get(c.index, ())):
            out.append(c.index)
    return out


class _Timeline:
    """A window's sessions in service order, to find those near a moment without trying all."""

    def __init__(self, sessions: Sequence[ServiceSession]) -> None:
        self.starts = [_interval(s)[0] for s in sessions]
        # the latest end among the sessions so far; None once one of them is still open
        self.reach: list[dt.datetime | None] = []
        latest: dt.datetime | None = None
        still_open = False
        for s in sessions:
            if s.ended_at is None:
                still_open = True
            elif latest is None or s.ended_at > latest:
                latest = s.ended_at
            self.reach.append(None if still_open else latest)

    def near(self, at: dt.datetime, cfg: CorrelationConfig) -> list[int]:
        """Indices of the sessions that may hold a case accepted at ``at`` (by time alone)."""
        hi = bisect.bisect_right(self.starts, at + dt.timedelta(seconds=cfg.case_tolerance_s))
        floor = at - dt.timedelta(seconds=cfg.case_entry_lag_s)
        out = []
        for j in range(hi - 1, -1, -1):
            reach = self.reach[j]
            if reach is not None and reach < floor:
                break  # neither this session nor any before it ended late enough
            out.append(j)
        return out[::-1]


def _tie_window(
    window_sessions: Sequence[ServiceSession],
    window_cases: Sequence[CaseInfo],
    categories: Mapping[str, str],
    cfg: CorrelationConfig,
) -> list[CaseTie]:
    lags: dict[str | None, float | None] = {}
    for staff in {c.staff for c in window_cases}:
        mine = [s for s in window_sessions if staff is None or s.staff in (None, staff)]
        lags[staff] = entry_lag(
            [c.accepted_at for c in window_cases if c.staff == staff],
            [_interval(s) for s in mine],
            cfg,
        )
    timeline = _Timeline(window_sessions)
    candidates: list[list[_Candidate]] = []
    for case in window_cases:
        category = categories.get(case.item_code or "")
        options = []
        for j in timeline.near(case.accepted_at, cfg):
            s = window_sessions[j]
            if case.staff and s.staff and case.staff != s.staff:
                continue
            if category is not None and s.service is not None and s.service != category:
                continue
            c = _candidate(case, j, s, lags[case.staff], cfg)
            if c is not None:
                options.append(c)
        candidates.append(options)
    chosen = _assign(window_cases, candidates)
    held: dict[int, list[int]] = defaultdict(list)
    for i, c in enumerate(chosen):
        if c is not None:
            held[c.index].append(i)
    ties = []
    for i, c in enumerate(chosen):
        if c is None:
            continue
        others = _ambiguous(i, c, window_cases, candidates[i], held, cfg)
        ties.append(
            CaseTie(
                window_cases[i].case_no,
                window_sessions[c.index].session_id,
                c.distance,
                c.reason,
                tuple(sorted(window_sessions[j].session_id for j in others)),
            )
        )
    return ties


def _learn_categories(
    ties: Iterable[CaseTie], cases: Mapping[str, CaseInfo], sessions: Mapping[str, ServiceSession]
) -> dict[str, str]:
    votes: dict[str, Counter[str]] = defaultdict(Counter)
    for tie in ties:
        item, service = cases[tie.case_no].item_code, sessions[tie.session_id].service
        if item is not None and service is not None and not tie.ambiguous:
            votes[item][service] += 1
    out = {}
    for item, counter in votes.items():
        service, n = min(counter.items(), key=lambda kv: (-kv[1], kv[0]))
        total = sum(counter.values())
        if total >= 2 and n >= CATEGORY_SHARE * total:
            out[item] = service
    return out


def tie_cases(
    hall: str, sessions: Sequence[ServiceSession], cases: Iterable[CaseInfo], cfg: CorrelationConfig
) -> dict[str, CaseTie]:
    """Each case of the hall accepted at a window → its session (module docstring)."""
    by_window: dict[int, list[ServiceSession]] = defaultdict(list)
    for s in sessions:
        if s.window is not None and s.served:
            by_window[s.window].append(s)
    for group in by_window.values():
        group.sort(key=lambda s: (_interval(s)[0], s.session_id))
    cases_by_window: dict[int, list[CaseInfo]] = defaultdict(list)
    for case in cases:
        if case.hall == hall and case.window is not None:
            cases_by_window[case.window].append(case)
    for window_cases in cases_by_window.values():
        window_cases.sort(key=lambda c: (c.accepted_at, c.case_no))

    def run(categories: Mapping[str, str]) -> dict[str, CaseTie]:
        return {
            t.case_no: t
            for w, group in sorted(cases_by_window.items())
            for t in _tie_window(by_window.get(w, []), group, categories, cfg)
        }

    first = run({})
    categories = _learn_categories(
        first.values(),
        {c.case_no: c for g in cases_by_window.values() for c in g},
        {s.session_id: s for g in by_window.values() for s in g},
    )
    return run(categories) if categories else first
