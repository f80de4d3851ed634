"""The gateway service: journal, uplink and sources, started and stopped together."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import threading
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from edge.clock import Clock
from edge.commands import CommandVerifier, load_public_key
from edge.config import GatewayConfig
from edge.configstore import ConfigStore, RemoteConfigError, merge_remote, restart_scope
from edge.devices import Device, merged_health
from edge.devices.build import build_devices
from edge.devices.cameras import CameraDevice
from edge.devices.evaluators import EvaluatorSupervisor
from edge.devices.queue_machine import QueueSupervisor
from edge.evidence_upload import EvidenceUploader
from edge.generator import Generator
from edge.hallboard import HallBoard
from edge.instance import InstanceLock
from edge.journal import Journal
from edge.remote import ExecutionRefused, RemoteCommands
from edge.uplink import SOFTWARE, Uplink
from hallkit.supervise import Supervisor
from protocols.events import GatewayBoot

if TYPE_CHECKING:
    from edge.camera.service import CameraService
    from edge.web.server import HallPageServer

log = logging.getLogger(__name__)

STOP_WITHIN_S = 8.0  # SIGTERM to exit, whatever is stuck (systemd would kill at 10 s)
EXIT_STOP_TIMEOUT = 75  # EX_TEMPFAIL: the exit status when that deadline was needed


class Gateway:
    def __init__(self, config: GatewayConfig, *, config_version: int = 0) -> None:
        self.config = config
        self.config_version = config_version  # 0: the provisioned file; n: remote version n
        self.restart_requested = False  # a new configuration needs a new process
        self._instance = InstanceLock(config.data_dir)
        self._stop = asyncio.Event()
        self.failure: str | None = None  # a task given up: the service stops with this error
        self.supervisor = Supervisor(on_failed=self._task_failed)
        self.clock = Clock(assume_synced=config.clock.assume_synced)
        self.journal = Journal(
            config.journal_path,
            self.clock,
            limit_bytes=int(config.journal.limit_mb * 1024 * 1024),
            seq_floor=config.journal.seq_floor,
        )
        self.uplink = Uplink(
            self.journal,
            self.clock,
            config.hall,
            config.gateway,
            config.broker,
            config.uplink,
            health=self.health,
            supervisor=self.supervisor,
        )
        self.devices: list[Device] = self._build_devices()  # from the configuration
        self.commands: RemoteCommands | None = None
        if config.commands is not None:
            verifier = CommandVerifier(
                load_public_key(config.commands.public_key),
                config.hall,
                config.gateway,
                config.command_state_path,
                version_floor=config.commands.version_floor,
            )
            self.commands = RemoteCommands(verifier, self, self.uplink.publish_result)
            self.uplink.on_command = self.commands.handle
        self.evidence: EvidenceUploader | None = None  # snapshots to central, with cameras
        self._stopping = False
        self.board = HallBoard.for_gateway(self)  # the hall page's live picture
        self.hall_page: HallPageServer | None = None  # imported only when served (FastAPI)

    # -- the devices, by family, for those that read one (the hall board, commands) ------------

    @property
    def evaluators(self) -> list[EvaluatorSupervisor]:
        return [d for d in self.devices if isinstance(d, EvaluatorSupervisor)]

    @property
    def queue(self) -> QueueSupervisor | None:
        return next((d for d in self.devices if isinstance(d, QueueSupervisor)), None)

    @property
    def cameras(self) -> CameraService | None:
        """The camera service once started (OpenCV is imported only then)."""
        device = next((d for d in self.devices if isinstance(d, CameraDevice)), None)
        return device.service if device is not None else None

    def _build_devices(self) -> list[Device]:
        return build_devices(self.config, self.journal, lambda: self.devices)

    def health(self) -> dict[str, Any]:
        return {
            "journal_write_errors": self.journal.write_errors,
            "uplink_rewinds": self.uplink.rewinds,
            **merged_health(self.devices),
        }

    def _task_failed(self, name: str, error: str) -> None:
        """A task kept failing: stop the service with the reason (systemd starts it again)."""
        self.failure = f"{name}: {error}"
        log.critical("gateway stopping: task %s keeps failing (%s)", name, error)
        self._stop.set()

    # -- devices, restartable by remote command -----------------------------------------------

    def device_ids(self) -> dict[str, str]:
        """Device id (as in ``reread_devices``) → the device (unit) that carries it."""
        return {id_: device.name for device in self.devices for id_ in device.device_ids()}

    async def _start_devices(self, which: set[str] | None = None) -> None:
        self.board.devices_changed(self.config.staff_names)
        for device in self.devices:
            if which is None or device.name in which:
                await device.start(self.supervisor)

    async def _stop_devices(self, which: set[str]) -> None:
        for device in self.devices:
            if device.name in which:
                await device.close()

    def _rebuild_devices(self, which: set[str]) -> set[str]:
        """Fresh devices for ``which`` and for any the configuration newly names (their state
        is rebuilt from the journal when they start); returns the names of the fresh ones."""
        current = {device.name: device for device in self.devices}
        devices: list[Device] = []
        fresh: set[str] = set()
        for device in self._build_devices():
            kept = current.get(device.name)
            if kept is not None and device.name not in which:
                devices.append(kept)
            else:
                devices.append(device)
                fresh.add(device.name)
        self.devices = devices
        return fresh

    async def reread_devices(self, devices: list[str]) -> str:
        """Re-open the ports and re-identify the devices (all of them for an empty list)."""
        known = self.device_ids()
        unknown = sorted(set(devices) - set(known))
        if unknown:
            raise ExecutionRefused(f"unknown device ids {unknown}; known: {sorted(known)}")
        which = {known[d] for d in devices} if devices else set(known.values())
        await self._stop_devices(which)
        await self._start_devices(self._rebuild_devices(which))
        return f"restarted {', '.join(sorted(which)) or 'nothing (no devices configured)'}"

    def replay_from(self, seq: int) -> str:
        return self.uplink.replay_from(seq)

    async def calibrate_camera(self, window: int, camera: str | None) -> str:
        """Take the window's empty seat and counter as they are now, on every camera that
        watches it (or only ``camera``); the frames are kept as evidence to confirm."""
        from edge.camera.service import CalibrationError

        if self.cameras is None:
            raise ExecutionRefused("no cameras configured on this gateway")
        chosen = [c for c in self.cameras.cameras_of(window) if camera in (None, c)]
        if not chosen:
            raise ExecutionRefused(
                f"no camera watches window {window}"
                if camera is None
                else f"camera {camera} does not watch window {window}"
            )
        done = []
        try:
            for cam in chosen:
                calibration = await self.cameras.calibrate(cam, [window])
                self.board.on_calibrated(window, calibration.snapshot)
                done.append(calibration.describe())
        except CalibrationError as exc:
            raise ExecutionRefused(str(exc)) from None
        return "calibrated " + "; ".join(done)

    async def capture_evidence(
        self, window: int, clip_s: int, camera: str | None, request: str
    ) -> str:
        """A supervisor's on-demand snapshot (and clip) of the window, uploaded as evidence."""
        from edge.camera.on_demand import CaptureFailed, capture

        if self.cameras is None:
            raise ExecutionRefused("no cameras configured on this gateway")
        try:
            captured = await capture(self.cameras, window, clip_s, camera, request)
        except CaptureFailed as exc:
            raise ExecutionRefused(str(exc)) from None
        return captured.describe()

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
            await self._start_devices(self._rebuild_devices(old_devices))
            return f"config v{version} written to {path.name}; devices restarted"
        return f"config v{version} written to {path.name}; nothing to restart"

    async def start(self) -> None:
        self._stopping = False
        self.config.data_dir.mkdir(parents=True, exist_ok=True)
        self._instance.acquire()
        await self.journal.open()
        previous = self.journal.head_seq
        await self.journal.append(
            "gateway.boot",
            GatewayBoot(
                software=SOFTWARE,
                config_version=str(self.config_version) if self.config_version else "",
                previous_head_seq=previous,
            ),
        )
        if self.config.http.enabled:
            await self.board.start()  # replays today's journal: before any device runs
            await self._open_hall_page()
            # the page matters less than journaling: never given up, retried while it fails
            self.supervisor.spawn("hall.page", self._keep_hall_page, retry_forever=True)
        await self.uplink.start()
        cams = self.config.cameras
        if cams is not None:  # subscribed to the journal before any camera event is journaled
            self.evidence = EvidenceUploader(
                self.config.data_dir, cams.evidence_dir, self.journal, self.uplink
            )
        await self._start_devices()
        if self.evidence is not None:
            self.board.calibrator = lambda window: self.calibrate_camera(window, None)
            self.supervisor.spawn("evidence.upload", self.evidence.run)
        if self.config.generator.enabled:
            self.supervisor.spawn("generator", Generator(self.journal, self.config.generator).run)
        log.info(
            "gateway %s/%s started; journal head %d, acked %d",
            self.config.hall,
            self.config.gateway,
            self.journal.head_seq,
            self.journal.acked_seq,
        )

    # -- the hall page ------------------------------------------------------------------------

    async def _open_hall_page(self) -> None:
        from edge.web.server import start_hall_page

        self.hall_page = await start_hall_page(self.config, self.board, self.supervisor)

    async def _keep_hall_page(self) -> None:
        """Supervised: (re)open the page and wait on it; a server that ends by itself fails."""
        if self.hall_page is None:
            await self._open_hall_page()
            if self.hall_page is None:
                http = self.config.http
                raise OSError(f"the hall page cannot listen on {http.host}:{http.port}")
        page = self.hall_page
        try:
            await page.wait()
        finally:
            if not self._stopping:
                await page.stop()
                self.hall_page = None
        if not self._stopping:
            raise RuntimeError("the hall page server stopped by itself")

    # -- stopping -----------------------------------------------------------------------------

    async def stop(self) -> None:
        """Close everything, each part even when another fails; the journal last."""
        self._stopping = True
        page, self.hall_page = self.hall_page, None
        steps: list[tuple[str, Callable[[], Awaitable[object]]]] = [
            ("hall board", self.board.stop)
        ]  # ends the pages' streams: the server stops at once
        if page is not None:
            steps.append(("hall page", page.stop))
        steps.append(("tasks", self.supervisor.stop))
        steps += [(f"device {device.name}", device.close) for device in self.devices]
        steps.append(("uplink", self.uplink.stop))
        if self.evidence is not None:
            steps.append(("evidence upload", _awaitable(self.evidence.close)))
        steps.append(("journal", self.journal.close))
        for what, step in steps:
            try:
                await step()
            except Exception:
                log.exception("stopping the gateway: %s failed; carrying on", what)
        self._instance.release()

    async def run_forever(self, *, exit_within_s: float | None = None) -> None:
        """Until SIGTERM/SIGINT, a new configuration that asks for a restart, or a task given
        up. ``exit_within_s`` (the service): past it after the stop began, the process exits
        whatever is still stuck (a thread, a device), so systemd never has to kill it."""
        stop = self._stop
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await self.start()
        try:
            await stop.wait()
        finally:
            log.info("gateway stopping")
            if exit_within_s is not None:
                _exit_after(exit_within_s)
            await self.stop()


def _exit_after(seconds: float) -> None:
    """A watchdog thread: the process ends at the deadline even if the event loop is stuck."""

    def expire() -> None:
        log.critical("gateway did not stop within %.0f s; exiting now", seconds)
        logging.shutdown()
        os._exit(EXIT_STOP_TIMEOUT)

    timer = threading.Timer(seconds, expire)
    timer.daemon = True
    timer.start()


def _awaitable(call: Callable[[], object]) -> Callable[[], Awaitable[object]]:
    async def run() -> object:
        return call()

    return run
