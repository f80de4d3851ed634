"""Simulated hall weeks as the gaming detector's facts, with the gaming seeded in them.

Clean halls: each window served by one staff member, mostly one category of service (A short
and well liked, B middling, C long and complaint-prone); citizens walk up, are served, are
invited at FN and press a few seconds later (some never, some without an invitation, a few
long after the service with nobody at the window); cases (办件) with applicants who now and
then come back (agents, 代办), some withdrawn, some overdue. Staff differ (bad-review share
×0.8–1.25, evaluation rate ±8 %), as real staff do.

``Seed`` puts one gaming pattern at one strength into one window's week; ``Truth`` says where.
"""

from __future__ import annotations

import bisect
import dataclasses
import datetime as dt
import hashlib
import itertools
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass, field

from central.gaming.model import (
    CaseFact,
    Facts,
    InvitationEnd,
    Pattern,
    Period,
    PressFact,
    SessionFact,
)

# per service: mean duration (s), key probabilities 1..6, share completed on the spot
SERVICES: dict[str, tuple[float, tuple[float, ...], float]] = {
    "A": (300.0, (0.86, 0.09, 0.015, 0.015, 0.01, 0.01), 0.8),
    "B": (600.0, (0.82, 0.11, 0.02, 0.025, 0.015, 0.01), 0.5),
    "C": (1200.0, (0.72, 0.15, 0.03, 0.05, 0.03, 0.02), 0.2),
}
MAIN_SHARE = 0.7  # a window serves its own category this often
EVAL_RATE = 0.8
INVITE_RATE = 0.97
OPEN_UTC = dt.time(1, 0)  # 09:00 in Asia/Shanghai


@dataclass(frozen=True)
class HallSpec:
    hall_id: str
    windows: int
    per_day: float  # services per window and day
    gap_s: float  # mean idle time between services (beyond the 1–6 s to call the next)


BUSY = (10, 40.0, 20.0)
QUIET = (4, 9.0, 1800.0)


@dataclass(frozen=True)
class Seed:
    pattern: Pattern
    window: int
    strength: float  # the share, count or run length the pattern's seeder reads
    mode: str = ""  # DISTRIBUTION_SHIFT: "good" (all 非常满意) or "bad"


@dataclass
class Truth:
    seeded: dict[tuple[str, int], Seed] = field(default_factory=dict)  # (hall, window)
    digests: dict[str, Seed] = field(default_factory=dict)  # CONTRADICTS_RECORD's applicant
    touched: set[tuple[str, int]] = field(default_factory=set)  # windows not clean


@dataclass
class _Session:
    fact: SessionFact
    press: PressFact | None
    case: CaseFact | None


class _Week:
    def __init__(self, spec: HallSpec, monday: dt.date, seed: int, seeds: list[Seed]) -> None:
        self.spec = spec
        self.monday = monday
        self.rng = random.Random(seed)
        self.seeds = {s.window: s for s in seeds}
        self.sessions: list[_Session] = []
        self.extra: list[PressFact] = []
        self.seq = 0
        self._cum: dict[tuple[int, str, float], list[float]] = {}
        # staff behaviour is the hall's, not the week's: drawn from the hall's own stream
        staff_rng = random.Random(spec.hall_id)
        self.quality = {w: staff_rng.uniform(0.8, 1.25) for w in range(1, spec.windows + 1)}
        self.eval_rate = {
            w: EVAL_RATE * staff_rng.uniform(0.92, 1.08) for w in range(1, spec.windows + 1)
        }
        self.regulars = [self.digest(f"regular{i}") for i in range(spec.windows * 3)]
        self.self_delay = {w: staff_rng.uniform(1.5, 3.0) for w in range(1, spec.windows + 1)}

    def digest(self, text: str) -> str:
        return hashlib.sha256(f"{self.spec.hall_id}:{text}".encode()).hexdigest()[:32]

    def staff(self, window: int) -> str:
        return f"{window:04d}"

    def service_for(self, window: int) -> str:
        names = sorted(SERVICES)
        own = names[(window - 1) % len(names)]
        return own if self.rng.random() < MAIN_SHARE else self.rng.choice(names)

    def next_ref(self) -> tuple[str, int]:
        self.seq += 1
        return (f"{self.spec.hall_id}-gw", self.seq)

    def key(self, window: int, service: str, bad_boost: float) -> int:
        cum = self._cum.get((window, service, bad_boost))
        if cum is None:
            probs = SERVICES[service][1]
            bad = sum(probs[2:]) * self.quality[window] * bad_boost
            scale_bad = bad / sum(probs[2:])
            scale_good = (1 - bad) / sum(probs[:2])
            weights = [p * scale_good for p in probs[:2]] + [p * scale_bad for p in probs[2:]]
            cum = list(itertools.accumulate(weights))
            self._cum[(window, service, bad_boost)] = cum
        return min(6, bisect.bisect(cum, self.rng.random() * cum[-1]) + 1)

    def run(self) -> None:
        for d in range(5):
            day = self.monday + dt.timedelta(days=d)
            for w in range(1, self.spec.windows + 1):
                self.window_day(day, w)

    def window_day(self, day: dt.date, w: int) -> None:
        rng = self.rng
        t = dt.datetime.combine(day, OPEN_UTC, tzinfo=dt.UTC) + dt.timedelta(
            seconds=rng.uniform(0, 600)
        )
        plan = []
        for _ in range(_poisson(rng, self.spec.per_day)):
            service = self.service_for(w)
            started = t + dt.timedelta(seconds=rng.uniform(12, 30))
            duration = rng.lognormvariate(math.log(SERVICES[service][0]) - 0.125, 0.5)
            ended = started + dt.timedelta(seconds=duration)
            plan.append((service, t, started, ended, duration))
            gap = rng.uniform(1, 6) + rng.expovariate(1 / self.spec.gap_s)
            t = ended + dt.timedelta(seconds=gap)
        day_sessions: list[_Session] = []
        for i, (service, called, started, ended, duration) in enumerate(plan):
            next_call = plan[i + 1][1] if i + 1 < len(plan) else None
            sid = f"{self.spec.hall_id}:{day.isoformat()}:{w}:{i}"
            day_sessions.append(
                self.serve(day, w, sid, service, (called, started, ended, next_call), duration)
            )
        self.sessions.extend(day_sessions)
        if day_sessions:
            last_end = day_sessions[-1].fact.ended_at
            assert last_end is not None
            if rng.random() < 0.15:  # a passer-by or a lingering citizen, nobody being served
                self.idle_press(day, w, last_end + dt.timedelta(seconds=rng.uniform(150, 1800)))

    def serve(
        self,
        day: dt.date,
        w: int,
        sid: str,
        service: str,
        times: tuple[dt.datetime, dt.datetime, dt.datetime, dt.datetime | None],
        duration: float,
    ) -> _Session:
        rng = self.rng
        called, started, ended, next_call = times
        seed = self.seeds.get(w)
        case = self.case(day, w, sid, service, started, ended)
        overdue = case.overdue
        long_ = duration > SERVICES[service][0] * math.exp(-0.125 + 0.5 * 0.674)
        invited = rng.random() < INVITE_RATE
        if seed and seed.pattern is Pattern.SELECTIVE_INVITING and (long_ or overdue):
            invited = invited and rng.random() >= seed.strength
        boost = 3.0 if (overdue or case.abandoned) else 1.0
        rate = self.eval_rate[w]
        if seed and seed.pattern is Pattern.LOW_EVALUATION_RATE:
            rate *= 1 - seed.strength
        press: PressFact | None = None
        end: InvitationEnd | None = None
        if invited:
            staff_presses = (
                seed is not None
                and seed.pattern in (Pattern.REGULAR_TIMING, Pattern.INSTANT_PRESS)
                and rng.random() < seed.strength
            )
            cancel = (
                seed is not None
                and seed.pattern is Pattern.CANCELLED_INVITATIONS
                and service == "C"
                and rng.random() < seed.strength
            )
            if staff_presses:
                assert seed is not None
                delay = (
                    self.self_delay[w] * math.exp(rng.gauss(0, 0.05))
                    if seed.pattern is Pattern.REGULAR_TIMING
                    else rng.uniform(0.1, 0.9)
                )
                press = self.press(day, w, ended, delay, 1, sid, case, invited=True)
                end = InvitationEnd.PRESSED
            elif not cancel and rng.random() < rate:
                delay = (
                    rng.uniform(0.3, 2.0)
                    if rng.random() < 0.01
                    else rng.lognormvariate(math.log(6.0), 0.5)
                )
                key = self.key(w, service, boost)
                press = self.press(day, w, ended, delay, key, sid, case, invited=True)
                end = InvitationEnd.PRESSED
            elif cancel:
                end = InvitationEnd.CANCELLED
            else:
                end = rng.choices(
                    [InvitationEnd.CLOSED, InvitationEnd.TIMED_OUT, InvitationEnd.CANCELLED],
                    [0.82, 0.15, 0.03],
                )[0]
        elif rng.random() < 0.3:
            delay = rng.lognormvariate(math.log(8.0), 0.5)
            press = self.press(day, w, ended, delay, self.key(w, service, boost), sid, case, False)
        fact = SessionFact(
            session_id=sid,
            hall_id=self.spec.hall_id,
            business_day=day,
            window=w,
            staff=self.staff(w),
            service=service,
            called_at=called,
            started_at=started,
            ended_at=ended,
            next_call_at=next_call,
            overdue=overdue,
            invited=invited,
            invited_at=ended if invited else None,
            invitation_end=end,
            case_nos=(case.case_no,),
        )
        return _Session(fact, press, case)

    def case(
        self, day: dt.date, w: int, sid: str, service: str, started: dt.datetime, ended: dt.datetime
    ) -> CaseFact:
        rng = self.rng
        promised = {"A": 5, "B": 10, "C": 20}[service]
        abandoned = rng.random() < 0.03
        overdue = not abandoned and rng.random() < 0.04
        on_site = not abandoned and not overdue and rng.random() < SERVICES[service][2]
        if abandoned:
            completed = None
        elif on_site:
            completed = ended
        elif overdue:
            completed = ended + dt.timedelta(days=promised * 1.5)
        else:
            completed = ended + dt.timedelta(days=rng.uniform(1, promised * 1.3))
        digest = rng.choice(self.regulars) if rng.random() < 0.08 else self.digest(sid)
        return CaseFact(
            case_no=f"C{sid}",
            hall_id=self.spec.hall_id,
            item_code=f"item-{service}",
            department=f"dept-{service}",
            window=w,
            staff=self.staff(w),
            applicant_digest=digest,
            accepted_at=started + dt.timedelta(seconds=60),
            completed_at=completed,
            status="withdrawn" if abandoned else ("completed" if completed else "running"),
            legal_days=promised * 2,
            promised_days=promised,
            overdue=overdue,
            on_site=on_site,
            complaint=False,
            abandoned=abandoned,
        )

    def press(
        self,
        day: dt.date,
        w: int,
        ended: dt.datetime,
        delay: float,
        key: int,
        sid: str | None,
        case: CaseFact | None,
        invited: bool,
    ) -> PressFact:
        gw, seq = self.next_ref()
        return PressFact(
            gateway_id=gw,
            seq=seq,
            hall_id=self.spec.hall_id,
            business_day=day,
            window=w,
            staff=self.staff(w) if sid else None,
            key=key,
            at=ended + dt.timedelta(seconds=delay),
            session_id=sid,
            invited=invited,
            seconds_after_invitation=delay if invited else None,
            counted=sid is not None,
            case_nos=(case.case_no,) if case else (),
            applicant_digests=(case.applicant_digest,) if case and case.applicant_digest else (),
        )

    def idle_press(self, day: dt.date, w: int, at: dt.datetime, key: int | None = None) -> None:
        k = key if key is not None else self.key(w, "A", 1.0)
        self.extra.append(self.press(day, w, at, 0.0, k, None, None, False))


def _replace(fact: SessionFact, **changes: object) -> SessionFact:
    return dataclasses.replace(fact, **changes)  # type: ignore[arg-type]


def _poisson(rng: random.Random, lam: float) -> int:
    # normal approximation is fine for the busy halls; exact (Knuth) for the quiet ones
    if lam > 30:
        return max(0, round(rng.gauss(lam, math.sqrt(lam))))
    limit, k, prod = math.exp(-lam), 0, rng.random()
    while prod > limit:
        k += 1
        prod *= rng.random()
    return k


def _apply_after(week: _Week, seeds: list[Seed], truth: Truth) -> None:
    """The patterns that rewrite a finished week: streaks, idle presses, 恶意差评, shifts."""
    rng = week.rng
    hall = week.spec.hall_id
    for seed in seeds:
        truth.touched.add((hall, seed.window))
        mine = [s for s in week.sessions if s.fact.window == seed.window]
        pressed = [s for s in mine if s.press is not None and s.press.counted]
        pressed.sort(key=lambda s: _press_of(s).at)
        if seed.pattern is Pattern.KEY_STREAK:
            length = min(int(seed.strength), len(pressed))
            start = rng.randrange(len(pressed) - length + 1)
            for s in pressed[start : start + length]:
                s.press = _replace_press(s.press, key=1)
        elif seed.pattern is Pattern.PRESS_WITHOUT_CITIZEN:
            days = sorted({s.fact.business_day for s in mine})
            for _ in range(int(seed.strength)):
                day = rng.choice(days)
                ends = [s.fact.ended_at for s in mine if s.fact.business_day == day]
                last = max(e for e in ends if e is not None)
                week.idle_press(
                    day, seed.window, last + dt.timedelta(seconds=rng.uniform(150, 3600)), 1
                )
        elif seed.pattern is Pattern.MALICIOUS_SAME_APPLICANT:
            digest = week.digest(f"malicious-{seed.window}")
            for s in rng.sample(mine, min(int(seed.strength), len(mine))):
                _bad_review(week, s, digest=digest)
            truth.digests[digest] = seed
        elif seed.pattern is Pattern.MALICIOUS_ABANDONED_CASES:
            day = rng.choice(sorted({s.fact.business_day for s in mine}))
            today = [s for s in mine if s.fact.business_day == day]
            for s in rng.sample(today, min(int(seed.strength), len(today))):
                _bad_review(week, s, abandoned=True)
        elif seed.pattern is Pattern.CONTRADICTS_RECORD:
            digest = week.digest(f"contradicts-{seed.window}")
            windows = [
                seed.window,
                *rng.sample(
                    [w for w in range(1, week.spec.windows + 1) if w != seed.window],
                    min(int(seed.strength), week.spec.windows) - 1,
                ),
            ]
            for w in windows[: int(seed.strength)]:
                truth.touched.add((hall, w))
                s = rng.choice([s for s in week.sessions if s.fact.window == w])
                _bad_review(week, s, digest=digest, flawless=True)
            truth.digests[digest] = seed
        elif seed.pattern is Pattern.DISTRIBUTION_SHIFT:
            for s in pressed:
                if seed.mode == "good":
                    s.press = _replace_press(s.press, key=1)
                elif rng.random() < seed.strength:
                    s.press = _replace_press(s.press, key=rng.choice([3, 4, 5, 6]))


def _press_of(s: _Session) -> PressFact:
    assert s.press is not None
    return s.press


def _replace_press(press: PressFact | None, **changes: object) -> PressFact:
    assert press is not None
    return dataclasses.replace(press, **changes)  # type: ignore[arg-type]


def _bad_review(
    week: _Week,
    s: _Session,
    *,
    digest: str | None = None,
    abandoned: bool = False,
    flawless: bool = False,
) -> None:
    assert s.case is not None
    case = s.case
    if digest is not None:
        case = dataclasses.replace(case, applicant_digest=digest)
    if abandoned:
        case = dataclasses.replace(
            case,
            abandoned=True,
            status="withdrawn",
            completed_at=None,
            overdue=False,
            on_site=False,
        )
    if flawless:
        case = dataclasses.replace(
            case,
            status="completed",
            completed_at=s.fact.ended_at,
            on_site=True,
            overdue=False,
            abandoned=False,
            complaint=False,
        )
    s.case = case
    key = week.rng.choice([3, 4, 5])
    digests = (case.applicant_digest,) if case.applicant_digest else ()
    if s.press is None:
        ended = s.fact.ended_at
        assert ended is not None
        s.press = week.press(
            s.fact.business_day,
            s.fact.window or 0,
            ended,
            7.0,
            key,
            s.fact.session_id,
            case,
            invited=s.fact.invited,
        )
        s.fact = _replace(s.fact, invitation_end=InvitationEnd.PRESSED if s.fact.invited else None)
    s.press = _replace_press(s.press, key=key, applicant_digests=digests)


def hall_week(
    spec: HallSpec,
    monday: dt.date,
    seed: int,
    seeds: Sequence[Seed] = (),
    truth: Truth | None = None,
) -> Facts:
    week = _Week(spec, monday, seed, list(seeds))
    week.run()
    _apply_after(week, list(seeds), truth if truth is not None else Truth())
    if truth is not None:
        for s in seeds:
            truth.seeded[(spec.hall_id, s.window)] = s
    presses = [s.press for s in week.sessions if s.press is not None] + week.extra
    return Facts(
        hall_id=spec.hall_id,
        period=Period.iso_week(monday),
        presses=tuple(presses),
        sessions=tuple(s.fact for s in week.sessions),
        cases=tuple(s.case for s in week.sessions if s.case is not None),
    )
