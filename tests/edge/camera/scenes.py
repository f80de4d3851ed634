"""Shared helpers for the camera tests: the hall scene's camera config, test-dependency checks."""

from __future__ import annotations

import os
from functools import cache
from pathlib import Path

import pytest

from edge.camera.config import CameraConfig, Polygon, WindowRegions
from firmware_bridges.camera.simulator import HALL_LAYOUT, rtsp_unavailable

ROOT = Path(__file__).resolve().parents[3]
CACHE = Path(os.environ.get("HALLWATCH_CAMERA_CACHE", ROOT / "var" / "cache" / "camera"))
INSTALL_HINT = "run deploy/scripts/install-camera-test-deps.sh first"


def hall_camera(url: str = "unused", **overrides: object) -> CameraConfig:
    """A camera config whose regions are the simulator's hall layout."""
    layout = HALL_LAYOUT
    windows = [
        WindowRegions(
            window=w,
            staff_seat=Polygon(points=list(layout.staff_seats[w])),
            citizen_side=Polygon(points=list(layout.citizen_sides[w])),
        )
        for w in sorted(layout.staff_seats)
    ]
    values: dict[str, object] = {
        "id": "hall-cam-1",
        "url": url,
        "windows": windows,
        "waiting_area": Polygon(points=list(layout.waiting_area)),
        "bootstrap_still_s": 2.5,
        "away_after_s": 3.0,
        "occlusion_s": 1.0,  # the scenes are time-compressed: seconds stand for minutes
        "open_timeout_s": 3.0,
        "read_timeout_s": 1.5,
    }
    values.update(overrides)
    return CameraConfig.model_validate(values)


def vtest_path() -> Path:
    path = CACHE / "vtest.avi"
    if not path.is_file():
        pytest.skip(f"Debian's vtest.avi is not in {CACHE}: {INSTALL_HINT}")
    return path


@cache
def _rtsp_reason() -> str | None:
    return rtsp_unavailable()


def need_rtsp() -> None:
    reason = _rtsp_reason()
    if reason is not None:
        pytest.skip(f"{reason}: {INSTALL_HINT}")
