"""The camera service end to end: worker processes, real RTSP and MJPEG streams, evidence.

The scene's frames carry their index as a barcode; the test reads the same shared RTSP stream
with its own reader to know which scene instant the gateway is seeing, and presses the key at
the scene's press times.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import signal
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TypeVar

import pytest

from edge.camera.config import Polygon
from edge.camera.events import (
    CameraEvent,
    CameraHealth,
    CameraPresence,
    CameraWaiting,
    EvidenceEntry,
)
from edge.camera.service import CameraService
from edge.camera.verify import verify_evidence
from firmware_bridges.camera.driver import Health, LatestFrameReader, make_source
from firmware_bridges.camera.simulator import (
    FrameFeed,
    MjpegServer,
    RtspServer,
    hall_scene,
    read_barcode,
)
from protocols.body import Body
from tests.edge.camera.scenes import hall_camera, need_rtsp, vtest_path

FPS = 10
B = TypeVar("B", bound=Body)


def bodies(events: list[CameraEvent], kind: str, model: type[B]) -> list[B]:
    """The bodies of the events of ``kind``, in order; each is that kind's model."""
    found = [e.body for e in events if e.kind == kind]
    assert all(isinstance(body, model) for body in found), found
    return [body for body in found if isinstance(body, model)]


class SceneClock:
    """Maps the stream's barcodes to monotonic time, from the test's own reader."""

    def __init__(self, url: str) -> None:
        self.reader = LatestFrameReader("clock", lambda: make_source(url, 5.0, 3.0, "opencv"))
        self.seen: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> SceneClock:
        self.reader.start()
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self.reader.stop()

    def _run(self) -> None:
        seq = 0
        while not self._stop.is_set():
            frame = self.reader.wait_newer(seq, 0.5)
            if frame is not None:
                seq = frame.seq
                self.seen.append((frame.mono, read_barcode(frame.bgr())))

    def scene_t(self, mono: float) -> float:
        best = min(self.seen, key=lambda item: abs(item[0] - mono))
        return best[1] / FPS

    async def until(self, scene_t: float, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while not self.seen or self.seen[-1][1] < scene_t * FPS:
            assert time.monotonic() < deadline, f"stream never reached scene time {scene_t}"
            await asyncio.sleep(0.02)


async def collect(service: CameraService, into: list[CameraEvent]) -> None:
    async for event in service.events():
        into.append(event)


@pytest.fixture
async def events_of() -> AsyncIterator[list[asyncio.Task[None]]]:
    tasks: list[asyncio.Task[None]] = []
    yield tasks
    for task in tasks:
        task.cancel()


@pytest.mark.timeout(240)
async def test_rtsp_hall_scene_presence_and_verdicts_match_ground_truth(
    tmp_path: Path, events_of: list[asyncio.Task[None]]
) -> None:
    need_rtsp()
    scene = hall_scene(still_s=5.0, break_s=6.0, lead_s=8.0)
    feed = FrameFeed.from_scene(scene, FPS)
    server = RtspServer(feed.write_sequence(tmp_path / "frames"), fps=FPS).start()
    clock = SceneClock(server.url).start()
    service = CameraService([hall_camera(server.url)], tmp_path / "evidence")
    events: list[CameraEvent] = []
    try:
        await clock.until(0.5)
        await service.start()
        events_of.append(asyncio.create_task(collect(service, events)))
        verdicts = []
        for press in scene.presses:
            await clock.until(press.t)
            at = time.monotonic()
            verdicts.append((press, await service.verdict_at(press.window, at)))
        await asyncio.sleep(4.5)  # the absent press's clip is written after its seconds
    finally:
        await service.stop()
        clock.stop()
        server.stop()

    for press, verdict in verdicts:
        assert verdict.verdict == press.expected, (press, verdict)
        assert verdict.confidence >= 0.5, verdict
        assert verdict.snapshot is not None and verdict.snapshot_sha256 is not None
        stored = (tmp_path / "evidence" / verdict.snapshot).read_bytes()
        assert hashlib.sha256(stored).hexdigest() == verdict.snapshot_sha256
        assert abs(verdict.snapshot_offset_ms or 0) <= 600

    # Staff of window 1: present (arrived at lead+6…8), away (left at lead+8+5, decided 3 s
    # later), present again (back at lead+10+5+6 … +2).
    presence = bodies(events, "camera.presence", CameraPresence)
    w1 = [body for body in presence if body.window == 1]
    states = [body.staff for body in w1]
    assert states[-3:] == ["present", "away", "present"], states
    away = w1[-2]
    left_at = clock.scene_t(away.since_mono_ns / 1e9)
    assert 8 + 13 - 0.5 <= left_at <= 8 + 15 + 0.5, left_at
    returned = clock.scene_t(w1[-1].since_mono_ns / 1e9)
    assert 8 + 21 - 0.5 <= returned <= 8 + 23 + 0.5, returned
    w2 = [body.staff for body in presence if body.window == 2]
    assert w2[-1] == "present" and "away" not in w2[1:], w2

    health = [body.state for body in bodies(events, "camera.health", CameraHealth)]
    assert health == ["online"], health

    # Every evidence file reached the event stream with the chain head, and the chain holds.
    evidence = bodies(events, "camera.evidence", EvidenceEntry)
    assert any(e.path.endswith(".mjpeg") for e in evidence), "no clip for the absent press"
    assert evidence[-1].head == service.manifest_head().hash
    report = verify_evidence(tmp_path / "evidence", expected_head=evidence[0].head)
    assert report.ok, report.lines()


async def wait_event(
    events: list[CameraEvent], kind: str, timeout: float, start: int = 0, **match: object
) -> tuple[int, CameraEvent]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for index in range(start, len(events)):
            event = events[index]
            if event.kind == kind and all(getattr(event.body, k) == v for k, v in match.items()):
                return index, event
        await asyncio.sleep(0.05)
    raise AssertionError(f"no {kind} {match} within {timeout} s: {events[start:]}")


@pytest.mark.timeout(180)
async def test_mjpeg_vtest_worker_death_and_stream_stall_are_detected_and_recovered(
    tmp_path: Path, events_of: list[asyncio.Task[None]]
) -> None:
    feed = FrameFeed.from_video(vtest_path(), width=640)
    with MjpegServer(feed) as server:
        camera = hall_camera(
            server.url,
            id="vtest",
            windows=[],
            person_area=0.004,
            waiting_area=Polygon.rect(0, 0.08, 1, 1),
            read_timeout_s=1.5,
        )
        service = CameraService([camera], tmp_path / "evidence", worker_timeout_s=4.0)
        events: list[CameraEvent] = []
        await service.start()
        events_of.append(asyncio.create_task(collect(service, events)))
        try:
            i, _ = await wait_event(events, "camera.health", 20.0, state="online")
            # Real pedestrians: a waiting count with its confidence arrives.
            _, waiting = await wait_event(events, "camera.waiting", 20.0)
            assert isinstance(waiting.body, CameraWaiting)
            assert waiting.body.count >= 1 and 0 < waiting.body.confidence <= 1

            # The worker dies (a decoder crash): offline at once, back by itself.
            pid = service.worker_pids()["w1"]
            os.kill(pid, signal.SIGKILL)
            i, dead = await wait_event(events, "camera.health", 5.0, start=i, state="offline")
            assert isinstance(dead.body, CameraHealth) and "exited" in dead.body.reason
            i, _ = await wait_event(events, "camera.health", 20.0, start=i, state="online")
            assert service.worker_pids()["w1"] != pid
            # … and the gateway's /healthz (its supervisor) shows the restart and why
            worker = service.supervisor.status()["camera.worker.w1"]
            assert (worker["state"], worker["restarts"]) == ("running", 1), worker
            assert "exited with code" in worker["last_error"]
            assert service.supervisor.status()["camera.receive"]["state"] == "running"

            # The stream stalls with the connection open: noticed within the read timeout.
            stalled_at = time.monotonic()
            server.stall()
            i, stalled = await wait_event(events, "camera.health", 6.0, start=i, state="stalled")
            assert stalled.mono_ns / 1e9 - stalled_at <= camera.read_timeout_s + 1.5
            verdict = await service.verdict_at(1, time.monotonic())
            assert verdict.verdict == "unknown"  # no camera watches window 1 here
            server.resume()
            await wait_event(events, "camera.health", 20.0, start=i, state="online")
            assert service.health()["vtest"].state == Health.ONLINE.value
        finally:
            await service.stop()
