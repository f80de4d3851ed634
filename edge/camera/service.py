# Long module: the worker processes are in workers.py; what stays (observations, presence,
# waiting counts, calibration, the key-press verdict) shares one per-camera state and socket.
"""The gateway's camera service: runs the workers, turns their output into journaled events,
answers the key press's question (was a citizen there?) and keeps the evidence.

    service = CameraService(cameras, evidence_dir)
    async with service:
        async for event in service.events():       # camera.health / presence / waiting / evidence
            journal(event.kind, event.body)
        ...
        verdict = await service.verdict_at(window=3, at_monotonic=press_mono)

Workers are subprocesses (``python -m edge.camera.worker``) on a loopback ROUTER socket; a
worker that exits or stays silent for ``worker_timeout_s`` is killed and started again
(edge/camera/workers.py), and its cameras are reported offline meanwhile. Presence hysteresis
and waiting-count events are decided here from the workers' per-frame observations, so they
survive a worker restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import sys
import time
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import zmq
import zmq.asyncio

from edge.camera.config import CameraConfig, EvidenceConfig, VerdictConfig
from edge.camera.events import (
    CameraEvent,
    CameraHealth,
    CameraPresence,
    CameraWaiting,
    CitizenVerdict,
    EvidenceEntry,
)
from edge.camera.evidence import STATE_DIR, EvidenceStore, ManifestHead, RetentionReport
from edge.camera.link import pack, unpack
from edge.camera.presence import PresenceChange, PresenceTracker
from edge.camera.verdict import Decision, Observation, decide
from edge.camera.workers import WorkerHandle, WorkerProcesses
from hallkit.clock import utc_now
from hallkit.supervise import Supervisor
from protocols.events import Body
from protocols.strict import clean_text

log = logging.getLogger(__name__)

OBSERVATION_KEEP_S = 60.0
WAITING_MIN_INTERVAL_S = 5.0
# the service's supervised loops (name → method); each worker process has a record beside them
TASKS = {
    "camera.receive": "_receive",
    "camera.supervise": "_supervise",
    "camera.retention": "_retention",
}


@dataclass(slots=True)
class _Waiting:
    count: int = -1
    confidence: float = -1.0
    emitted_at: float = -1e18


@dataclass(slots=True)
class _CameraState:
    health: CameraHealth
    waiting: _Waiting = field(default_factory=_Waiting)
    frames: int = 0


class CalibrationError(RuntimeError):
    """A calibration that could not be done (unknown camera, no live picture)."""


@dataclass(frozen=True, slots=True)
class Calibration:
    camera: str
    regions: list[str]
    snapshot: str | None  # evidence path of the frame the references were taken from

    def describe(self) -> str:
        shot = f"; snapshot {self.snapshot}" if self.snapshot else ""
        return f"camera {self.camera}: references of {', '.join(self.regions)}{shot}"


def utc_at(mono: float) -> datetime:
    """The wall-clock time of a monotonic instant in the recent past."""
    return utc_now() - timedelta(seconds=time.monotonic() - mono)


class CameraService:
    def __init__(
        self,
        cameras: list[CameraConfig],
        evidence_dir: Path,
        *,
        evidence: EvidenceConfig | None = None,
        verdict: VerdictConfig | None = None,
        cameras_per_worker: int = 1,
        worker_timeout_s: float = 10.0,
        worker_max_rss_mb: int = 512,
        state_dir: Path | None = None,
        retention_every_s: float = 600.0,
        python: str = sys.executable,
        supervisor: Supervisor | None = None,
    ) -> None:
        self.cameras = {c.id: c for c in cameras}
        if len(self.cameras) != len(cameras):
            raise ValueError("camera ids must be distinct")
        self.evidence_config = evidence or EvidenceConfig()
        self.verdict_config = verdict or VerdictConfig()
        self.retention_every_s = retention_every_s
        self.supervisor = supervisor or Supervisor()  # its tasks, and a record per worker
        self.evidence_dir = evidence_dir
        self.state_dir = state_dir or evidence_dir / STATE_DIR
        self.store = EvidenceStore(evidence_dir, self.evidence_config, on_entry=self._on_entry)
        cfg = self.evidence_config
        self.processes = WorkerProcesses(
            cameras,
            cameras_per_worker,
            python=python,
            state_dir=self.state_dir,
            ring_s=max(cfg.clip_before_s + cfg.clip_after_s, self.verdict_config.before_s) + 6.0,
            timeout_s=worker_timeout_s,
            max_rss_bytes=worker_max_rss_mb * 2**20,
            supervisor=self.supervisor,
            on_lost=self._worker_lost,
        )
        self.workers = self.processes.workers
        self._worker_of = {c.id: w for w in self.workers for c in w.cameras}
        self._state = {
            c.id: _CameraState(CameraHealth(camera=c.id, state="offline", reason="starting"))
            for c in cameras
        }
        self._obs: dict[tuple[str, int], deque[Observation]] = {}
        self._trackers: dict[tuple[str, int], PresenceTracker] = {}
        for c in cameras:
            for w in c.windows:
                self._obs[(c.id, w.window)] = deque(maxlen=int(OBSERVATION_KEEP_S * c.fps) + 4)
                self._trackers[(c.id, w.window)] = PresenceTracker(
                    w.window, c.away_after_s, c.present_after_s, c.occlusion_s
                )
        self._events: asyncio.Queue[CameraEvent] = asyncio.Queue()
        self._pending: dict[int, asyncio.Future[tuple[dict[str, Any], list[bytes]]]] = {}
        self._request_ids = itertools.count(1)
        self._background: set[asyncio.Task[Any]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._context: zmq.asyncio.Context | None = None
        self._router: zmq.asyncio.Socket | None = None
        self._stopping = False

    # -- lifetime ------------------------------------------------------------------------------

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._context = zmq.asyncio.Context()
        self._router = self._context.socket(zmq.ROUTER)
        self._router.setsockopt(zmq.LINGER, 0)
        port = self._router.bind_to_random_port("tcp://127.0.0.1")
        await self.processes.start(f"tcp://127.0.0.1:{port}")
        for name, loop in TASKS.items():
            self.supervisor.spawn(name, getattr(self, loop))

    async def stop(self) -> None:
        self._stopping = self.processes.stopping = True
        for handle in self.workers:
            with contextlib.suppress(zmq.ZMQError):
                await self._send(handle, {"t": "stop"})
        for handle in self.workers:
            await self.processes.end(handle, grace_s=3.0)
        for name in TASKS:
            await self.supervisor.cancel(name)
        for task in self._background:
            task.cancel()
        for task in list(self._background):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self._router is not None:
            self._router.close()
        if self._context is not None:
            self._context.term()

    async def __aenter__(self) -> CameraService:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # -- what the gateway calls ------------------------------------------------------------------

    async def events(self) -> AsyncIterator[CameraEvent]:
        """Camera events in the order they were decided; one consumer (the journal)."""
        while True:
            yield await self._events.get()

    def manifest_head(self) -> ManifestHead:
        return self.store.head()

    def health(self) -> dict[str, CameraHealth]:
        return {camera: state.health for camera, state in self._state.items()}

    def presence(self) -> dict[tuple[str, int], str]:
        return {key: tracker.state for key, tracker in self._trackers.items()}

    def worker_pids(self) -> dict[str, int]:
        return {h.id: h.pid for h in self.workers if h.pid is not None}

    async def enforce_retention(self, now: datetime | None = None) -> RetentionReport:
        return await asyncio.to_thread(self.store.enforce_retention, now or utc_now())

    def worker_rss(self) -> dict[str, int]:
        """Resident memory of each worker process in bytes, from its last heartbeat."""
        return {h.id: h.rss_bytes for h in self.workers if h.rss_bytes}

    def cameras_of(self, window: int) -> list[str]:
        return [c.id for c in self.cameras.values() if any(w.window == window for w in c.windows)]

    async def calibrate(self, camera: str, windows: list[int] | None = None) -> Calibration:
        """Take the camera's current frame as the empty reference of the given windows' seat
        and counter (all regions when None); the frame is kept as evidence to confirm by eye."""
        if camera not in self.cameras:
            raise CalibrationError(f"unknown camera {camera!r}; known: {sorted(self.cameras)}")
        try:
            header, blobs = await self._request(
                camera, {"t": "calibrate", "camera": camera, "windows": windows}, 5.0
            )
        except TimeoutError:
            raise CalibrationError(f"camera {camera}: its worker did not answer") from None
        if not header.get("ok"):
            raise CalibrationError(f"camera {camera}: {header.get('error')}")
        regions = list(header.get("regions", []))
        snapshot = None
        if blobs:
            entry = await asyncio.to_thread(
                self.store.add,
                blobs[0],
                kind="snap",
                camera=camera,
                window=windows[0] if windows and len(windows) == 1 else None,
                utc=utc_at(float(header["mono"])),
                reason="calibration: empty reference",
                meta={"regions": regions},
            )
            snapshot = str(entry["path"])
        for key, tracker in self._trackers.items():
            if key[0] == camera and (windows is None or key[1] in windows):
                tracker.reset()  # judged against the new reference from now on
        return Calibration(camera, regions, snapshot)

    async def verdict_at(self, window: int, at_monotonic: float) -> CitizenVerdict:
        """Citizen present / absent / unknown at a key press, with a snapshot as evidence.

        Waits until the frames just after the press have been analysed (``after_s``), at most
        ``max_wait_s``."""
        config = self.verdict_config
        cameras = [c for c in self.cameras.values() if any(w.window == window for w in c.windows)]
        at_ns = max(0, int(at_monotonic * 1e9))
        if not cameras:
            head = self.store.head()
            return CitizenVerdict(
                window=window,
                verdict="unknown",
                confidence=0.0,
                reason="no camera watches this window",
                at_mono_ns=at_ns,
                frames=0,
                occupied_frames=0,
                manifest_seq=head.seq,
                manifest_head=head.hash,
            )
        slowest = max(1.0 / c.fps for c in cameras)
        wait = min(at_monotonic + config.after_s + slowest - time.monotonic(), config.max_wait_s)
        if wait > 0:
            await asyncio.sleep(wait)
        decisions = [
            (c, decide(self._obs[(c.id, window)], at_monotonic, config, self._trouble(c.id)))
            for c in cameras
        ]
        camera, decision = _best(decisions)
        snapshot = await self._snapshot(
            camera.id,
            window,
            at_monotonic,
            f"key press: citizen {decision.verdict}",
            {"press_mono_ns": at_ns, "verdict": decision.verdict},
        )
        if decision.verdict != "present":
            self._spawn_background(self._clip(camera.id, window, at_monotonic, decision))
        head = self.store.head()
        return CitizenVerdict(
            window=window,
            verdict=decision.verdict,
            confidence=decision.confidence,
            reason=decision.reason,
            camera=camera.id,
            at_mono_ns=at_ns,
            frames=decision.frames,
            occupied_frames=decision.occupied_frames,
            snapshot=snapshot[0] if snapshot else None,
            snapshot_sha256=snapshot[1] if snapshot else None,
            snapshot_offset_ms=round((snapshot[2] - at_monotonic) * 1000) if snapshot else None,
            manifest_seq=head.seq,
            manifest_head=head.hash,
        )

    async def frames(
        self, camera: str, which: dict[str, float], timeout: float
    ) -> tuple[dict[str, Any], list[bytes]]:
        """Buffered frames of ``camera`` as JPEGs: ``{"nearest": mono}`` or ``{"from", "to"}``;
        the worker's header says ``ok``, ``monos`` and ``error``."""
        return await self._request(camera, {"t": "frames", "camera": camera, **which}, timeout)

    # -- evidence ------------------------------------------------------------------------------

    async def _snapshot(
        self, camera: str, window: int, mono: float, reason: str, meta: dict[str, Any]
    ) -> tuple[str, str, float] | None:
        """The buffered frame nearest ``mono``, stored as evidence: (path, sha256, frame mono)."""
        try:
            header, blobs = await self._request(
                camera, {"t": "frames", "camera": camera, "nearest": mono}, 3.0
            )
        except (TimeoutError, KeyError) as error:
            log.warning("no snapshot from %s: %r", camera, error)
            return None
        if not header.get("ok") or not blobs:
            return None
        frame_mono = float(header["monos"][0])
        meta = {**meta, "frame_mono_ns": int(frame_mono * 1e9)}
        entry = await asyncio.to_thread(
            self.store.add,
            blobs[0],
            kind="snap",
            camera=camera,
            window=window,
            utc=utc_at(frame_mono),
            reason=reason,
            meta=meta,
        )
        return str(entry["path"]), str(entry["sha256"]), frame_mono

    async def _clip(self, camera: str, window: int, at: float, decision: Decision) -> None:
        cfg = self.evidence_config
        end = at + cfg.clip_after_s
        await asyncio.sleep(max(0.0, end - time.monotonic() + 0.6))
        try:
            header, blobs = await self._request(
                camera,
                {"t": "frames", "camera": camera, "from": at - cfg.clip_before_s, "to": end},
                5.0,
            )
        except (TimeoutError, KeyError):
            return
        if not header.get("ok") or not blobs:
            return
        monos = [float(m) for m in header["monos"]]
        await asyncio.to_thread(
            self.store.add,
            b"".join(blobs),
            kind="clip",
            camera=camera,
            window=window,
            utc=utc_at(monos[0]),
            reason=f"key press: citizen {decision.verdict}",
            meta={
                "press_mono_ns": int(at * 1e9),
                "frames": len(blobs),
                "first_mono_ns": int(monos[0] * 1e9),
                "last_mono_ns": int(monos[-1] * 1e9),
                "format": "mjpeg",
            },
        )

    def _on_entry(self, entry: dict[str, Any]) -> None:
        """Called by the store (in a worker thread) for every new chain entry."""
        body = EvidenceEntry(
            seq=entry["seq"],
            action=entry["action"],
            path=entry["path"],
            sha256=entry["sha256"],
            size=entry["size"],
            reason=clean_text(str(entry["reason"]), 120),
            camera=entry.get("camera"),
            window=entry.get("window"),
            head=entry["hash"],
        )
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._emit, "camera.evidence", body)

    def _emit(self, kind: str, body: Body, mono: float | None = None) -> None:
        mono = time.monotonic() if mono is None else mono
        self._events.put_nowait(CameraEvent(kind, body, utc_at(mono), int(mono * 1e9)))

    # -- the workers' messages -------------------------------------------------------------------

    async def _receive(self) -> None:
        assert self._router is not None
        while True:
            frames = await self._router.recv_multipart()
            worker_id = frames[0].decode()
            try:
                header, blobs = unpack(frames[1:])
                self._dispatch(worker_id, header, blobs)
            except Exception:
                log.exception("bad message from camera worker %s", worker_id)

    def _dispatch(self, worker_id: str, header: dict[str, Any], blobs: list[bytes]) -> None:
        handle = next((h for h in self.workers if h.id == worker_id), None)
        if handle is None:
            return
        handle.last_seen = time.monotonic()
        kind = header["t"]
        if kind == "hb":
            handle.cpu_s = float(header.get("cpu", 0.0))
            handle.rss_bytes = int(header.get("rss", 0))
        elif kind == "hello":
            handle.pid = int(header["pid"])
        elif kind == "health":
            self._set_health(
                header["camera"],
                header["state"],
                header["reason"],
                header["mono"],
                str(header.get("advice", "")),
            )
        elif kind == "obs":
            self._observe(header)
        elif kind == "note":
            log.info("camera %s: %s", header.get("camera"), header.get("text"))
        elif kind == "reply":
            future = self._pending.pop(int(header["id"]), None)
            if future is not None and not future.done():
                future.set_result((header, blobs))

    def _set_health(
        self,
        camera: str,
        state: str,
        reason: str,
        mono: float | None = None,
        advice: str = "",
        new_reason_too: bool = False,
    ) -> None:
        current = self._state[camera].health
        if current.state == state and not (new_reason_too and current.reason != reason):
            return
        body = CameraHealth.model_validate(
            {
                "camera": camera,
                "state": state,
                "reason": clean_text(reason, 300),
                "advice": clean_text(advice, 300),
            }
        )
        self._state[camera].health = body
        self._emit("camera.health", body, mono)

    def _observe(self, header: dict[str, Any]) -> None:
        camera = header["camera"]
        mono = float(header["mono"])
        state = self._state[camera]
        state.frames += 1
        for window, staff_occ, _staff_score, citizen_occ, citizen_score in header["windows"]:
            key = (camera, int(window))
            if key not in self._obs:
                continue
            self._obs[key].append(Observation(mono, citizen_occ, citizen_score))
            change = self._trackers[key].update(mono, staff_occ)
            if change is not None:
                self._spawn_background(self._presence_changed(camera, change))
        if "waiting" in header:
            count, confidence, basis = header["waiting"]
            self._waiting(camera, int(count), float(confidence), str(basis), mono)

    async def _presence_changed(self, camera: str, change: PresenceChange) -> None:
        snapshot = await self._snapshot(
            camera,
            change.window,
            change.decided,
            f"staff {change.state}",
            {"since_mono_ns": int(change.since * 1e9)},
        )
        body = CameraPresence(
            camera=camera,
            window=change.window,
            staff=change.state,
            since=utc_at(change.since),
            since_mono_ns=int(change.since * 1e9),
            confidence=change.confidence,
            snapshot=snapshot[0] if snapshot else None,
            snapshot_sha256=snapshot[1] if snapshot else None,
        )
        self._emit("camera.presence", body, change.decided)

    def _waiting(self, camera: str, count: int, confidence: float, basis: str, mono: float) -> None:
        waiting = self._state[camera].waiting
        if basis == "warming up":
            return
        changed = count != waiting.count or abs(confidence - waiting.confidence) >= 0.2
        # A change inside the interval is not lost: it still differs at the next frame.
        if not changed or mono - waiting.emitted_at < WAITING_MIN_INTERVAL_S:
            return
        waiting.count, waiting.confidence, waiting.emitted_at = count, confidence, mono
        body = CameraWaiting(camera=camera, count=count, confidence=confidence, basis=basis[:120])
        self._emit("camera.waiting", body, mono)

    # -- requests to workers ---------------------------------------------------------------------

    async def _request(
        self, camera: str, header: dict[str, Any], timeout: float
    ) -> tuple[dict[str, Any], list[bytes]]:
        handle = self._worker_of[camera]
        request_id = next(self._request_ids)
        future: asyncio.Future[tuple[dict[str, Any], list[bytes]]] = (
            asyncio.get_running_loop().create_future()
        )
        self._pending[request_id] = future
        try:
            await self._send(handle, {**header, "id": request_id})
            return await asyncio.wait_for(future, timeout)
        finally:
            self._pending.pop(request_id, None)

    async def _send(self, handle: WorkerHandle, header: dict[str, Any]) -> None:
        assert self._router is not None
        await self._router.send_multipart([handle.id.encode(), *pack(header)])

    # -- supervision ---------------------------------------------------------------------------

    async def _supervise(self) -> None:
        await self.processes.supervise()

    def _worker_lost(self, handle: WorkerHandle, why: str) -> None:
        for camera in handle.cameras:
            # A worker killed before its camera came online was already "offline: starting":
            # the hall page must still learn why (memory, silence, exit), once per restart.
            self._set_health(camera.id, "offline", why, new_reason_too=True)

    async def _retention(self) -> None:
        while True:
            try:
                report = await self.enforce_retention()
                if report.deleted:
                    log.info("evidence retention deleted %d files", len(report.deleted))
            except Exception:
                log.exception("evidence retention failed")
            await asyncio.sleep(self.retention_every_s)

    def _trouble(self, camera: str) -> str | None:
        health = self._state[camera].health
        if health.state == "online":
            return None
        return f"camera {health.state}: {health.reason}"

    def _spawn_background(self, coroutine: Any) -> None:
        task = asyncio.create_task(coroutine)
        self._background.add(task)
        task.add_done_callback(self._background.discard)


def _best(decisions: list[tuple[CameraConfig, Decision]]) -> tuple[CameraConfig, Decision]:
    """With several cameras on one window: anyone seen wins (an accusation needs all to agree),
    then the surest absence, then the first camera's unknown."""
    present = [d for d in decisions if d[1].verdict == "present"]
    if present:
        return max(present, key=lambda d: d[1].confidence)
    absent = [d for d in decisions if d[1].verdict == "absent"]
    if len(absent) == len(decisions):
        return max(absent, key=lambda d: d[1].confidence)
    return next(d for d in decisions if d[1].verdict == "unknown")
