# Long module: one synthetic hall day and its ground truth; splitting would part each behaviour from
# the truth it records.
"""A synthetic hall day with ground truth (pure; no I/O).

The simulator plays one hall: a queue machine (tickets, calls, services, no-shows, transfers,
lunch pauses), one evaluator per window answering the gateway's invitations, citizens who press
once, twice, late, never, or without being invited, passers-by pressing at idle windows, and
the gateway that journals all of it — with its clock unsynchronised for the first hour after
boot and again after a midday reboot, device retransmissions, and the invitations a reboot
forgets (UNKNOWN_SESSION). As in real halls, staff call the next number right after finishing
(before the citizen presses); citizens press a few seconds after that call, some linger until
the next citizen has sat down (LATE), some walk away and now and then the next citizen presses
the keys they left lit. Cases (办件, none, one or two of one applicant per service) are accepted
during the service or just after it, except by staff whose habit is to enter them in the
approval system minutes later (entry lag up to 10 minutes), in the order they served people.
``Habits`` holds these behaviours as parameters.

It knows what central should conclude: which service (window, ticket) each press belongs to, its
cases, its flags and whether it counts. Flags follow central/correlation/README.md from the
physical facts the simulator knows (who pressed, when, whether an invitation was open), not
from the engine's own reasoning.
"""

from __future__ import annotations

import datetime as dt
import json
import random
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Any

from central.spine.reading import Incoming
from protocols import topics

BUSINESS_TZ = dt.timezone(dt.timedelta(hours=8), "Asia/Shanghai")
KEY_LABELS = {
    1: "非常满意",
    2: "基本满意",
    3: "服务态度不好",
    4: "办理时间太长",
    5: "业务不熟",
    6: "其他",
}
DEPARTMENTS = {"A": "市公安局", "B": "市场监管局", "C": "人社局", "D": "不动产登记中心"}
TIMEOUT_S = 30
RAPID_S = 3.0  # must equal the config used by the test (CorrelationConfig.rapid_repeat_s)
LATE_GRACE_S = 30.0  # CorrelationConfig.late_grace_s: a next call that never starts
MACHINE_DRIFT = dt.timedelta(hours=2, minutes=13)  # the queue machine's clock is this far off


@dataclass(frozen=True)
class Habits:
    """How the hall's people behave; each a parameter so other scenarios can vary it."""

    # seconds from FN to the next call: real staff call at once, before the citizen presses
    call_after_finish: tuple[float, float] = (1.0, 6.0)
    # share of staff who enter their cases in the approval system after the citizen left,
    # each with a habitual lag (seconds after the service, ±ENTRY_LAG_SPREAD_S) in this range
    entry_lagging_share: float = 0.35
    entry_lag_range: tuple[float, float] = (40.0, 540.0)
    # the others enter cases during the service, now and then just after it (before the
    # next citizen sat down)
    entry_after_share: float = 0.06
    # 综合窗口: (window, another queue it also serves), so a window's next service may be of
    # another category than the case entered late
    comprehensive: tuple[tuple[int, str], ...] = ((8, "A"),)


ENTRY_LAG_SPREAD_S = 30.0


@dataclass(frozen=True)
class Truth:
    window: int
    key: int
    session: tuple[int, str] | None  # (window, ticket) of the service it belongs to
    cases: frozenset[str]
    flags: frozenset[str]
    counted: bool
    category: str


@dataclass
class SessionTruth:
    window: int
    ticket: str
    staff: str
    queued_at: dt.datetime | None
    called_at: dt.datetime
    started_at: dt.datetime | None
    ended_at: dt.datetime
    outcome: str  # finished | no_show | transferred
    service: str = ""  # the queue category it was served in
    finish_mseq: int | None = None
    next_open_at: dt.datetime | None = None  # the window's next call
    next_start_at: dt.datetime | None = None  # … and that service's start (None: a no-show)
    cases: list[str] = field(default_factory=list)


@dataclass
class CaseTruth:
    case_no: str
    window: int | None
    staff: str | None
    department: str
    accepted_at: dt.datetime
    item_code: str
    completed_at: dt.datetime | None
    session: tuple[int, str] | None
    applicant: str | None = None  # the applicant's id digest (一次办多件 shares it)


@dataclass
class GenEvent:
    at: dt.datetime  # true time the gateway journaled it
    order: int
    kind: str
    body: dict[str, Any]
    seq: int = 0
    boot: str = ""
    synced: bool = True
    utc: dt.datetime | None = None
    mono_ns: int = 0
    press: _Press | None = None
    happened: dt.datetime | None = None  # a queue message received late: when it happened


@dataclass
class _Press:
    at: dt.datetime
    window: int
    key: int
    category: str
    session: tuple[int, str] | None
    invited: bool
    token: int
    invite: GenEvent | None  # the invitation it answers (also when the gateway forgot it)
    repeat: bool = False  # SESSION_REPEAT: the device sent a closed session's token again
    retransmit: bool = False
    event: GenEvent | None = None


@dataclass
class HallDay:
    hall: str
    gateway: str
    day: dt.date
    events: list[GenEvent]
    sessions: dict[tuple[int, str], SessionTruth]
    cases: list[CaseTruth]
    truth: dict[int, Truth]  # seq → truth, for every press that is not a retransmission
    retransmits: set[int]
    not_called: set[str]
    reboot_at: dt.datetime
    boots: dict[str, tuple[dt.datetime, dt.datetime, dt.timedelta]]  # boot → (start, sync, skew)
    outages: list[tuple[dt.datetime, dt.datetime]] = field(default_factory=list)  # queue link


@dataclass
class _Window:
    number: int
    service: str
    staff: str
    ready: dt.datetime
    addr: int
    token: int = 0
    dev_seq: int = 0
    lunch_done: bool = False
    closed: bool = False
    open_until: dt.datetime | None = None  # the previous citizen is at the window until then
    invite_until: dt.datetime | None = None  # the device has an invitation open until then
    quick_seat: bool = False  # the next citizen sits down while the previous one lingers
    last_end: dt.datetime | None = None
    entry_lag: float | None = None  # this person enters cases that long after the service

    def next_token(self) -> int:
        self.token = self.token % 255 + 1
        return self.token

    def next_dev_seq(self) -> int:
        self.dev_seq = (self.dev_seq + 1) % 256
        return self.dev_seq


class _Sim:
    def __init__(self, seed: int, day: dt.date, windows: int, habits: Habits) -> None:
        self.rng = random.Random(seed)
        self.day = day
        self.events: list[GenEvent] = []
        self.order = 0
        self.mseq = 4000
        self.sessions: dict[tuple[int, str], SessionTruth] = {}
        self.by_window: dict[int, list[SessionTruth]] = {}
        self.presses: list[_Press] = []
        services = "ABCD"
        self.windows = [
            _Window(
                w,
                services[(w - 1) // 2 % len(services)],
                f"{100100 + w * 37:06d}",
                self.t(8, 55) + dt.timedelta(seconds=self.rng.uniform(0, 480)),
                0x80 + w,
            )
            for w in range(1, windows + 1)
        ]
        self.queues: dict[str, list[tuple[dt.datetime, str]]] = {s: [] for s in services}
        self.reboot_at = self.t(11, 40)
        self.outages: list[tuple[dt.datetime, dt.datetime]] = []  # gateway ↔ queue machine
        self.machine_drift = 0.0  # s/s the machine's clock gains
        self.habits = habits
        for w in self.windows:  # some people enter their cases after the citizen left
            if self.rng.random() < habits.entry_lagging_share:
                w.entry_lag = self.rng.uniform(*habits.entry_lag_range)

    def t(self, hour: int, minute: int, second: float = 0) -> dt.datetime:
        return dt.datetime.combine(
            self.day, dt.time(hour, minute), tzinfo=BUSINESS_TZ
        ) + dt.timedelta(seconds=second)

    def emit(self, at: dt.datetime, kind: str, body: dict[str, Any]) -> GenEvent:
        self.order += 1
        ev = GenEvent(at, self.order, kind, body)
        self.events.append(ev)
        return ev

    def queue(self, at: dt.datetime, type_: str, **fields: Any) -> GenEvent:
        self.mseq += 1
        gained = dt.timedelta(seconds=(at - self.t(8, 0)).total_seconds() * self.machine_drift)
        machine = (at + MACHINE_DRIFT + gained).astimezone(BUSINESS_TZ).replace(tzinfo=None)
        parts = [str(v) for v in fields.values()]
        raw = f"$QM,{self.mseq},{type_},{','.join(parts)},{machine:%Y%m%d%H%M%S}*00"
        body = {
            "mseq": self.mseq,
            "type": type_,
            **fields,
            "machine_time": machine.isoformat(timespec="seconds"),
            "raw": raw,
        }
        return self.emit(at, "queue.event", {k: v for k, v in body.items() if v is not None})

    # -- the queue ---------------------------------------------------------------------------

    def arrivals(self) -> None:
        for service in self.queues:
            at, n = self.t(8, 50), 0
            while True:
                at += dt.timedelta(seconds=self.rng.expovariate(1 / 240))
                if at >= self.t(16, 30):
                    break
                n += 1
                ticket = f"{service}{n:03d}"
                self.queues[service].append((at, ticket))
                waiting = sum(1 for a, _ in self.queues[service] if a <= at)
                self.queue(at, "TK", ticket=ticket, service=service, waiting=waiting)

    def run(self) -> None:
        self.arrivals()
        for w in self.windows:
            self.queue(w.ready, "LI", window=w.number, staff=w.staff)
            self.orphan_press(w, w.ready - dt.timedelta(seconds=self.rng.uniform(200, 600)))
        while True:
            live = [w for w in self.windows if not w.closed]
            if not live:
                break
            w = min(live, key=lambda x: (x.ready, x.number))
            self.step(w)

    def step(self, w: _Window) -> None:
        t = w.ready
        if t >= self.t(17, 0):
            self.queue(t, "LO", window=w.number, staff=w.staff)
            w.closed = True
            return
        if not w.lunch_done and t >= self.t(12, 0):
            w.lunch_done = True
            back = self.t(13, 0) + dt.timedelta(seconds=self.rng.uniform(0, 300))
            away, returns = ("PS", "RS") if w.number % 2 else ("LO", "LI")
            self.queue(t, away, window=w.number, staff=w.staff)
            if self.rng.random() < 0.6:
                self.orphan_press(w, t + dt.timedelta(seconds=self.rng.uniform(300, 1800)))
            self.queue(back, returns, window=w.number, staff=w.staff)
            w.ready = back + dt.timedelta(seconds=1)
            return
        serves = [w.service, *(q for n, q in self.habits.comprehensive if n == w.number)]
        waiting = [(x, q) for q in serves for x in self.queues[q] if x[0] <= t]
        if not waiting:
            w.ready = t + dt.timedelta(seconds=20)
            return
        (queued_at, ticket), category = min(waiting)
        self.queues[category].remove((queued_at, ticket))
        self.serve(w, t, ticket, queued_at, category)

    def serve(
        self, w: _Window, t: dt.datetime, ticket: str, queued_at: dt.datetime, category: str
    ) -> None:
        rng, s = self.rng, dt.timedelta(seconds=1)
        self.queue(t, "CL", ticket=ticket, window=w.number)
        truth = SessionTruth(w.number, ticket, w.staff, queued_at, t, None, t, "finished", category)
        self.sessions[(w.number, ticket)] = truth
        self.by_window.setdefault(w.number, []).append(truth)
        if rng.random() < 0.04:  # 过号: two recalls, then NS
            self.queue(t + 40 * s, "RC", ticket=ticket, window=w.number)
            truth.ended_at, truth.outcome = t + 80 * s, "no_show"
            self.queue(truth.ended_at, "NS", ticket=ticket, window=w.number)
            w.ready = truth.ended_at + rng.uniform(3, 20) * s
            return
        if w.quick_seat:  # the previous citizen lingers at the evaluator; this one sits down
            start = t + rng.uniform(3, 6) * s
        else:
            start = t + rng.uniform(8, 35) * s
            if w.open_until is not None and start <= w.open_until:
                start = w.open_until + rng.uniform(1, 5) * s  # the previous citizen evaluating
        w.quick_seat = False
        end = start + rng.uniform(150, 540) * s
        truth.started_at, truth.ended_at = start, end
        self.queue(start, "ST", ticket=ticket, window=w.number, staff=w.staff)
        stray = start + (end - start) * rng.uniform(0.1, 0.9)
        if rng.random() < 0.04 and (w.invite_until is None or stray > w.invite_until):
            # stray press while being served (no invitation open on the device)
            self.press(w, stray, "stray", (w.number, ticket), invited=False, token=0, invite=None)
        others = [x for x in self.queues if x != category]
        if rng.random() < 0.04:  # 转窗: the ticket waits again in another service's queue
            truth.outcome = "transferred"
            to = rng.choice(others)
            self.queue(end, "TR", ticket=ticket, window=w.number, to_service=to)
            self.queues[to].append((end, ticket))
            w.ready = end + rng.uniform(5, 60) * s
            return
        fn = self.queue(end, "FN", ticket=ticket, window=w.number, staff=w.staff)
        truth.finish_mseq = fn.body["mseq"]
        # real staff call the next number as soon as they finish, before the citizen presses
        w.ready = end + rng.uniform(*self.habits.call_after_finish) * s
        self.evaluate(w, truth, fn)

    # -- the evaluator -----------------------------------------------------------------------

    def evaluate(self, w: _Window, truth: SessionTruth, fn: GenEvent) -> None:
        """The citizen at the evaluator after FN; the staff have (usually) called the next
        number already, so most presses come after that call, some after the next citizen
        sat down (LATE)."""
        rng, s, end = self.rng, dt.timedelta(seconds=1), truth.ended_at
        if any(cut <= end < back for cut, back in self.outages):
            self.evaluate_unseen(w, truth)
            return
        token = w.next_token()
        invite = self.emit(
            end + 0.4 * s,
            "evaluator.invite",
            {
                "window": w.number,
                "addr": w.addr,
                "invitation": {
                    "session": token,
                    "ticket": truth.ticket,
                    "staff": w.staff,
                    "invited_mono_ns": 0,
                    "qm_mseq": fn.body["mseq"],
                },
                "timeout_s": TIMEOUT_S,
                "status": "ok",
            },
        )
        key = (w.number, truth.ticket)
        roll = rng.random()
        r = rng.uniform(3, 25)  # a few seconds after the next call
        w.invite_until = end + TIMEOUT_S * s
        if roll < 0.12:  # walks away without pressing: the invitation times out
            self.emit(
                end + TIMEOUT_S * s,
                "evaluator.invite_timeout",
                {
                    "window": w.number,
                    "addr": w.addr,
                    "dev_seq": w.next_dev_seq(),
                    "session": token,
                    "invitation": invite.body["invitation"],
                    "marks": [],
                    "raw": "ff68",
                },
            )
            w.open_until = end
            if roll < 0.03:  # … and the next citizen, seated, presses the still-lit keys
                w.quick_seat = True
                w.invite_until = end + rng.uniform(20, 28) * s
                self.press(
                    w, w.invite_until, "next_citizen", key, invited=True, token=token, invite=invite
                )
            return
        if roll < 0.20:  # lingers: presses after the next citizen has sat down
            w.quick_seat = True
            r = rng.uniform(18, 28)
            self.press(w, end + r * s, "late", key, invited=True, token=token, invite=invite)
        elif roll < 0.25:  # the gateway had forgotten the invitation
            self.press(
                w,
                end + r * s,
                "unknown",
                key,
                invited=True,
                token=token,
                invite=invite,
                forgotten=True,
            )
        else:
            self.press(w, end + r * s, "normal", key, invited=True, token=token, invite=invite)
            if roll < 0.30:  # a quick second press: the device sends SESSION 0
                r += rng.uniform(0.4, 2.5)
                self.press(w, end + r * s, "rapid", key, invited=False, token=0, invite=None)
            elif roll < 0.34:  # the device repeats the closed session
                r += rng.uniform(1, 12)
                self.press(
                    w,
                    end + r * s,
                    "repeat",
                    key,
                    invited=True,
                    token=token,
                    invite=invite,
                    repeat=True,
                )
        w.open_until = end + r * s
        w.invite_until = min(w.invite_until, end + r * s)

    def evaluate_unseen(self, w: _Window, truth: SessionTruth) -> None:
        """The gateway's link to the queue machine is down: it never saw the FN in time, so
        nobody was invited; some citizens press anyway (the device sends SESSION 0), before
        the next citizen sits down."""
        if self.rng.random() < 0.6:
            r = self.rng.uniform(2, 12)
            at = truth.ended_at + dt.timedelta(seconds=r)
            self.press(
                w, at, "unseen", (w.number, truth.ticket), invited=False, token=0, invite=None
            )
            w.open_until = at

    def press(
        self,
        w: _Window,
        at: dt.datetime,
        category: str,
        session: tuple[int, str] | None,
        *,
        invited: bool,
        token: int,
        invite: GenEvent | None,
        repeat: bool = False,
        forgotten: bool = False,
    ) -> None:
        key = self.rng.choices(range(1, 7), weights=(55, 25, 6, 6, 4, 4))[0]
        across_reboot = invite is not None and invite.at < self.reboot_at <= at
        gateway_knows = invite is not None and not forgotten and not across_reboot
        marks: list[str] = []
        if token == 0:
            marks.append("NO_SESSION")
        elif not gateway_knows:
            marks.append("UNKNOWN_SESSION")
        elif repeat:
            marks.append("SESSION_REPEAT")
        p = _Press(at, w.number, key, category, session, invited, token, invite, repeat)
        body = {
            "window": w.number,
            "addr": w.addr,
            "dev_seq": w.next_dev_seq(),
            "key": key,
            "label": KEY_LABELS[key],
            "session": token,
            "invitation": invite.body["invitation"] if gateway_knows and invite else None,
            "marks": marks,
            "raw": f"ff6805056880{w.addr:02x}11",
        }
        p.event = self.emit(at, "evaluator.key", body)
        p.event.press = p
        self.presses.append(p)
        near_reboot = abs((at - self.reboot_at).total_seconds()) < 10
        if self.rng.random() < 0.04 and not near_reboot:  # our echo was lost: the device resends
            copy = dict(body, marks=[m for m in marks if m != "SESSION_REPEAT"] + ["RETRANSMIT"])
            ev = self.emit(at + dt.timedelta(seconds=0.35), "evaluator.key", copy)
            ev.press = _Press(
                ev.at,
                w.number,
                key,
                "retransmit",
                session,
                invited,
                token,
                invite,
                repeat,
                retransmit=True,
                event=ev,
            )

    def orphan_press(self, w: _Window, at: dt.datetime) -> None:
        """A passer-by at an idle window: nothing served there within minutes."""
        self.press(w, at, "orphan", None, invited=False, token=0, invite=None)


def _link_next(sim: _Sim) -> None:
    """Each service's next one at its window: until that one starts, the person at the
    evaluator is still this service's citizen."""
    for sessions in sim.by_window.values():
        for truth, nxt in pairwise(sessions):
            truth.next_open_at, truth.next_start_at = nxt.called_at, nxt.started_at


def _belongs_until(truth: SessionTruth) -> dt.datetime | None:
    if truth.next_start_at is not None:
        return truth.next_start_at
    if truth.next_open_at is None:
        return None
    return truth.next_open_at + dt.timedelta(seconds=LATE_GRACE_S)


def _cases(sim: _Sim, hall: str) -> list[CaseTruth]:
    """None, one or two cases (one applicant) per finished service, accepted during it, just
    after it, or — for a person who enters cases late — their habitual lag after it. A person
    enters cases in the order they served people."""
    rng, out, n, applicants = sim.rng, [], 0, 0
    habits = sim.habits
    for window, sessions in sorted(sim.by_window.items()):
        w = sim.windows[window - 1]
        last_entry: dt.datetime | None = None
        for i, truth in enumerate(sessions):
            if truth.outcome != "finished" or truth.started_at is None:
                continue
            # the next citizen who actually sat down here (a no-show never does)
            seated = next((x.started_at for x in sessions[i + 1 :] if x.started_at), None)
            count = rng.choices((0, 1, 2), weights=(25, 60, 15))[0]
            applicants += 1
            applicant = f"{applicants:064x}"
            for _ in range(count):
                n += 1
                accepted = _accepted_at(rng, w, truth, seated, habits)
                if last_entry is not None and accepted <= last_entry:
                    accepted = last_entry + dt.timedelta(seconds=rng.uniform(1, 5))
                last_entry = accepted
                case_no = f"{hall}-{sim.day:%Y%m%d}-{n:04d}"
                completed = accepted if rng.random() < 0.5 else None
                out.append(
                    CaseTruth(
                        case_no,
                        window,
                        truth.staff,
                        DEPARTMENTS[truth.service],
                        accepted,
                        f"{truth.service}-ITEM-{rng.randrange(1, 6)}",
                        completed,
                        (window, truth.ticket),
                        applicant,
                    )
                )
                truth.cases.append(case_no)
    for k in range(3):  # accepted online (网办): no window, no service
        n += 1
        out.append(
            CaseTruth(
                f"{hall}-{sim.day:%Y%m%d}-{n:04d}",
                None,
                None,
                DEPARTMENTS["A"],
                sim.t(10 + k, 5),
                "A-ITEM-9",
                None,
                None,
            )
        )
    return out


def _accepted_at(
    rng: random.Random, w: _Window, truth: SessionTruth, seated: dt.datetime | None, habits: Habits
) -> dt.datetime:
    assert truth.started_at is not None
    if w.entry_lag is not None:
        lag = w.entry_lag + rng.uniform(-ENTRY_LAG_SPREAD_S, ENTRY_LAG_SPREAD_S)
        return truth.ended_at + dt.timedelta(seconds=min(max(lag, 5.0), 600.0))
    room = 240.0 if seated is None else (seated - truth.ended_at).total_seconds() - 2
    if rng.random() < habits.entry_after_share and room > 5:
        # entered after the citizen left, before the next one sat down
        return truth.ended_at + dt.timedelta(seconds=rng.uniform(2, min(room, 240)))
    span = (truth.ended_at - truth.started_at).total_seconds()
    return truth.started_at + dt.timedelta(seconds=span * rng.uniform(0.1, 0.9))


def _truth(sim: _Sim) -> dict[int, Truth]:
    """Flags from what happened, by the definitions in central/correlation/README.md."""
    presses = sorted((p for p in sim.presses), key=lambda p: p.event.seq if p.event else 0)
    flags: dict[int, set[str]] = {}
    last_on_device: dict[int, dt.datetime] = {}
    for p in presses:
        assert p.event is not None
        f: set[str] = set()
        if p.session is None:
            f.add("ORPHAN")
        if not p.invited:
            f.add("OUT_OF_SESSION")
        session = sim.sessions[p.session] if p.session else None
        until = _belongs_until(session) if session is not None else None
        if p.invited and until is not None and p.at > until:
            f.add("LATE")
        previous = last_on_device.get(p.window)
        if previous is not None and (p.at - previous).total_seconds() < RAPID_S:
            f.add("RAPID_REPEAT")
        last_on_device[p.window] = p.at
        flags[p.event.seq] = f
    kept: set[int] = set()
    by_session: dict[tuple[int, str], list[_Press]] = {}
    for p in presses:
        if p.session is not None:
            by_session.setdefault(p.session, []).append(p)
    for group in by_session.values():
        first = None
        for p in group:
            assert p.event is not None
            if first is None and not flags[p.event.seq] & {"OUT_OF_SESSION", "LATE"}:
                first = p.event.seq
                kept.add(first)
            elif first is not None:
                flags[p.event.seq].add("DUPLICATE")
    out = {}
    for p in presses:
        assert p.event is not None
        session = sim.sessions[p.session] if p.session else None
        out[p.event.seq] = Truth(
            p.window,
            p.key,
            p.session,
            frozenset(session.cases) if session else frozenset(),
            frozenset(flags[p.event.seq]),
            p.event.seq in kept,
            p.category,
        )
    return out


def _clock(
    sim: _Sim, events: list[GenEvent]
) -> dict[str, tuple[dt.datetime, dt.datetime, dt.timedelta]]:
    """Two boots: each unsynchronised for a while (its stamps off by ``skew``), then synced."""
    boots = {
        "b1" * 8: (sim.t(8, 40), sim.t(9, 40), -dt.timedelta(hours=3, minutes=7)),
        "b2" * 8: (sim.reboot_at, sim.t(13, 20), -dt.timedelta(hours=14)),
    }
    for ev in events:
        boot, (start, sync, skew) = max(
            ((b, v) for b, v in boots.items() if v[0] <= ev.at), key=lambda bv: bv[1][0]
        )
        ev.boot = boot
        ev.synced = ev.at >= sync
        ev.utc = ev.at if ev.synced else ev.at + skew
        uptime_us = (ev.at - start) // dt.timedelta(microseconds=1)
        ev.mono_ns = (15_000_000 + uptime_us) * 1000  # booted 15 s before the service started
    for ev in events:
        if ev.kind == "evaluator.invite":
            ev.body["invitation"]["invited_mono_ns"] = ev.mono_ns
    return boots


def _resend_after_outages(sim: _Sim) -> None:
    """While the link is down the machine keeps its messages; when it is back it sends them all,
    in order, 25 ms apart, and what happens meanwhile queues behind them until it caught up."""
    pace = dt.timedelta(milliseconds=25)
    for cut, back in sim.outages:
        sent = back
        for ev in sorted(
            (e for e in sim.events if e.kind == "queue.event" and e.at >= cut),
            key=lambda e: (e.at, e.order),
        ):
            if ev.at >= sent:
                break  # caught up: live again
            ev.happened, ev.at = ev.at, sent + pace
            sent = ev.at


def generate(
    seed: int = 7,
    *,
    day: dt.date = dt.date(2026, 11, 20),
    windows: int = 8,
    hall: str = "H1",
    gateway: str = "gw1",
    queue_outages: tuple[tuple[dt.time, dt.timedelta], ...] = (),
    machine_drift: float = 0.0,
    habits: Habits | None = None,
) -> HallDay:
    """``queue_outages``: (start, length) of cuts between the gateway and the queue machine;
    ``machine_drift``: seconds per second the machine's clock gains; ``habits``: how the
    hall's people behave."""
    sim = _Sim(seed, day, windows, habits or Habits())
    sim.machine_drift = machine_drift
    sim.outages = [
        (start, start + length)
        for start, length in (
            (dt.datetime.combine(day, t, tzinfo=BUSINESS_TZ), length) for t, length in queue_outages
        )
    ]
    at = sim.t(8, 40, 10)  # heartbeats all day
    while at < sim.t(17, 40):
        sim.queue(at, "HB", waiting=0)
        at += dt.timedelta(seconds=30)
    sim.run()
    # the machine replays its last unacknowledged lines after the gateway reboots; the new
    # gateway process journals three of them again (same mseq, same line)
    before = [e for e in sim.events if e.kind == "queue.event" and e.at < sim.reboot_at]
    for ev in sorted(before, key=lambda e: (e.at, e.order))[-3:]:
        sim.emit(sim.reboot_at + dt.timedelta(seconds=2), "queue.event", dict(ev.body))
    _resend_after_outages(sim)
    events = sorted(sim.events, key=lambda e: (e.at, e.order))
    for i, ev in enumerate(events, start=1):
        ev.seq = i
    _link_next(sim)
    cases = _cases(sim, hall)
    boots = _clock(sim, events)
    retransmits = {e.seq for e in events if e.press is not None and e.press.retransmit}
    waiting = {ticket for q in sim.queues.values() for _, ticket in q}
    return HallDay(
        hall,
        gateway,
        day,
        events,
        sim.sessions,
        cases,
        _truth(sim),
        retransmits,
        waiting,
        sim.reboot_at,
        boots,
        sim.outages,
    )


# --------------------------------------------------------------------------- delivering it


def event_record(ev: GenEvent) -> dict[str, Any]:
    """The event as its gateway journals and sends it (the envelope's event record)."""
    assert ev.utc is not None
    return {
        "seq": ev.seq,
        "utc": ev.utc.astimezone(dt.UTC).isoformat().replace("+00:00", "Z"),
        "mono_ns": ev.mono_ns,
        "boot": ev.boot,
        "synced": ev.synced,
        "kind": ev.kind,
        "body": ev.body,
    }


def messages(day: HallDay, events: list[GenEvent], batch: int = 400) -> list[Incoming]:
    """The events as the gateway publishes them: consecutive seq runs of at most ``batch``."""
    out: list[Incoming] = []
    run: list[GenEvent] = []

    def flush() -> None:
        if run:
            doc = {
                "v": 1,
                "hall": day.hall,
                "gateway": day.gateway,
                "sender_boot": run[-1].boot,
                "events": [event_record(e) for e in run],
            }
            out.append(
                Incoming(
                    topics.topic(day.hall, day.gateway, topics.Channel.EVENTS),
                    json.dumps(doc).encode(),
                    dt.datetime.now(dt.UTC),
                )
            )
            run.clear()

    for ev in sorted(events, key=lambda e: e.seq):
        if run and (ev.seq != run[-1].seq + 1 or len(run) >= batch):
            flush()
        run.append(ev)
    flush()
    return out
