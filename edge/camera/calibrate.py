"""Calibration from the command line: nobody at the window, take this picture as empty.

The technician's laptop or the gateway itself opens its own connection to the camera (cameras
serve several clients), takes a live frame, computes the empty references of the chosen
windows exactly as the worker would, writes them beside the worker's (a running worker loads
them within seconds) and keeps the frame as a JPEG to confirm by eye that the seat and the
counter really were empty.
"""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass
from pathlib import Path

from edge.camera.analytics import CameraAnalyzer, Image, analysis_gray, same_picture
from edge.camera.config import CameraConfig
from edge.camera.references import ReferenceFiles
from firmware_bridges.camera.driver import CapturedFrame, SourceError, encode_jpeg, make_source
from hallkit.clock import utc_now

LIVE_FRAMES = 3  # frames read before the one taken: a live picture, not the server's cache


class CalibrationFailed(Exception):
    pass


@dataclass(frozen=True, slots=True)
class Calibrated:
    camera: str
    regions: list[str]
    snapshot: Path


def calibrate_camera(
    config: CameraConfig, state_dir: Path, windows: list[int] | None, timeout_s: float = 10.0
) -> Calibrated:
    source = make_source(config.url, config.open_timeout_s, config.read_timeout_s, config.backend)
    grays: list[tuple[CapturedFrame, Image]] = []
    try:
        source.open()
        deadline = time.monotonic() + timeout_s
        while len(grays) < LIVE_FRAMES + 1:
            if time.monotonic() > deadline:
                raise CalibrationFailed(f"camera {config.id}: too few frames in {timeout_s:g} s")
            image, jpeg = source.read()
            frame = CapturedFrame(len(grays), time.monotonic(), image, jpeg)
            grays.append((frame, analysis_gray(frame.bgr(), config.analysis_width)))
    except (SourceError, OSError, ValueError) as error:
        raise CalibrationFailed(f"camera {config.id}: {error}") from None
    finally:
        source.close()
    if all(same_picture(b, a) for (_, a), (_, b) in itertools.pairwise(grays)):
        raise CalibrationFailed(
            f"camera {config.id}: the stream is frozen (the same picture "
            "again and again); calibrate on a live picture"
        )
    frame, gray = grays[-1]
    analyzer = CameraAnalyzer(config)
    files = ReferenceFiles(state_dir / config.id)
    files.load(analyzer)  # the other windows keep theirs
    regions = analyzer.calibrate(gray, time.monotonic(), windows=windows)
    if not regions:
        raise CalibrationFailed(f"camera {config.id} watches none of windows {windows}")
    files.save(analyzer)
    stamp = utc_now().strftime("%Y%m%dT%H%M%SZ")
    which = "-".join(f"w{w}" for w in windows) if windows else "all"
    snapshot = files.directory / f"calibration-{which}-{stamp}.jpg"
    snapshot.write_bytes(encode_jpeg(frame.bgr(), 85))
    return Calibrated(config.id, regions, snapshot)
