"""The gateway service: journal, uplink and sources, started and stopped together."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Awaitable, Callable
from typing import Any

from edge.clock import Clock
from edge.commands import CommandVerifier, load_public_key
from edge.config import GatewayConfig
from edge.configstore import ConfigStore, RemoteConfigError, merge_remote, restart_scope
from edge.evaluators import EvaluatorSupervisor
from edge.evidence_upload import EvidenceUploader
from edge.generator import Generator
from edge.hallboard import HallBoard
from edge.instance import InstanceLock
from edge.journal import Journal
from edge.queue_machine import QueueSupervisor
from edge.remote import ExecutionRefused, RemoteCommands
from edge.uplink import SOFTWARE, Uplink

log = logging.getLogger(__name__)


class Gateway:
    def __init__(self, config: GatewayConfig, *, config_version: int = 0) -> None:
        self.config = config
        self.config_version = config_version  # 0: the provisioned file; n: remote version n
        self.restart_requested = False  # a new configuration needs a new process
        self._instance = InstanceLock(config.data_dir)
        self._stop = asyncio.Event()
        self._device_tasks: dict[str, asyncio.Task[Any]] = {}
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
        self.queue = (QueueSupervisor(config.queue, self.journal, self._queue_event)
                      if config.queue is not None else None)
        self._tasks: list[asyncio.Task[Any]] = []
        self.commands: RemoteCommands | None = None
        if config.commands is not None:
            verifier = CommandVerifier(
                load_public_key(config.commands.public_key), config.hall, config.gateway,
                config.command_state_path, version_floor=config.commands.version_floor)
            self.commands = RemoteCommands(verifier, self, self.uplink.publish_result)
            self.uplink.on_command = self.commands.handle
        self.cameras: Any = None  # CameraService, imported only when configured (OpenCV)
        self.evidence: EvidenceUploader | None = None  # snapshots to central, with cameras
        self.board = HallBoard.for_gateway(self)  # the hall page's live picture
        self.hall_page: Any = None  # HallPageServer, imported only when served (FastAPI)
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
        body = {**verdict.model_dump(mode="json"), "addr": addr, "dev_seq": dev_seq,
                "key_seq": key_seq}
        seq = await self.journal.append("camera.verdict", body)
        if self.evidence is not None:
            self.evidence.enqueue(seq, "camera.verdict", body)

    async def _journal_camera_events(self) -> None:
        async for event in self.cameras.events():
            body = event.body.model_dump(mode="json")
            seq = await self.journal.append(event.kind, body)
            self.board.on_journaled(event.kind, body)
            if self.evidence is not None:
                self.evidence.enqueue(seq, event.kind, body)

    def _queue_event(self, body: dict[str, Any]) -> None:
        """A queue message journaled: the invitation rules of its window's evaluator bus
        decide (FN invites, ST closes the invitation still open there)."""
        window = body.get("window")
        for supervisor in self.evaluators:
            if window is not None and supervisor.handles(window):
                supervisor.on_queue_event(body)
                return

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

    def _supervise(self, name: str, factory: Callable[[], Awaitable[None]]
                   ) -> asyncio.Task[Any]:
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

        task = asyncio.create_task(loop(), name=name)
        self._tasks.append(task)
        return task

    # -- devices, restartable by remote command -----------------------------------------------

    def device_ids(self) -> dict[str, str]:
        """Device id (as in ``reread_devices``) → the supervisor that carries it."""
        ids: dict[str, str] = {}
        for index, bus in enumerate(self.config.evaluator_buses):
            ids[f"bus-{index}"] = f"bus-{index}"
            for device in bus.devices:
                ids[f"evaluator-{device.window}"] = f"bus-{index}"
        if self.config.queue is not None:
            ids["queue"] = "queue"
        return ids

    def _start_devices(self, which: set[str] | None = None) -> None:
        self.board.attach(self)
        for index, supervisor in enumerate(self.evaluators):
            name = f"bus-{index}"
            if which is None or name in which:
                self._device_tasks[name] = self._supervise(
                    f"evaluators {supervisor.config.port}", supervisor.run)
        if self.queue is not None and (which is None or "queue" in which):
            self._device_tasks["queue"] = self._supervise("queue machine", self.queue.run)

    async def _stop_devices(self, which: set[str]) -> None:
        for name in which:
            task = self._device_tasks.pop(name, None)
            if task is None:
                continue
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            with contextlib.suppress(ValueError):
                self._tasks.remove(task)
        if "queue" in which and self.queue is not None:
            await self.queue.close()

    def _build_devices(self, which: set[str]) -> None:
        """Fresh supervisors (their state is rebuilt from the journal when they start)."""
        config = self.config
        for index, bus in enumerate(config.evaluator_buses):
            if f"bus-{index}" in which:
                supervisor = EvaluatorSupervisor(bus, self.journal, config.staff_names)
                if config.cameras is not None:
                    supervisor.on_key = self._judge_key_press
                if index < len(self.evaluators):
                    self.evaluators[index] = supervisor
                else:
                    self.evaluators.append(supervisor)
        del self.evaluators[len(config.evaluator_buses):]
        if "queue" in which:
            self.queue = (QueueSupervisor(config.queue, self.journal, self._queue_event)
                          if config.queue is not None else None)

    async def reread_devices(self, devices: list[str]) -> str:
        """Re-open the ports and re-identify the devices (all of them for an empty list)."""
        known = self.device_ids()
        unknown = sorted(set(devices) - set(known))
        if unknown:
            raise ExecutionRefused(f"unknown device ids {unknown}; known: {sorted(known)}")
        which = {known[d] for d in devices} if devices else set(known.values())
        await self._stop_devices(which)
        self._build_devices(which)
        self._start_devices(which)
        return f"restarted {', '.join(sorted(which)) or 'nothing (no devices configured)'}"

    def replay_from(self, seq: int) -> str:
        return self.uplink.replay_from(seq)

    async def apply_config(self, version: int, config: dict[str, object]) -> str:
        """Install configuration ``version`` beside the provisioned one and put it in force."""
        try:
            new = merge_remote(self.config, dict(config))
            path = ConfigStore(self.config.data_dir).install(version, new)
        except RemoteConfigError as exc:
            raise ExecutionRefused(str(exc)) from None
        scope = restart_scope(self.config, new)
        old_devices = set(self.device_ids().values())
        self.config_version = version
        if scope == "process":
            # Answer first (the result goes out before the clean disconnect), then restart:
            # systemd starts the service again (Restart=always) and it loads this version.
            self.restart_requested = True
            asyncio.get_running_loop().call_later(0.5, self._stop.set)
            return f"config v{version} written to {path.name}; restarting the service"
        self.config = new
        if scope == "devices":
            await self._stop_devices(old_devices)
            self._build_devices(old_devices | set(self.device_ids().values()))
            self._start_devices()
            return f"config v{version} written to {path.name}; devices restarted"
        return f"config v{version} written to {path.name}; nothing to restart"

    async def start(self) -> None:
        self.config.data_dir.mkdir(parents=True, exist_ok=True)
        self._instance.acquire()
        await self.journal.open()
        previous = self.journal.head_seq
        await self.journal.append("gateway.boot", {
            "software": SOFTWARE,
            "config_version": str(self.config_version) if self.config_version else "",
            "previous_head_seq": previous})
        if self.config.http.enabled:
            from edge.web.server import start_hall_page

            await self.board.start()  # replays today's journal: before any device runs
            self.hall_page = await start_hall_page(self.config, self.board)
        await self.uplink.start()
        self._start_devices()
        if self.config.cameras is not None:
            from edge.camera.service import CameraService

            cams = self.config.cameras
            self.cameras = CameraService(cams.cameras, cams.evidence_dir,
                                         evidence=cams.evidence, verdict=cams.verdict)
            await self.cameras.start()
            self.evidence = EvidenceUploader(self.config.data_dir, cams.evidence_dir,
                                             self.journal, self.uplink)
            self._supervise("cameras", self._journal_camera_events)
            self._supervise("evidence upload", self.evidence.run)
        if self.config.generator.enabled:
            generator = Generator(self.journal, self.config.generator)
            self._tasks.append(asyncio.create_task(generator.run(), name="generator"))
        log.info("gateway %s/%s started; journal head %d, acked %d", self.config.hall,
                 self.config.gateway, self.journal.head_seq, self.journal.acked_seq)

    async def stop(self) -> None:
        await self.board.stop()  # ends the pages' event streams, so the server stops at once
        if self.hall_page is not None:
            await self.hall_page.stop()
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
        if self.evidence is not None:
            self.evidence.close()
        await self.journal.close()
        self._instance.release()

    async def run_forever(self) -> None:
        """Until SIGTERM/SIGINT, or until a new configuration asks for a restart."""
        stop = self._stop
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await self.start()
        try:
            await stop.wait()
        finally:
            log.info("gateway stopping")
            await self.stop()
