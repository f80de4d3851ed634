"""A camera worker process: readers, analysis, a short ring of frames; talks to the core by zmq.

    python -m edge.camera.worker --endpoint tcp://127.0.0.1:PORT --id w1 --state-dir DIR \
        --cameras '[{"id": "c1", "url": "rtsp://…", …}]'

One worker can serve several cameras (each has its own reader thread; analysis runs in the
main thread at each camera's rate). The main thread alone touches the zmq socket.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import queue
import signal
import sys
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import zmq

from edge.camera.analytics import Analysis, CameraAnalyzer, analysis_gray, same_picture
from edge.camera.config import CameraConfig
from edge.camera.link import HEARTBEAT_S, pack, unpack
from edge.camera.references import ReferenceFiles
from firmware_bridges.camera.driver import (
    CapturedFrame,
    HealthChange,
    LatestFrameReader,
    make_source,
)

log = logging.getLogger("edge.camera.worker")

REFERENCE_SAVE_EVERY_S = 600.0
FROZEN_AFTER_S = 10.0  # the same picture this long is a frozen stream (a keyframe every few
# seconds re-encodes sensor noise and the on-screen clock, so a live camera never stays identical)
RELOAD_CHECK_S = 2.0  # how often the reference files are checked for a calibration from outside
RAW_RING_BYTES = 32 * 2**20  # decoded pictures a camera's ring may hold unencoded; beyond, JPEGs


@dataclass(slots=True)
class RingFrame:
    """An analysed frame kept for evidence. A decoded picture (RTSP) is encoded to JPEG only
    when someone asks for it: JPEG encoding was the largest cost of the analysis thread (~0.7 ms
    a frame at 640×360), and only the few frames around a key press are ever asked for."""

    mono: float
    frame: CapturedFrame | None
    encoded: bytes | None = None

    def jpeg(self) -> bytes:
        if self.encoded is None:
            assert self.frame is not None
            self.encoded = self.frame.to_jpeg()
            self.frame = None
        return self.encoded


def ring_frame(frame: CapturedFrame, ring_length: int) -> RingFrame:
    """Keep the picture unencoded while a full ring of such pictures fits the budget (a 640×360
    substream: 30 × 0.7 MB), else encode it now."""
    entry = RingFrame(frame.mono, frame)
    if frame.image is not None and frame.image.nbytes * ring_length > RAW_RING_BYTES:
        entry.jpeg()
    return entry


@dataclass(slots=True)
class CameraRun:
    config: CameraConfig
    reader: LatestFrameReader
    analyzer: CameraAnalyzer
    ring: deque[RingFrame]
    next_due: float = 0.0
    last_seq: int = 0
    reduce: int | None = None
    saved_at: float = 0.0
    unsaved: bool = False
    health: queue.Queue[HealthChange] = field(default_factory=queue.Queue)
    link: HealthChange | None = None  # the stream's own state, from the reader
    reported: str = ""
    last_gray: np.ndarray[Any, np.dtype[np.uint8]] | None = None
    last_jpeg: bytes | None = None
    same_since: float | None = None  # the picture has not changed since (frozen stream?)
    references_mtime: float = 0.0
    reload_at: float = 0.0


class Worker:
    def __init__(
        self,
        worker_id: str,
        endpoint: str,
        cameras: list[CameraConfig],
        state_dir: Path | None,
        ring_s: float,
    ) -> None:
        self.worker_id = worker_id
        self.state_dir = state_dir
        self.context = zmq.Context()
        self.socket = self.context.socket(zmq.DEALER)
        self.socket.setsockopt(zmq.IDENTITY, worker_id.encode())
        self.socket.setsockopt(zmq.LINGER, 500)
        # The core may be slow to read (it journals); never let our queue grow without bound.
        self.socket.setsockopt(zmq.SNDHWM, 2000)
        self.socket.connect(endpoint)
        self.running = True
        self.runs: dict[str, CameraRun] = {}
        for config in cameras:
            health: queue.Queue[HealthChange] = queue.Queue()  # filled by the reader thread
            run = CameraRun(
                config=config,
                reader=LatestFrameReader(
                    config.id,
                    self._source_factory(config),
                    on_health=health.put,
                    # decode (H.264 must) every frame, but convert only what is analysed: the
                    # frame after each one taken (its stamp is its arrival, so still exact)
                    convert_every_s=1.0 / config.fps,
                ),
                analyzer=CameraAnalyzer(config),
                ring=deque(maxlen=max(4, int(ring_s * config.fps) + 2)),
                health=health,
            )
            self._restore_references(run)
            self.runs[config.id] = run

    @staticmethod
    def _source_factory(config: CameraConfig) -> Any:
        def factory() -> Any:
            return make_source(
                config.url, config.open_timeout_s, config.read_timeout_s, config.backend
            )

        return factory

    def send(self, header: dict[str, Any], blobs: list[bytes] | None = None) -> None:
        try:
            self.socket.send_multipart(pack(header, blobs), flags=zmq.NOBLOCK)
        except zmq.Again:
            log.warning("worker %s: core not reading, dropped %s", self.worker_id, header["t"])

    def run(self) -> None:
        self.send(
            {"t": "hello", "worker": self.worker_id, "pid": os.getpid(), "cameras": list(self.runs)}
        )
        for run in self.runs.values():
            run.reader.start()
        next_heartbeat = 0.0
        poller = zmq.Poller()
        poller.register(self.socket, zmq.POLLIN)
        while self.running:
            now = time.monotonic()
            if now >= next_heartbeat:
                self.send(
                    {
                        "t": "hb",
                        "worker": self.worker_id,
                        "cpu": time.process_time(),
                        "rss": _rss_bytes(),
                    }
                )
                next_heartbeat = now + HEARTBEAT_S
            for run in self.runs.values():
                self._forward_health(run)
                if now >= run.next_due:
                    run.next_due = max(run.next_due + 1.0 / run.config.fps, now)
                    self._analyse(run)
            due = min([r.next_due for r in self.runs.values()] + [next_heartbeat])
            # rounded up: a wait rounded down to 0 ms would spin until the frame is due
            timeout_ms = max(0, min(200, math.ceil((due - time.monotonic()) * 1000)))
            if poller.poll(timeout_ms):
                while self.socket.poll(0):
                    self._handle(*unpack(self.socket.recv_multipart()))
        self.close()

    def close(self) -> None:
        for run in self.runs.values():
            run.reader.stop(timeout=2.0)
            self._save_references(run)
        self.socket.close()
        self.context.term()

    def _forward_health(self, run: CameraRun) -> None:
        """Report the camera's health: the stream's state, then whether its picture can be
        judged (frozen, too dark, flickering, no reference), as one state with advice."""
        while True:
            try:
                run.link = run.health.get_nowait()
            except queue.Empty:
                break
        if run.link is None:
            return
        state, reason, advice = str(run.link.state), run.link.reason, ""
        frozen_for = 0.0 if run.same_since is None else time.monotonic() - run.same_since
        if state == "online" or (state == "stalled" and run.same_since is not None):
            blind = run.analyzer.blindness()
            if frozen_for >= FROZEN_AFTER_S:
                state = "frozen"
                reason = (
                    f"画面 {frozen_for:.0f} 秒未变，视频流冻结 / the picture has not changed "
                    f"for {frozen_for:.0f} s: the stream is frozen"
                )
                advice = (
                    "检查摄像头或录像机（重启其视频流） / check the camera or recorder "
                    "(restart its stream)"
                )
            elif state == "online" and blind is not None:
                state, reason, advice = blind.state, blind.reason, blind.advice
        if state == run.reported:
            return
        run.reported = state
        self.send(
            {
                "t": "health",
                "camera": run.config.id,
                "state": state,
                "reason": reason,
                "advice": advice,
                "mono": run.link.mono
                if state in ("online", "offline", "stalled")
                else time.monotonic(),
            }
        )

    def _analyse(self, run: CameraRun) -> None:
        frame = run.reader.latest()
        if frame is None or frame.seq == run.last_seq:
            return  # nothing new: the reader reports the stall, there is nothing to judge
        run.last_seq = frame.seq
        if frame.jpeg is not None and frame.jpeg == run.last_jpeg:
            self._same_picture(run, frame.mono)
            return
        run.last_jpeg = frame.jpeg
        try:
            gray = self._gray(run, frame)
        except ValueError as error:
            self.send({"t": "note", "camera": run.config.id, "text": f"bad frame: {error}"})
            return
        if same_picture(gray, run.last_gray):
            self._same_picture(run, frame.mono)
            return  # a resent old picture is not news: judging it again would fake stillness
        run.last_gray = gray
        run.same_since = None
        analysis = run.analyzer.analyse(gray, frame.mono)
        run.ring.append(ring_frame(frame, run.ring.maxlen or 1))
        self.send(_obs_message(run.config.id, analysis))
        for note in analysis.notes:
            self.send({"t": "note", "camera": run.config.id, "text": note})
            run.unsaved = True
        if frame.mono >= run.reload_at:
            run.reload_at = frame.mono + RELOAD_CHECK_S
            self._reload_if_calibrated_outside(run)
        if run.unsaved or frame.mono - run.saved_at > REFERENCE_SAVE_EVERY_S:
            self._save_references(run)
            run.saved_at = frame.mono

    @staticmethod
    def _same_picture(run: CameraRun, mono: float) -> None:
        if run.same_since is None:
            run.same_since = mono

    def _gray(self, run: CameraRun, frame: CapturedFrame) -> np.ndarray[Any, np.dtype[np.uint8]]:
        width = run.config.analysis_width
        if frame.jpeg is not None:
            if run.reduce is None:
                full = frame.gray(1)
                # Largest libjpeg reduction that still leaves at least the analysis width.
                run.reduce = max(r for r in (1, 2, 4, 8) if full.shape[1] // r >= width or r == 1)
                return analysis_gray(full, width)
            gray = frame.gray(run.reduce)
            if gray.shape[1] < width and run.reduce > 1:
                run.reduce = None  # the stream got smaller: choose the reduction again
            return analysis_gray(gray, width)
        return analysis_gray(frame.bgr(), width)

    def _handle(self, header: dict[str, Any], blobs: list[bytes]) -> None:
        kind = header["t"]
        if kind == "stop":
            self.running = False
        elif kind == "frames":
            self._reply_frames(header)
        elif kind == "calibrate":
            self._calibrate(header)

    def _calibrate(self, header: dict[str, Any]) -> None:
        """Take the newest frame as the empty reference; answer with it as a JPEG to confirm."""
        run = self.runs.get(header.get("camera", ""))
        frame = run.reader.latest() if run else None
        if run is None or frame is None:
            self.send({"t": "reply", "id": header["id"], "ok": False, "error": "no frame"})
            return
        if run.same_since is not None and time.monotonic() - run.same_since >= FROZEN_AFTER_S:
            self.send(
                {
                    "t": "reply",
                    "id": header["id"],
                    "ok": False,
                    "error": "the stream is frozen: no live picture to calibrate on",
                }
            )
            return
        windows = header.get("windows")
        taken = run.analyzer.calibrate(self._gray(run, frame), frame.mono, windows=windows)
        self._save_references(run)
        self.send(
            {
                "t": "reply",
                "id": header["id"],
                "ok": bool(taken),
                "regions": taken,
                "mono": frame.mono,
                "error": None if taken else f"no region of windows {windows}",
            },
            [frame.to_jpeg()],
        )

    def _reply_frames(self, header: dict[str, Any]) -> None:
        run = self.runs.get(header.get("camera", ""))
        if run is None:
            self.send({"t": "reply", "id": header["id"], "ok": False, "error": "unknown camera"})
            return
        ring = list(run.ring)
        if header.get("nearest") is not None:
            target = float(header["nearest"])
            chosen = [min(ring, key=lambda item: abs(item.mono - target))] if ring else []
        else:
            start, end = float(header["from"]), float(header["to"])
            chosen = [item for item in ring if start <= item.mono <= end]
        self.send(
            {
                "t": "reply",
                "id": header["id"],
                "ok": bool(chosen),
                "monos": [item.mono for item in chosen],
                "error": None if chosen else "no buffered frame",
            },
            [item.jpeg() for item in chosen],
        )

    # -- empty-seat references across restarts -------------------------------------------------

    def _reference_files(self, run: CameraRun) -> ReferenceFiles | None:
        return None if self.state_dir is None else ReferenceFiles(self.state_dir / run.config.id)

    def _save_references(self, run: CameraRun) -> None:
        files = self._reference_files(run)
        run.unsaved = False
        if files is not None:
            files.save(run.analyzer)
            run.references_mtime = files.newest_mtime()

    def _reload_if_calibrated_outside(self, run: CameraRun) -> None:
        """The command line calibrates from its own connection and writes the files: load them."""
        files = self._reference_files(run)
        if files is not None and files.newest_mtime() > run.references_mtime:
            self._restore_references(run)
            self.send(
                {
                    "t": "note",
                    "camera": run.config.id,
                    "text": "references reloaded after a calibration",
                }
            )

    def _restore_references(self, run: CameraRun) -> None:
        files = self._reference_files(run)
        if files is not None:
            files.load(run.analyzer)
            run.references_mtime = files.newest_mtime()


def _rss_bytes() -> int:
    """Resident memory of this worker (Linux), reported with each heartbeat."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
    except (OSError, ValueError, IndexError):
        return 0
    return pages * os.sysconf("SC_PAGE_SIZE")


def _obs_message(camera: str, analysis: Analysis) -> dict[str, Any]:
    message: dict[str, Any] = {
        "t": "obs",
        "camera": camera,
        "mono": analysis.mono,
        "windows": [
            [w.window, w.staff_occupied, w.staff_score, w.citizen_occupied, w.citizen_score]
            for w in analysis.windows
        ],
        "motion": round(analysis.motion, 4),
        "gated": analysis.gated,
    }
    if analysis.waiting is not None:
        message["waiting"] = [
            analysis.waiting.count,
            analysis.waiting.confidence,
            analysis.waiting.basis,
        ]
    return message


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m edge.camera.worker")
    parser.add_argument("--endpoint", required=True)
    parser.add_argument("--id", required=True)
    parser.add_argument("--cameras", required=True, help="JSON list of camera configs")
    parser.add_argument("--state-dir", type=Path)
    parser.add_argument("--ring-s", type=float, default=15.0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format=f"%(asctime)s worker {args.id} %(message)s")
    cameras = [CameraConfig.model_validate(c) for c in json.loads(args.cameras)]
    # No OpenCV thread pool: its threads spin (sched_yield) after every parallel call, and on
    # a worker that analyses a 320-pixel frame twice a second the spinning cost ~2 ms of CPU
    # per camera-second, more than the work it split. Results are the same on one thread.
    cv2.setNumThreads(1)
    if any(c.url.lower().startswith("rtsp") for c in cameras):
        # Interleaved RTSP over TCP: no UDP ports to open, no loss on a busy hall network.
        os.environ.setdefault("OPENCV_FFMPEG_CAPTURE_OPTIONS", "rtsp_transport;tcp")
    worker = Worker(args.id, args.endpoint, cameras, args.state_dir, args.ring_s)

    def _stop(signum: int, frame: object) -> None:
        worker.running = False

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    worker.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
