"""The gateway service: journal, uplink and sources, started and stopped together."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Awaitable, Callable
from typing import Any

from edge.clock import Clock
from edge.config import GatewayConfig
from edge.evaluators import EvaluatorSupervisor
from edge.generator import Generator
from edge.journal import Journal
from edge.queue_machine import QueueSupervisor
from edge.uplink import SOFTWARE, Uplink

log = logging.getLogger(__name__)


class Gateway:
    def __init__(self, config: GatewayConfig) -> None:
        self.config = config
        self.clock = Clock(assume_synced=config.clock.assume_synced)
        self.journal = Journal(
            config.journal_path, self.clock,
            limit_bytes=int(config.journal.limit_mb * 1024 * 1024),
            seq_floor=config.journal.seq_floor,
        )
        self.uplink = Uplink(
            self.journal, self.clock, config.hall, config.gateway, config.broker, config.uplink,
            health=self.health,
        )
        self.evaluators = [EvaluatorSupervisor(bus, self.journal, config.staff_names)
                           for bus in config.evaluator_buses]
        self.queue = (QueueSupervisor(config.queue, self.journal, self._service_finished)
                      if config.queue is not None else None)
        self._tasks: list[asyncio.Task[Any]] = []
        self.cameras: Any = None  # CameraService, imported only when configured (OpenCV)
        if config.cameras is not None:
            for supervisor in self.evaluators:
                supervisor.on_key = self._judge_key_press

    async def _judge_key_press(self, window: int, addr: int, dev_seq: int, pressed_at: float,
                               key_seq: int) -> None:
        """Ask the cameras whether a citizen was at the window; journal the verdict."""
        if self.cameras is None:
            return
        try:
            verdict = await self.cameras.verdict_at(window, pressed_at)
        except Exception:
            log.exception("camera verdict for window %d failed", window)
            return
        await self.journal.append("camera.verdict", {
            **verdict.model_dump(mode="json"), "addr": addr, "dev_seq": dev_seq,
            "key_seq": key_seq})

    async def _journal_camera_events(self) -> None:
        async for event in self.cameras.events():
            await self.journal.append(event.kind, event.body.model_dump(mode="json"))

    async def _service_finished(self, window: int, ticket: str, staff: str, mseq: int) -> None:
        """FN at a window: invite that window's evaluator, tied to the ticket and staff."""
        for supervisor in self.evaluators:
            if supervisor.handles(window):
                await supervisor.invite(window, ticket, staff, mseq)
                return
        log.debug("no evaluator configured at window %d", window)

    def health(self) -> dict[str, Any]:
        health: dict[str, Any] = {"journal_write_errors": self.journal.write_errors,
                                  "uplink_rewinds": self.uplink.rewinds}
        evaluators = [d for sup in self.evaluators for d in sup.status()]
        if evaluators:
            health["evaluators_offline"] = [d["window"] for d in evaluators
                                            if d["online"] is False]
            health["evaluators_stuck_key"] = [d["window"] for d in evaluators if d["stuck_key"]]
            health["bus"] = [{"port": sup.config.port, "caller_frames": sup.caller_frames,
                              **(sup.bus.decoder.counters() if sup.bus else {})}
                             for sup in self.evaluators]
        if self.queue is not None:
            feed = self.queue.feed
            health["queue"] = {"duplicates": self.queue.duplicates, "faults": self.queue.faults,
                               "connected": bool(feed and feed.stats().connected)}
        return health

    def _supervise(self, name: str, factory: Callable[[], Awaitable[None]]) -> None:
        async def loop() -> None:
            while True:
                try:
                    await factory()
                    return
                except asyncio.CancelledError:
                    raise
                except Exception:
                    log.exception("%s failed; restarting in 2 s", name)
                    await asyncio.sleep(2)

        self._tasks.append(asyncio.create_task(loop(), name=name))

    async def start(self) -> None:
        self.config.data_dir.mkdir(parents=True, exist_ok=True)
        await self.journal.open()
        previous = self.journal.head_seq
        await self.journal.append("gateway.boot", {
            "software": SOFTWARE, "config_version": "", "previous_head_seq": previous})
        await self.uplink.start()
        for supervisor in self.evaluators:
            self._supervise(f"evaluators {supervisor.config.port}", supervisor.run)
        if self.queue is not None:
            self._supervise("queue machine", self.queue.run)
        if self.config.cameras is not None:
            from edge.camera.service import CameraService

            cams = self.config.cameras
            self.cameras = CameraService(cams.cameras, cams.evidence_dir,
                                         evidence=cams.evidence, verdict=cams.verdict)
            await self.cameras.start()
            self._supervise("cameras", self._journal_camera_events)
        if self.config.generator.enabled:
            generator = Generator(self.journal, self.config.generator)
            self._tasks.append(asyncio.create_task(generator.run(), name="generator"))
        log.info("gateway %s/%s started; journal head %d, acked %d", self.config.hall,
                 self.config.gateway, self.journal.head_seq, self.journal.acked_seq)

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self.queue is not None:
            await self.queue.close()
        if self.cameras is not None:
            await self.cameras.stop()
        await self.uplink.stop()
        await self.journal.close()

    async def run_forever(self) -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await self.start()
        try:
            await stop.wait()
        finally:
            log.info("gateway stopping")
            await self.stop()
