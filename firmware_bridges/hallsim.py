# Long module: one hall's behaviour and the ground truth it writes; each simulated act stays beside
# the truth recorded for it.
"""A simulated hall that behaves like a real one: a $QM queue machine and a bus of FF 68
evaluators on pseudo-terminals, optionally a camera (live MJPEG) over windows 1 and 2, and a
ground-truth file saying what every simulated person did and what central should make of it.

What happens at a window, as in a real hall:

- staff call the next number right after finishing (FN, then CL within a second or two);
- the called citizen needs ``WALK_UP_S`` (12–30 s) to reach the window, where service starts (ST);
- the citizen just served presses a key a few seconds after FN, while the next one is still on
  the way — the evaluation belongs to the service that just finished;
- some walk away without pressing, some press twice, and now and then one of the anomalies
  central flags (``Anomaly``): a stray key during someone else's service (OUT_OF_SESSION), a key
  at the closed window (ORPHAN), a double press (DUPLICATE, RAPID_REPEAT when quick), a citizen
  who comes back after the next ticket was called and nobody came (LATE), staff pressing the
  key themselves after the citizen left (SELF_PRESS_SUSPECTED, at a window the camera watches).

Human-scale moments (walking, pressing, recalls) run in real seconds, because the gateway and
central judge them on real clocks; only arrivals and service durations are accelerated
(``speed`` hall seconds per real second). Every press is written to ``DIR/ground-truth.jsonl``
with the flags and counting central should give it under the documented rules (an invited
press belongs to its service until the next service at that window starts, or until
``LATE_GRACE_S`` after the next call when nobody starts); every service is written too (the
approval-system feeder turns them into cases). ``python -m firmware_bridges.hallsim DIR``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from firmware_bridges.ff68.simulator import EvaluatorBusSimulator
from firmware_bridges.qm.simulator import DEFAULT_SERVICES, QueueMachineSimulator

# How citizens answer, roughly as the seeds' halls report (满意率 well above 95%).
KEY_WEIGHTS = {1: 80, 2: 14, 3: 2, 4: 2, 5: 1, 6: 1}
WALK_UP_S = (12.0, 30.0)  # called → at the window (ST)
CALL_NEXT_S = (0.5, 2.0)  # FN → the next CL
PRESS_AFTER_S = (2.0, 7.0)  # FN → the served citizen's key
LEAVE_AFTER_PRESS_S = 1.5
INVITE_WAIT_S = 5.0  # a citizen waits this long for the evaluator to light up
# Central's thresholds the truth is written against (central/correlation/README.md).
RAPID_REPEAT_S = 3.0
LATE_GRACE_S = 30.0
MARGIN_S = 0.4  # keep presses this far from a threshold, so the expected flag is certain
INVITE_TIMEOUT_S = 60  # the gateway's invite_timeout_s the demo configures
CAMERA_WINDOWS = (1, 2)  # the windows the rendered camera scene shows


class Anomaly(StrEnum):
    """What a window's next service will show besides an ordinary evaluation."""

    WALK_AWAY = "walk_away"  # no key: the invitation times out
    STRAY = "stray"  # someone presses during the service: OUT_OF_SESSION
    EARLY_PRESS = "early_press"  # presses before FN, then answers: OUT_OF_SESSION, RAPID_REPEAT
    TWICE_QUICK = "twice_quick"  # presses again at once: DUPLICATE, OUT_OF_SESSION, RAPID_REPEAT
    TWICE_SLOW = "twice_slow"  # presses again a few seconds later: DUPLICATE, OUT_OF_SESSION
    LATE = "late"  # comes back after the next ticket was called and did not show: LATE
    SELF_PRESS = "self_press"  # staff press after the citizen left: SELF_PRESS_SUSPECTED
    PAUSE = "pause"  # staff pause after this service instead of calling the next number


# Rates per finished service once the opening plan has shown each kind once.
ANOMALY_RATES: Mapping[Anomaly, float] = {
    Anomaly.WALK_AWAY: 0.07,
    Anomaly.STRAY: 0.01,
    Anomaly.EARLY_PRESS: 0.01,
    Anomaly.TWICE_QUICK: 0.02,
    Anomaly.TWICE_SLOW: 0.01,
    Anomaly.LATE: 0.01,
    Anomaly.SELF_PRESS: 0.03,
    Anomaly.PAUSE: 0.03,
}
ORPHAN_EVERY_S = (120.0, 300.0)  # a key at the closed window now and then


@dataclass
class Expect:
    counted: bool
    flags: set[str] = field(default_factory=set)


@dataclass
class _Window:
    number: int
    staff: str
    services: frozenset[str]
    rng: random.Random
    plan: deque[Anomaly] = field(default_factory=deque)


def staff_numbers(seed: int, windows: int) -> dict[int, str]:
    """The 6-digit staff number serving each window (the same for a seed)."""
    return {
        w: f"{random.Random(f'{seed}/{w}').randrange(100000, 1000000):06d}"
        for w in range(1, windows + 1)
    }


class SimulatedHall:
    def __init__(
        self,
        directory: Path,
        *,
        windows: int = 8,
        speed: float = 20.0,
        seed: int = 1,
        corrupt_rate: float = 0.01,
        lead_s: float = 12.0,
        camera_windows: Sequence[int] = (),
        arrival_gap: float | None = None,
        service_time: tuple[float, float] = (120.0, 600.0),
    ) -> None:
        self.directory = directory
        self.windows = windows
        self.closed_window = windows + 1  # an evaluator at a window nobody staffs today
        self.speed = speed
        self.seed = seed
        self.rng = random.Random(seed)
        self.lead_s = lead_s
        self.camera_windows = tuple(w for w in camera_windows if 1 <= w <= windows)
        self.service_time = service_time
        # Arrivals a little slower than the windows can serve, so the queue neither grows
        # without bound nor runs dry: a real morning.
        cycle = sum(WALK_UP_S) / 2 + sum(service_time) / 2 / speed + sum(CALL_NEXT_S) / 2
        self.arrival_gap_real = arrival_gap / speed if arrival_gap else cycle / windows / 0.95
        directory.mkdir(parents=True, exist_ok=True)
        self.bus = EvaluatorBusSimulator(
            directory / "ttyEVAL0", seed=seed, corrupt_rate=corrupt_rate, history=20_000
        )
        self.machine = QueueMachineSimulator(pty_dir=directory, link_name="ttyQM0", history=20_000)
        self.scene: Any = None  # a LiveScene when a camera is wanted (OpenCV, imported lazily)
        self._truth = (directory / "ground-truth.jsonl").open("a", encoding="utf-8")
        self._last_press: dict[int, float] = {}
        self._names = dict(DEFAULT_SERVICES)
        codes = [code for code, _ in DEFAULT_SERVICES]
        self._windows = {
            w: _Window(
                w,
                staff,
                frozenset({codes[(w - 1) % len(codes)], codes[w % len(codes)]}),
                random.Random(f"{seed}/{w}/behaviour"),
            )
            for w, staff in staff_numbers(seed, windows).items()
        }
        self._plan_openers()
        self._tasks: set[asyncio.Task[None]] = set()
        self._stopping = False
        self.presses = 0

    @property
    def evaluator_port(self) -> Path:
        return self.directory / "ttyEVAL0"

    @property
    def queue_port(self) -> Path:
        return self.directory / "ttyQM0"

    @staticmethod
    def addr(window: int) -> int:
        return 0x80 + window

    def staff_of(self, window: int) -> str:
        return self._windows[window].staff

    def _plan_openers(self) -> None:
        """Each anomaly once early on, spread over the windows, so even a short run shows
        every flag: camera windows get the self-press, the others the rest."""
        camera = [self._windows[w] for w in self.camera_windows]
        plain = [w for w in self._windows.values() if w.number not in self.camera_windows]
        if camera:
            camera[0].plan.append(Anomaly.SELF_PRESS)
        kinds = [
            Anomaly.LATE,
            Anomaly.TWICE_QUICK,
            Anomaly.STRAY,
            Anomaly.EARLY_PRESS,
            Anomaly.TWICE_SLOW,
            Anomaly.WALK_AWAY,
        ]
        targets = plain or list(self._windows.values())
        for i, kind in enumerate(kinds):
            targets[i % len(targets)].plan.append(kind)

    # -- running -----------------------------------------------------------------------------

    async def run(self, *, duration: float | None = None) -> None:
        """Open the hall, serve for ``duration`` real seconds (or for ever), then stop issuing
        tickets, let the windows empty the queue and close."""
        async with self.machine:
            await self.bus.start()
            for window in range(1, self.closed_window + 1):
                self.bus.add(self.addr(window))
            arrivals = asyncio.create_task(self._arrivals(duration))
            orphans = asyncio.create_task(self._closed_window())
            try:
                await asyncio.sleep(self.lead_s)  # an empty hall: the camera learns its seats
                async with asyncio.TaskGroup() as group:
                    for staffed in self._windows.values():
                        group.create_task(self._window(staffed))
                for task in list(self._tasks):
                    await task
            finally:
                arrivals.cancel()
                orphans.cancel()
                for task in self._tasks:
                    task.cancel()
                await self.bus.stop()
                self._truth.close()

    async def _arrivals(self, duration: float | None) -> None:
        deadline = None if duration is None else time.monotonic() + duration
        offered = sorted(set().union(*(w.services for w in self._windows.values())))
        # A few early birds wait at the door.
        for _ in range(self.windows):
            service = self.rng.choice(offered)
            self.machine.issue_ticket(service, self._names.get(service))
        while deadline is None or time.monotonic() < deadline:
            await asyncio.sleep(self.rng.expovariate(1 / self.arrival_gap_real))
            service = self.rng.choice(offered)
            self.machine.issue_ticket(service, self._names.get(service))
            self._show_queue()
        self._stopping = True

    async def _closed_window(self) -> None:
        await asyncio.sleep(self.lead_s + 20)
        while True:
            await self._press(
                self.closed_window,
                self._key(),
                "closed_window",
                None,
                Expect(False, {"ORPHAN", "OUT_OF_SESSION"}),
            )
            await asyncio.sleep(self.rng.uniform(*ORPHAN_EVERY_S))

    def _spawn(self, coroutine: Any) -> None:
        task: asyncio.Task[None] = asyncio.create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _window(self, w: _Window) -> None:
        machine = self.machine
        machine.login(w.number, w.staff)
        self._scene("staff_in", w.number)
        while True:
            ticket = machine.next_waiting(w.services)
            if ticket is None:
                if self._stopping:
                    break
                await asyncio.sleep(0.5)
                continue
            machine.call(ticket, w.number)
            called = time.time()
            self._show_queue()
            await asyncio.sleep(w.rng.uniform(*WALK_UP_S) - 2.0)
            self._scene("citizen_in", w.number)
            await asyncio.sleep(2.0)
            machine.start(ticket, w.number, w.staff)
            started = time.time()
            anomaly = self._next_anomaly(w)
            device = self.bus.devices[self.addr(w.number)]
            if anomaly in (Anomaly.STRAY, Anomaly.EARLY_PRESS) and device.invitation is not None:
                # The last citizen's invitation is still open: a key now would answer it.
                anomaly = None
            duration = w.rng.uniform(*self.service_time) / self.speed
            if anomaly is Anomaly.STRAY:
                await self._stray_during_service(w, duration)
            elif anomaly is Anomaly.EARLY_PRESS:
                await asyncio.sleep(max(duration - 1.0, 1.5))
                await self._press(
                    w.number, self._key(), "early_press", ticket, Expect(False, {"OUT_OF_SESSION"})
                )
                await asyncio.sleep(1.0)
            else:
                await asyncio.sleep(duration)
            stale = device.invitation  # a walked-away citizen's, still open
            finished_message = machine.finish(ticket, w.number, w.staff)
            finished = time.time()
            self._record(
                {
                    "kind": "service",
                    "window": w.number,
                    "ticket": ticket,
                    "service": self._service_of(ticket),
                    "staff": w.staff,
                    "called_at": called,
                    "started_at": started,
                    "finished_at": finished,
                    "fn_mseq": finished_message.mseq,
                }
            )
            await self._after_service(w, ticket, anomaly, stale)
        machine.logout(w.number, w.staff)
        self._scene("staff_out", w.number)

    def _service_of(self, ticket: str) -> str:
        return next((code for code, _ in DEFAULT_SERVICES if code[0] == ticket[0]), "")

    def _next_anomaly(self, w: _Window) -> Anomaly | None:
        if w.plan:
            return w.plan.popleft()
        roll = w.rng.random()
        for kind, rate in ANOMALY_RATES.items():
            if kind is Anomaly.SELF_PRESS and w.number not in self.camera_windows:
                continue
            if roll < rate:
                return kind
            roll -= rate
        return None

    async def _no_show(self, w: _Window) -> None:
        """Someone took a number and left: called, recalled twice, then 弃号 — slowly enough
        that the LATE press falls before the no-show."""
        service = sorted(w.services)[0]
        ticket = self.machine.issue_ticket(service, self._names.get(service)).ticket
        self.machine.call(ticket, w.number)
        for _ in range(2):
            await asyncio.sleep(20)
            self.machine.recall(ticket, w.number)
        await asyncio.sleep(20)
        self.machine.no_show(ticket, w.number)

    async def _stray_during_service(self, w: _Window, duration: float) -> None:
        """A citizen from the queue tries the evaluator while someone else is served."""
        await asyncio.sleep(max(duration / 2, 1.5))
        if self.bus.devices[self.addr(w.number)].invitation is None:
            await self._press(
                w.number, self._key(), "stray", None, Expect(False, {"OUT_OF_SESSION"})
            )
        await asyncio.sleep(max(duration / 2, 1.5))

    async def _after_service(
        self, w: _Window, ticket: str, anomaly: Anomaly | None, stale: object
    ) -> None:
        """What the served citizen (and the staff) do after FN; returns when the staff call
        (or are about to call) the next number."""
        number = w.number
        if anomaly is Anomaly.SELF_PRESS:
            self._scene("citizen_out", number)
            if await self._invited(number, stale):
                await asyncio.sleep(w.rng.uniform(8.0, 10.0))
                await self._press(
                    number, 1, "self_press", ticket, Expect(False, {"SELF_PRESS_SUSPECTED"})
                )
            await asyncio.sleep(1.0)
        elif anomaly in (Anomaly.TWICE_QUICK, Anomaly.TWICE_SLOW):
            # The staff wait while the citizen is still at the evaluator.
            await self._answer(w, ticket, anomaly, stale)
            await asyncio.sleep(w.rng.uniform(0.5, 1.5))
        elif anomaly is Anomaly.PAUSE:
            self._spawn(self._answer(w, ticket, None, stale))
            await asyncio.sleep(w.rng.uniform(*CALL_NEXT_S))
            self.machine.pause(number, w.staff)
            await asyncio.sleep(w.rng.uniform(20.0, 40.0))
            self.machine.resume(number, w.staff)
        else:
            self._spawn(self._answer(w, ticket, anomaly, stale))
            await asyncio.sleep(w.rng.uniform(*CALL_NEXT_S))
            if anomaly is Anomaly.LATE:
                await self._no_show(w)

    async def _invited(self, window: int, stale: object) -> bool:
        """Wait for the evaluator to light up with this service's invitation (the gateway's
        INVITE after the FN; ``stale`` is one opened before it)."""
        device = self.bus.devices[self.addr(window)]
        deadline = time.monotonic() + INVITE_WAIT_S
        while time.monotonic() < deadline:
            if device.invitation is not None and device.invitation is not stale:
                return True
            await asyncio.sleep(0.1)
        return False

    async def _answer(
        self, w: _Window, ticket: str, anomaly: Anomaly | None, stale: object
    ) -> None:
        number = w.number
        finished = time.monotonic()
        if anomaly is Anomaly.WALK_AWAY:
            self._scene("citizen_out", number)
            self._record(
                {"kind": "walk_away", "window": number, "ticket": ticket, "at": time.time()}
            )
            return
        if not await self._invited(number, stale):
            self._scene("citizen_out", number)
            self._record(
                {"kind": "not_invited", "window": number, "ticket": ticket, "at": time.time()}
            )
            return
        if anomaly is Anomaly.LATE:
            # Leaves, then comes back after the next ticket was called and nobody came.
            self._scene("citizen_out", number)
            await asyncio.sleep(
                max(
                    0.0,
                    finished
                    + max(CALL_NEXT_S)
                    + LATE_GRACE_S
                    + w.rng.uniform(6.0, 12.0)
                    - time.monotonic(),
                )
            )
            self._scene("citizen_in", number)
            await asyncio.sleep(3.0)
            await self._press(number, self._key(), "late", ticket, Expect(False, {"LATE"}))
            await asyncio.sleep(LEAVE_AFTER_PRESS_S)
            self._scene("citizen_out", number)
            return
        if anomaly is Anomaly.EARLY_PRESS:
            await asyncio.sleep(0.2)  # answers as soon as the evaluator lights up
        else:
            await asyncio.sleep(
                max(0.0, finished + w.rng.uniform(*PRESS_AFTER_S) - time.monotonic())
            )
        await self._press(number, self._key(), "invited", ticket, Expect(True))
        if anomaly is Anomaly.TWICE_QUICK:
            await asyncio.sleep(w.rng.uniform(0.8, 2.0))
            await self._press(
                number,
                self._key(),
                "second",
                ticket,
                Expect(False, {"OUT_OF_SESSION", "DUPLICATE"}),
            )
        elif anomaly is Anomaly.TWICE_SLOW:
            await asyncio.sleep(w.rng.uniform(4.0, 6.0))
            await self._press(
                number,
                self._key(),
                "second",
                ticket,
                Expect(False, {"OUT_OF_SESSION", "DUPLICATE"}),
            )
        await asyncio.sleep(LEAVE_AFTER_PRESS_S)
        self._scene("citizen_out", number)

    def _key(self) -> int:
        return self.rng.choices(list(KEY_WEIGHTS), weights=list(KEY_WEIGHTS.values()))[0]

    async def _press(
        self, window: int, key: int, why: str, ticket: str | None, expect: Expect
    ) -> None:
        """Press a key (the device puts its open invitation's session on it, or 0) and write
        the truth. A press is kept clear of the RAPID_REPEAT threshold so its flag is certain."""
        addr = self.addr(window)
        last = self._last_press.get(addr)
        if last is not None:
            gap = time.monotonic() - last
            if RAPID_REPEAT_S - MARGIN_S <= gap < RAPID_REPEAT_S + MARGIN_S:
                await asyncio.sleep(RAPID_REPEAT_S + MARGIN_S - gap)
            if time.monotonic() - last < RAPID_REPEAT_S:
                expect.flags.add("RAPID_REPEAT")
        device = self.bus.devices[addr]
        if device.invitation is None and expect.counted:
            # The invitation closed under the citizen's finger (timeout): no evaluation.
            expect = Expect(False, {"OUT_OF_SESSION"} | (expect.flags & {"RAPID_REPEAT"}))
            why = f"{why}_unanswered"
        event = self.bus.press(addr, key)
        self._last_press[addr] = time.monotonic()
        self.presses += 1
        self._record(
            {
                "kind": "press",
                "at": time.time(),
                "window": window,
                "addr": addr,
                "key": key,
                "why": why,
                "ticket": ticket,
                "dev_seq": event.seq if event is not None else None,
                "session": event.session if event is not None else None,
                "counted": expect.counted,
                "flags": sorted(expect.flags),
            }
        )

    def _record(self, record: dict[str, Any]) -> None:
        self._truth.write(json.dumps(record, ensure_ascii=False) + "\n")
        self._truth.flush()

    def _show_queue(self) -> None:
        if self.scene is not None:
            self.scene.waiting(self.machine.waiting())

    def _scene(self, what: str, window: int) -> None:
        if self.scene is not None and window in self.camera_windows:
            self.scene.apply(what, window)


# -- comparing central with the truth ---------------------------------------------------------
# The evaluation flags the hall's behaviour decides (central/correlation/README.md); others
# (a doubt about which cases a service's evaluation covers) are not compared.

MATCH_WITHIN_S = 2.0  # press → the gateway's stamp on its key (a loaded machine lags)
FLAGS = ("ORPHAN", "OUT_OF_SESSION", "DUPLICATE", "LATE", "RAPID_REPEAT", "SELF_PRESS_SUSPECTED")


def read_truth(path: Path) -> list[dict[str, Any]]:
    records = []
    with contextlib.suppress(FileNotFoundError), path.open(encoding="utf-8") as file:
        for line in file:
            with contextlib.suppress(ValueError):
                records.append(json.loads(line))
    return records


@dataclass
class Comparison:
    presses: int  # in the truth
    matched: int  # of them found at central
    counted_truth: int
    counted_central: int
    flags_truth: dict[str, int]
    flags_central: dict[str, int]
    mismatches: list[str]  # one line per press whose counting or flags differ

    @property
    def counted_error(self) -> float:
        return abs(self.counted_central - self.counted_truth) / max(1, self.counted_truth)

    def summary(self) -> str:
        flags = " ".join(
            f"{f} {self.flags_central.get(f, 0)}/{self.flags_truth.get(f, 0)}" for f in FLAGS
        )
        return (
            f"按键 {self.matched}/{self.presses} 已到中心; 计入 {self.counted_central} "
            f"(真值 {self.counted_truth}); 标记 中心/真值: {flags}; "
            f"不一致 {len(self.mismatches)}"
        )


def compare(
    truth: Iterable[Mapping[str, Any]],
    evaluations: Iterable[Mapping[str, Any]],
    *,
    until: float | None = None,
) -> Comparison:
    """Match each simulated press to central's evaluation on the same device with the same key,
    nearest in time (presses on one device are at least 0.8 s apart; the gateway stamps a key
    when its frame arrives), and compare counting and flags. ``until`` leaves out presses
    after that epoch time (central may not have correlated them yet)."""
    presses = [
        r
        for r in truth
        if r.get("kind") == "press"
        and r.get("dev_seq") is not None
        and (until is None or r["at"] <= until)
    ]
    by_device: dict[int, list[Mapping[str, Any]]] = {}
    for ev in evaluations:
        by_device.setdefault(int(ev["addr"]), []).append(ev)
    taken: set[tuple[str, int]] = set()
    flags_truth = dict.fromkeys(FLAGS, 0)
    flags_central = dict.fromkeys(FLAGS, 0)
    matched = counted_truth = counted_central = 0
    mismatches = []
    for press in sorted(presses, key=lambda r: float(r["at"])):
        for flag in press["flags"]:
            flags_truth[flag] += 1
        counted_truth += bool(press["counted"])
        near = [
            ev
            for ev in by_device.get(int(press["addr"]), [])
            if ev["key"] == press["key"]
            and (ev["gateway"], ev["seq"]) not in taken
            and abs(_epoch(ev["evaluated_at"]) - press["at"]) < MATCH_WITHIN_S
        ]
        if not near:
            mismatches.append(f"{_label(press)}: 中心没有这条评价 / not at central")
            continue
        ev = min(near, key=lambda e: abs(_epoch(e["evaluated_at"]) - press["at"]))
        taken.add((ev["gateway"], ev["seq"]))
        matched += 1
        counted_central += bool(ev["counted"])
        flags = set(ev["flags"]) & set(FLAGS)  # a doubt about its cases is not the press's
        for flag in flags:
            flags_central[flag] += 1
        if bool(ev["counted"]) != bool(press["counted"]) or flags != set(press["flags"]):
            mismatches.append(
                f"{_label(press)}: 真值 counted={press['counted']} "
                f"{sorted(press['flags'])}, 中心 counted={ev['counted']} "
                f"{sorted(ev['flags'])}"
            )
    return Comparison(
        len(presses),
        matched,
        counted_truth,
        counted_central,
        flags_truth,
        flags_central,
        mismatches,
    )


def _epoch(value: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def _label(press: Mapping[str, Any]) -> str:
    clock = time.strftime("%H:%M:%S", time.localtime(press["at"]))
    return (
        f"{clock} 窗口{press['window']} 键{press['key']} {press['why']} "
        f"(dev_seq {press['dev_seq']})"
    )


# -- the process ------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("directory", type=Path, help="where the pty links and truth file go")
    parser.add_argument("--windows", type=int, default=8)
    parser.add_argument(
        "--speed",
        type=float,
        default=20.0,
        help="hall seconds per real second for arrivals and service durations",
    )
    parser.add_argument(
        "--duration",
        type=float,
        default=None,
        help="real seconds of arrivals; then the queue empties and the hall closes",
    )
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--lead", type=float, default=12.0, help="seconds of empty hall before staff log in"
    )
    parser.add_argument(
        "--camera-port",
        type=int,
        default=None,
        help="serve a rendered camera view of windows 1–2 as MJPEG on this port",
    )
    args = parser.parse_args(argv)
    camera_windows = CAMERA_WINDOWS if args.camera_port is not None else ()
    hall = SimulatedHall(
        args.directory,
        windows=args.windows,
        speed=args.speed,
        seed=args.seed,
        lead_s=args.lead,
        camera_windows=camera_windows,
    )
    server: Callable[[], None] | None = None
    if args.camera_port is not None:
        from firmware_bridges.camera.live import LiveMjpegServer, LiveScene

        hall.scene = LiveScene()
        mjpeg = LiveMjpegServer(hall.scene, port=args.camera_port).start()
        server = mjpeg.stop
        print(f"camera: {mjpeg.url}", flush=True)
    print(f"evaluator bus: {hall.evaluator_port}\nqueue machine: {hall.queue_port}", flush=True)
    try:
        asyncio.run(hall.run(duration=args.duration))
    except KeyboardInterrupt:
        pass
    finally:
        if server is not None:
            server()
    print("hall closed", flush=True)


if __name__ == "__main__":
    main()
