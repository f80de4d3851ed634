"""The window cameras as a gateway device: the camera service (edge/camera/service.py) started
under the gateway's supervisor, its events journaled, and the verdict on every key press.

The verdict is the journal's subscriber: once an evaluation key (not a retransmission) is
committed, the cameras are asked whether a citizen was at the window when it was pressed, and
the answer is journaled as ``camera.verdict`` tied to the key.

OpenCV is imported only when cameras are configured and started.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from edge.camera.config import CameraServiceConfig
from edge.committed import Committed
from edge.journal import Journal
from hallkit.supervise import Supervisor
from protocols.camera import CameraVerdict

if TYPE_CHECKING:
    from edge.camera.service import CameraService

log = logging.getLogger(__name__)

EVENTS_TASK = "camera.events"


class CameraDevice:
    name = "cameras"

    def __init__(self, config: CameraServiceConfig, journal: Journal) -> None:
        self.config = config
        self.journal = journal
        self.service: CameraService | None = None  # once started
        self._unsubscribe: Callable[[], None] | None = None
        self._verdicts: set[asyncio.Task[None]] = set()
        self._supervisor: Supervisor | None = None

    def device_ids(self) -> list[str]:
        return []  # the service restarts its own workers; a remote reread leaves it alone

    async def start(self, supervisor: Supervisor) -> None:
        from edge.camera.service import CameraService

        cams = self.config
        self._supervisor = supervisor
        self.service = CameraService(
            cams.cameras,
            cams.evidence_dir,
            evidence=cams.evidence,
            verdict=cams.verdict,
            cameras_per_worker=cams.cameras_per_worker,
            worker_timeout_s=cams.worker_timeout_s,
            worker_max_rss_mb=cams.worker_max_rss_mb,
            state_dir=cams.state_dir,
            retention_every_s=cams.retention_every_s,
            supervisor=supervisor,
        )
        self._unsubscribe = self.journal.subscribe(self._on_committed)
        await self.service.start()
        supervisor.spawn(EVENTS_TASK, self._journal_events)

    async def close(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        if self._supervisor is not None:
            await self._supervisor.cancel(EVENTS_TASK)
        for task in list(self._verdicts):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self.service is not None:
            await self.service.stop()

    def health(self) -> dict[str, Any]:
        return {}  # each camera's state is journaled (camera.health) and shown on the page

    async def _journal_events(self) -> None:
        assert self.service is not None
        async for event in self.service.events():
            await self.journal.append(event.kind, event.body)

    # -- the verdict on a key press -----------------------------------------------------------

    def _on_committed(self, event: Committed) -> None:
        body = event.body
        if event.kind != "evaluator.key" or "RETRANSMIT" in body.get("marks", ()):
            return
        task = asyncio.ensure_future(
            self._judge_key_press(
                body["window"], body["addr"], body["dev_seq"], event.mono_ns / 1e9, event.seq
            )
        )
        self._verdicts.add(task)
        task.add_done_callback(self._verdicts.discard)
        task.add_done_callback(_log_failure)

    async def _judge_key_press(
        self, window: int, addr: int, dev_seq: int, pressed_at: float, key_seq: int
    ) -> None:
        """Ask the cameras whether a citizen was at the window; journal the verdict."""
        if self.service is None:
            return
        try:
            verdict = await self.service.verdict_at(window, pressed_at)
        except Exception:
            log.exception("camera verdict for window %d failed", window)
            return
        body = CameraVerdict(**dict(verdict), addr=addr, dev_seq=dev_seq, key_seq=key_seq)
        await self.journal.append("camera.verdict", body)


def _log_failure(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("camera verdict not journaled: %s", task.exception())
