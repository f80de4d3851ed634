"""The camera worker processes (``python -m edge.camera.worker``): started, watched and restarted.

A worker that exits, stays silent for ``timeout_s`` or grows past ``max_rss_bytes`` is killed
and started again after a backoff (a worker that ran a good while is restarted at once); each
has a task record in the supervisor (``camera.worker.<id>``) that the health pages show, and
``on_lost`` tells the service, which reports the worker's cameras offline meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from edge.camera.config import CameraConfig
from hallkit.supervise import Supervisor, TaskRecord, TaskState

log = logging.getLogger(__name__)

_PROJECT_ROOT = Path(__file__).resolve().parents[2]  # so ``-m edge.camera.worker`` imports
RESTART_BACKOFF_S = (0.5, 1.0, 2.0, 5.0, 10.0, 30.0)


@dataclass(slots=True)
class WorkerHandle:
    id: str
    cameras: list[CameraConfig]
    process: asyncio.subprocess.Process | None = None
    pid: int | None = None
    last_seen: float = 0.0
    started: float = 0.0
    restarts: int = 0
    cpu_s: float = 0.0
    rss_bytes: int = 0
    restart_at: float | None = None


class WorkerProcesses:
    def __init__(
        self,
        cameras: list[CameraConfig],
        cameras_per_worker: int,
        *,
        state_dir: Path,
        ring_s: float,
        timeout_s: float,
        max_rss_bytes: int,
        supervisor: Supervisor,
        on_lost: Callable[[WorkerHandle, str], None],
        python: str = sys.executable,
    ) -> None:
        self.workers: list[WorkerHandle] = [
            WorkerHandle(f"w{number}", cameras[start : start + cameras_per_worker])
            for number, start in enumerate(range(0, len(cameras), cameras_per_worker), start=1)
        ]
        self.state_dir = state_dir
        self.ring_s = ring_s  # seconds of frames a worker keeps for clips and verdicts
        self.timeout_s = timeout_s
        self.max_rss_bytes = max_rss_bytes
        self.supervisor = supervisor
        self.on_lost = on_lost
        self.python = python
        self.endpoint = ""
        self.stopping = False

    async def start(self, endpoint: str) -> None:
        """Start every worker; they connect to the service's socket at ``endpoint``."""
        self.endpoint = endpoint
        for handle in self.workers:
            await self.spawn(handle)

    async def spawn(self, handle: WorkerHandle) -> None:
        root = _PROJECT_ROOT
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(root), env.get("PYTHONPATH")) if p)
        cameras = json.dumps([c.model_dump(mode="json") for c in handle.cameras])
        handle.process = await asyncio.create_subprocess_exec(
            self.python,
            "-m",
            "edge.camera.worker",
            "--endpoint",
            self.endpoint,
            "--id",
            handle.id,
            "--cameras",
            cameras,
            "--state-dir",
            str(self.state_dir),
            "--ring-s",
            str(self.ring_s),
            env=env,
            stdin=asyncio.subprocess.DEVNULL,
        )
        handle.pid = handle.process.pid
        handle.started = handle.last_seen = time.monotonic()
        handle.restart_at = None
        handle.rss_bytes = 0  # the new process reports its own
        self.record(handle).state = TaskState.RUNNING

    async def supervise(self) -> None:
        """Supervised: restart a worker that exited, went silent or grew too large."""
        while not self.stopping:
            await asyncio.sleep(0.5)
            now = time.monotonic()
            for handle in self.workers:
                process = handle.process
                if process is None:
                    if handle.restart_at is not None and now >= handle.restart_at:
                        await self.spawn(handle)
                    continue
                if process.returncode is not None:
                    why = f"camera worker exited with code {process.returncode}"
                elif now - handle.last_seen > self.timeout_s:
                    why = f"camera worker silent for {now - handle.last_seen:.0f} s, killed"
                elif handle.rss_bytes > self.max_rss_bytes:
                    why = (
                        f"camera worker used {handle.rss_bytes / 2**20:.0f} MiB "
                        f"(limit {self.max_rss_bytes / 2**20:.0f}), restarted"
                    )
                else:
                    continue
                log.error("%s: %s", handle.id, why)
                await self.end(handle, grace_s=0.0)
                self.on_lost(handle, why)
                delay = RESTART_BACKOFF_S[min(handle.restarts, len(RESTART_BACKOFF_S) - 1)]
                if now - handle.started > 60:
                    delay = RESTART_BACKOFF_S[0]  # it ran a good while: not a crash loop
                handle.restarts += 1
                handle.restart_at = now + delay
                record = self.record(handle)
                record.failed_with(why)
                record.state, record.restarts = TaskState.RESTARTING, handle.restarts

    def record(self, handle: WorkerHandle) -> TaskRecord:
        return self.supervisor.record(f"camera.worker.{handle.id}")

    async def end(self, handle: WorkerHandle, grace_s: float) -> None:
        process = handle.process
        handle.process = None
        if process is None or process.returncode is not None:
            return
        if grace_s > 0:
            try:
                await asyncio.wait_for(process.wait(), grace_s)
                return
            except TimeoutError:
                pass
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGKILL)
        await process.wait()
