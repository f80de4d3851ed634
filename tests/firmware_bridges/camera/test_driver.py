"""The latest-frame reader against real local streams: MJPEG over HTTP and RTSP (GStreamer)."""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from firmware_bridges.camera.driver import (
    Backoff,
    FrameSource,
    Health,
    HealthChange,
    Image,
    LatestFrameReader,
    make_source,
    redact,
)
from firmware_bridges.camera.simulator import (
    FrameFeed,
    MjpegServer,
    RtspServer,
    hall_scene,
    read_barcode,
)
from tests.edge.camera.scenes import need_rtsp

READ_TIMEOUT = 1.5


@pytest.fixture(scope="module")
def feed() -> FrameFeed:
    scene = hall_scene(still_s=30.0, break_s=30.0)
    built = FrameFeed.from_scene(scene, fps=10)
    built.loop = True
    return built


@pytest.fixture
def mjpeg(feed: FrameFeed) -> Iterator[MjpegServer]:
    with MjpegServer(feed) as server:
        yield server


class Recorder:
    def __init__(self) -> None:
        self.changes: list[HealthChange] = []

    def __call__(self, change: HealthChange) -> None:
        self.changes.append(change)

    def wait_for(self, state: Health, after: float, timeout: float) -> HealthChange:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for change in self.changes:
                if change.state == state and change.mono >= after:
                    return change
            time.sleep(0.05)
        raise AssertionError(f"no {state} after {after} within {timeout} s: {self.changes}")


def start_reader(url: str, backend: str, recorder: Recorder) -> LatestFrameReader:
    reader = LatestFrameReader(
        "cam",
        lambda: make_source(url, 3.0, READ_TIMEOUT, backend),
        backoff=Backoff(initial_s=0.2, max_s=1.0),
        on_health=recorder,
    )
    reader.start()
    return reader


@pytest.mark.parametrize("backend", ["mjpeg", "opencv"])
def test_mjpeg_reader_hands_out_the_latest_frame_and_survives_stall_and_drop(
    mjpeg: MjpegServer, backend: str
) -> None:
    recorder = Recorder()
    reader = start_reader(mjpeg.url, backend, recorder)
    try:
        recorder.wait_for(Health.ONLINE, 0.0, 10.0)
        # Read slowly, as the analysis does: each frame must be the one just sent, not one
        # from a buffer (the server logs what it sent when).
        for _ in range(4):
            time.sleep(1.0)
            frame = reader.latest()
            assert frame is not None
            shown = read_barcode(frame.bgr())
            sent_then = mjpeg.index_at(frame.mono)
            sent_now = mjpeg.index_at(time.monotonic())
            assert sent_then is not None and sent_now is not None
            # the server logs a frame just before its bytes leave, the reader stamps it just
            # after they arrive: on a loaded machine the two may straddle one 0.1 s tick
            assert sent_then <= shown <= sent_then + 1, (shown, sent_then)
            assert sent_now - shown <= 3, "frame older than 0.3 s"

        stalled_at = time.monotonic()
        mjpeg.stall()
        change = recorder.wait_for(Health.STALLED, stalled_at, READ_TIMEOUT + 3.0)
        assert change.mono - stalled_at <= READ_TIMEOUT + 1.0
        mjpeg.resume()
        recorder.wait_for(Health.ONLINE, change.mono, 10.0)

        dropped_at = time.monotonic()
        mjpeg.drop_clients()
        offline = recorder.wait_for(Health.OFFLINE, dropped_at, 5.0)
        recorder.wait_for(Health.ONLINE, offline.mono, 10.0)
        assert reader.reconnects >= 2
    finally:
        assert reader.stop(timeout=5.0)


def test_unreachable_camera_is_offline_with_a_reason_and_retried() -> None:
    recorder = Recorder()
    reader = start_reader("http://127.0.0.1:9/stream.mjpg", "mjpeg", recorder)
    try:
        change = recorder.wait_for(Health.OFFLINE, 0.0, 5.0)
        assert "cannot open" in change.reason
        time.sleep(1.5)
        assert reader.reconnects >= 2
    finally:
        reader.stop()


def test_backoff_grows_caps_and_jitters() -> None:
    backoff = Backoff(initial_s=0.5, factor=2.0, max_s=30.0, jitter=0.2)
    assert [backoff.delay(a, lambda: 0.5) for a in range(8)] == [
        0.5,
        1.0,
        2.0,
        4.0,
        8.0,
        16.0,
        30.0,
        30.0,
    ]
    assert backoff.delay(0, lambda: 0.0) == pytest.approx(0.4)
    assert backoff.delay(0, lambda: 1.0) == pytest.approx(0.6)


def test_passwords_stay_out_of_reasons() -> None:
    assert redact("rtsp://admin:secret@10.0.0.5/ch1") == "rtsp://admin:***@10.0.0.5/ch1"


def test_rtsp_stall_and_death_are_detected_and_recovered(feed: FrameFeed, tmp_path: Path) -> None:
    need_rtsp()
    location = feed.write_sequence(tmp_path / "frames")
    server = RtspServer(location, fps=10).start()
    recorder = Recorder()
    reader = start_reader(server.url, "opencv", recorder)
    try:
        recorder.wait_for(Health.ONLINE, 0.0, 15.0)
        first = reader.wait_newer(0, 5.0)
        assert first is not None and first.bgr().shape == (360, 640, 3)

        paused_at = time.monotonic()
        server.pause()
        stalled = recorder.wait_for(Health.STALLED, paused_at, READ_TIMEOUT + 5.0)
        assert stalled.mono - paused_at <= READ_TIMEOUT + 1.5
        server.resume()
        back = recorder.wait_for(Health.ONLINE, stalled.mono, 15.0)

        killed_at = time.monotonic()
        server.kill()
        gone = recorder.wait_for(Health.OFFLINE, max(killed_at, back.mono), READ_TIMEOUT + 5.0)
        assert gone.mono - killed_at <= READ_TIMEOUT + 1.5
        server.start()
        recorder.wait_for(Health.ONLINE, gone.mono, 15.0)
        latest = reader.latest()
        assert latest is not None and latest.mono > gone.mono
    finally:
        reader.stop()
        server.stop()


def test_rtsp_frames_are_all_decoded_but_only_those_taken_are_converted(
    feed: FrameFeed, tmp_path: Path
) -> None:
    """At 2 analysed frames/s of a 10 fps stream, about 2 of 10 frames become pictures; each
    one taken is a new frame, its index (barcode) close to the stream's newest."""
    need_rtsp()
    server = RtspServer(feed.write_sequence(tmp_path / "frames"), fps=10).start()
    reads: list[bool] = []

    def counted() -> FrameSource:
        source = make_source(server.url, 3.0, READ_TIMEOUT, "opencv")
        read = source.read

        def read_and_count(convert: bool = True) -> tuple[Image | None, bytes | None]:
            reads.append(convert)
            return read(convert)

        source.read = read_and_count  # type: ignore[method-assign]
        return source

    reader = LatestFrameReader("cam", counted, convert_every_s=0.5)
    reader.start()
    try:
        assert reader.wait_newer(0, 15.0) is not None
        time.sleep(1.0)  # past the stream's start-up burst
        reads.clear()
        taken = []
        for _ in range(10):  # the worker's pace: one frame every 0.5 s
            time.sleep(0.5)
            frame = reader.latest()
            assert frame is not None
            taken.append((frame.seq, read_barcode(frame.bgr())))
    finally:
        reader.stop()
        server.stop()
    grabbed, converted = len(reads), sum(reads)
    assert grabbed >= 35, grabbed  # ~50 frames in 5 s: every one read (H.264 must decode all)
    assert converted <= 0.35 * grabbed, (converted, grabbed)  # ≈ 2 per second, not 10
    seqs = [seq for seq, _ in taken]
    assert seqs == sorted(set(seqs)), seqs  # a new picture every time
    indices = [index for _, index in taken]
    assert all(b > a for a, b in itertools.pairwise(indices)), indices
