"""Camera analytics cost: CPU milliseconds per camera-second at 2 analysed frames/s, 640×360.

    .venv/bin/python -m tests.bench.bench_camera [--seconds 20] [--cameras 2] [--no-rtsp]

Three figures, each for a still hall (nobody moving: motion gating's case) and a busy one:
1. analysis alone, in this process (decode of the analysed JPEG + analysis), process CPU time;
2. worker processes on an MJPEG-over-HTTP stream at 10 fps (the split is cheap, only the
   analysed frames are decoded): the workers' own CPU time, read from /proc by psutil;
3. worker processes on an RTSP H.264 stream at 10 fps (every frame must be decoded; only about
   the analysed ones are converted to pictures).
For the worker figures, the workers' resident memory (RSS, from their heartbeats) is printed too.
A benchmark, not a test: it prints, it asserts nothing about speed.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

import psutil

from edge.camera.analytics import CameraAnalyzer, analysis_gray
from edge.camera.service import CameraService
from firmware_bridges.camera.driver import CapturedFrame
from firmware_bridges.camera.simulator import (
    FrameFeed,
    HallScene,
    MjpegServer,
    RtspServer,
    hall_scene,
    rtsp_unavailable,
)
from tests.edge.camera.scenes import hall_camera

ANALYSED_FPS = 2.0
SOURCE_FPS = 10


def scenes() -> dict[str, HallScene]:
    busy = hall_scene(still_s=20.0, break_s=10.0)
    busy.duration = 60.0
    # A still hall: the empty lead-in of a scene (sensor noise only), 30 s looping.
    still = hall_scene(still_s=20.0, break_s=10.0, lead_s=1000.0)
    still.duration = 30.0
    return {"still": still, "busy": busy}


def in_process(feed: FrameFeed) -> float:
    """ms CPU per camera-second, analysing every 5th frame of a 10 fps feed."""
    analyzer = CameraAnalyzer(hall_camera())
    frames = feed.jpegs[:: int(SOURCE_FPS / ANALYSED_FPS)]
    for _ in range(3):  # warm up the code paths and the reference
        for index, jpeg in enumerate(frames):
            frame = CapturedFrame(index, index / ANALYSED_FPS, jpeg=jpeg)
            analyzer.analyse(analysis_gray(frame.gray(2), 320), index / ANALYSED_FPS)
    offset = len(frames) / ANALYSED_FPS * 3
    started = time.process_time()
    for index, jpeg in enumerate(frames):
        frame = CapturedFrame(index, index / ANALYSED_FPS, jpeg=jpeg)
        mono = offset + index / ANALYSED_FPS
        analyzer.analyse(analysis_gray(frame.gray(2), 320), mono)
        frame.to_jpeg()  # the ring keeps the JPEG as it came
    spent = time.process_time() - started
    return spent * 1000 / (len(frames) / ANALYSED_FPS)


async def in_workers(url: str, cameras: int, seconds: float, workdir: Path) -> tuple[float, int]:
    """ms CPU per camera-second of the worker processes watching ``url`` ``cameras`` times,
    and the largest worker's RSS in bytes."""
    configs = [hall_camera(url, id=f"cam{n}", fps=ANALYSED_FPS) for n in range(cameras)]
    service = CameraService(configs, workdir / f"evidence-{time.monotonic_ns()}")
    await service.start()
    try:
        deadline = time.monotonic() + 30
        while any(h.state != "online" for h in service.health().values()):
            if time.monotonic() > deadline:
                raise RuntimeError(f"cameras not online: {service.health()}")
            await asyncio.sleep(0.2)
        await asyncio.sleep(3.0)  # past the RTSP probe burst and the references
        processes = [psutil.Process(pid) for pid in service.worker_pids().values()]

        def cpu() -> float:
            return sum(p.cpu_times().user + p.cpu_times().system for p in processes)

        before, started = cpu(), time.monotonic()
        await asyncio.sleep(seconds)
        spent, wall = cpu() - before, time.monotonic() - started
        rss = max(service.worker_rss().values(), default=0)
    finally:
        await service.stop()
    return spent * 1000 / (wall * cameras), rss


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.bench.bench_camera")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--cameras", type=int, default=2)
    parser.add_argument("--no-rtsp", action="store_true")
    args = parser.parse_args(argv)
    print(
        f"camera analytics, {ANALYSED_FPS:g} analysed frames/s, 640×360 source at {SOURCE_FPS} fps"
    )
    print(f"{'scene':<6} {'path':<44} {'CPU ms per camera-second':>26} {'worker RSS':>11}")
    rtsp_reason = None if not args.no_rtsp else "--no-rtsp"
    rtsp_reason = rtsp_reason or rtsp_unavailable()
    with tempfile.TemporaryDirectory(prefix="bench-camera-") as tmp:
        workdir = Path(tmp)
        for name, scene in scenes().items():
            feed = FrameFeed.from_scene(scene, SOURCE_FPS)
            feed.loop = True
            print(f"{name:<6} {'analysis only (this process)':<44} {in_process(feed):>26.2f}")
            with MjpegServer(feed) as server:
                figure, rss = asyncio.run(
                    in_workers(server.url, args.cameras, args.seconds, workdir)
                )
            path = f"{args.cameras} workers, MJPEG over HTTP"
            print(f"{name:<6} {path:<44} {figure:>26.2f} {rss / 2**20:>8.0f} MiB")
            if rtsp_reason is None:
                location = feed.write_sequence(workdir / f"frames-{name}")
                rtsp = RtspServer(location, fps=SOURCE_FPS).start()
                try:
                    figure, rss = asyncio.run(
                        in_workers(rtsp.url, args.cameras, args.seconds, workdir)
                    )
                finally:
                    rtsp.stop()
                path = f"{args.cameras} workers, RTSP H.264 (grab all, convert used)"
                print(f"{name:<6} {path:<44} {figure:>26.2f} {rss / 2**20:>8.0f} MiB")
    if rtsp_reason is not None:
        print(f"RTSP skipped: {rtsp_reason}")
    print("budget: ≤ 20 ms per camera-second")


if __name__ == "__main__":
    main()
