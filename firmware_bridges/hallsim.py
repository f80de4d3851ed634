"""A simulated hall: a $QM queue machine and a bus of FF 68 evaluators on pseudo-terminals,
tickets flowing through windows, citizens answering invitations (and sometimes not).

The demo runs it as its own process (``python -m firmware_bridges.hallsim DIR``); tests script
the two simulators directly. Every press is written to ``DIR/ground-truth.jsonl`` with what the
citizen meant (which ticket, invited or stray), for checking correlation against.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import time
from pathlib import Path
from typing import Any

from firmware_bridges.ff68.simulator import EvaluatorBusSimulator
from firmware_bridges.qm.codec import ServiceFinished
from firmware_bridges.qm.simulator import HallScenario, QueueMachineSimulator

# How citizens answer, roughly as the seeds' halls report (满意率 well above 95%).
KEY_WEIGHTS = {1: 80, 2: 14, 3: 2, 4: 2, 5: 1, 6: 1}
NO_ANSWER_RATE = 0.08  # walks away: the invitation times out
STRAY_PRESS_RATE = 0.03  # a key with no invitation open (SESSION 0)
SECOND_PRESS_RATE = 0.02  # presses again after evaluating


class SimulatedHall:
    def __init__(self, directory: Path, *, windows: int = 8, speed: float = 30.0,
                 seed: int = 1, corrupt_rate: float = 0.01) -> None:
        self.directory = directory
        self.windows = windows
        self.speed = speed
        self.rng = random.Random(seed)
        self.seed = seed
        directory.mkdir(parents=True, exist_ok=True)
        self.bus = EvaluatorBusSimulator(directory / "ttyEVAL0", seed=seed,
                                         corrupt_rate=corrupt_rate, history=20_000)
        self.machine = QueueMachineSimulator(pty_dir=directory, link_name="ttyQM0",
                                             history=20_000)
        self._finished: dict[int, ServiceFinished] = {}
        self._invites_seen: dict[int, int] = {}
        self._truth = (directory / "ground-truth.jsonl").open("a", encoding="utf-8")
        self.presses = 0

    @property
    def evaluator_port(self) -> Path:
        return self.directory / "ttyEVAL0"

    @property
    def queue_port(self) -> Path:
        return self.directory / "ttyQM0"

    def addr(self, window: int) -> int:
        return 0x80 + window

    async def run(self, *, duration: float | None = None) -> None:
        async with self.machine:
            await self.bus.start()
            for window in range(1, self.windows + 1):
                self.bus.add(self.addr(window))
            scenario = HallScenario(self.machine, windows=self.windows, speed=self.speed,
                                    seed=self.seed, on_service_finished=self._on_finished)
            citizens = asyncio.create_task(self._citizens())
            try:
                await scenario.run(duration=duration)
            finally:
                citizens.cancel()
                await self.bus.stop()
                self._truth.close()

    def _on_finished(self, message: ServiceFinished) -> None:
        self._finished[message.window] = message

    async def _citizens(self) -> None:
        while True:
            await asyncio.sleep(0.2)
            for window in range(1, self.windows + 1):
                addr = self.addr(window)
                invitations = self.bus.invitations.get(addr, [])
                if len(invitations) > self._invites_seen.get(addr, 0):
                    self._invites_seen[addr] = len(invitations)
                    asyncio.create_task(self._answer(window, invitations[-1].session))  # noqa: RUF006
            if self.rng.random() < STRAY_PRESS_RATE:
                window = self.rng.randint(1, self.windows)
                if not any(i.closed_by is None for i in self.bus.invitations.get(
                        self.addr(window), [])):
                    self._press(window, self._key(), 0, "stray", None)

    async def _answer(self, window: int, session: int) -> None:
        if self.rng.random() < NO_ANSWER_RATE:
            return
        await asyncio.sleep(self.rng.uniform(1.0, 6.0))
        finished = self._finished.get(window)
        ticket = finished.ticket if finished is not None else None
        self._press(window, self._key(), session, "invited", ticket)
        if self.rng.random() < SECOND_PRESS_RATE:
            await asyncio.sleep(self.rng.uniform(0.5, 2.0))
            self._press(window, self._key(), None, "second", ticket)

    def _key(self) -> int:
        return self.rng.choices(list(KEY_WEIGHTS), weights=list(KEY_WEIGHTS.values()))[0]

    def _press(self, window: int, key: int, session: int | None, why: str,
               ticket: str | None) -> None:
        event = self.bus.press(self.addr(window), key, session)
        self.presses += 1
        record: dict[str, Any] = {"at": time.time(), "window": window, "addr": self.addr(window),
                                  "key": key, "why": why, "ticket": ticket,
                                  "seq": event.seq if event is not None else None,
                                  "session": event.session if event is not None else None}
        self._truth.write(json.dumps(record, ensure_ascii=False) + "\n")
        self._truth.flush()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("directory", type=Path, help="where the pty links and truth file go")
    parser.add_argument("--windows", type=int, default=8)
    parser.add_argument("--speed", type=float, default=30.0, help="hall seconds per second")
    parser.add_argument("--duration", type=float, default=None, help="real seconds")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    hall = SimulatedHall(args.directory, windows=args.windows, speed=args.speed, seed=args.seed)
    print(f"evaluator bus: {hall.evaluator_port}\nqueue machine: {hall.queue_port}", flush=True)
    asyncio.run(hall.run(duration=args.duration))


if __name__ == "__main__":
    main()
