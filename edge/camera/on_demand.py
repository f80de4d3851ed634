"""On-demand evidence (调取取证): a supervisor's signed ``capture_evidence`` command asks for a
window's picture now, and optionally the last seconds as a clip.

The files go into the gateway's evidence store like any other snapshot or clip; their manifest
entries (``camera.evidence``) carry a reason starting with ``ON_DEMAND``, which is what makes
the evidence uploader send them to central after the entry is acknowledged
(``edge.evidence_upload``). A camera that is not online, or whose newest buffered frame is
older than ``STALE_S``, gives a clear refusal instead of an old picture.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from edge.camera.evidence import EvidenceKind
from edge.camera.service import CameraService, utc_at
from edge.evidence_upload import ON_DEMAND

STALE_S = 3.0  # a newest frame older than this is no picture of "now"
REQUEST_TIMEOUT_S = 5.0


class CaptureFailed(RuntimeError):
    """Nothing was captured; the message says why (for the command's answer)."""


@dataclass(frozen=True, slots=True)
class Captured:
    camera: str
    snapshot_sha256: str
    clip_sha256: str | None
    clip_frames: int

    def describe(self) -> str:
        """The command's answer; central reads the hashes from it."""
        clip = f" clip={self.clip_sha256} frames={self.clip_frames}" if self.clip_sha256 else ""
        return f"camera={self.camera} snapshot={self.snapshot_sha256}{clip}"


def choose_camera(service: CameraService, window: int, camera: str | None) -> str:
    """The camera to capture from: ``camera`` if it watches the window, else the first that
    does and is online (else the first that does, to fail with its state)."""
    watching = service.cameras_of(window)
    if camera is not None:
        if camera not in watching:
            raise CaptureFailed(f"camera {camera} does not watch window {window}")
        return camera
    if not watching:
        raise CaptureFailed(f"no camera watches window {window}")
    health = service.health()
    return next((c for c in watching if health[c].state == "online"), watching[0])


async def capture(
    service: CameraService, window: int, clip_s: int, camera: str | None, request: str
) -> Captured:
    chosen = choose_camera(service, window, camera)
    health = service.health()[chosen]
    if health.state != "online":
        raise CaptureFailed(f"camera {chosen} is {health.state}: {health.reason}")
    now = time.monotonic()
    header, blobs = await _frames(service, chosen, {"nearest": now})
    frame_mono = float(header["monos"][0])
    if now - frame_mono > STALE_S:
        raise CaptureFailed(f"camera {chosen}: newest frame is {now - frame_mono:.0f} s old")
    reason = f"{ON_DEMAND} {request}"
    snap = await _store(
        service, blobs[0], "snap", chosen, window, utc_at(frame_mono), reason, {"request": request}
    )
    clip_sha, frames = None, 0
    if clip_s > 0:
        header, blobs = await _frames(service, chosen, {"from": now - clip_s, "to": now})
        monos = [float(m) for m in header["monos"]]
        clip = await _store(
            service,
            b"".join(blobs),
            "clip",
            chosen,
            window,
            utc_at(monos[0]),
            reason,
            {"request": request, "frames": len(blobs), "format": "mjpeg"},
        )
        clip_sha, frames = str(clip["sha256"]), len(blobs)
    return Captured(chosen, str(snap["sha256"]), clip_sha, frames)


async def _store(
    service: CameraService,
    data: bytes,
    kind: EvidenceKind,
    camera: str,
    window: int,
    utc: datetime,
    reason: str,
    meta: dict[str, Any],
) -> dict[str, Any]:
    return await asyncio.to_thread(
        service.store.add,
        data,
        kind=kind,
        camera=camera,
        window=window,
        utc=utc,
        reason=reason,
        meta=meta,
    )


async def _frames(
    service: CameraService, camera: str, which: dict[str, float]
) -> tuple[dict[str, Any], list[bytes]]:
    try:
        header, blobs = await service.frames(camera, which, REQUEST_TIMEOUT_S)
    except TimeoutError:
        raise CaptureFailed(f"camera {camera}: its worker did not answer") from None
    if not header.get("ok") or not blobs:
        raise CaptureFailed(f"camera {camera}: {header.get('error') or 'no frame'}")
    return header, blobs


__all__ = ["CaptureFailed", "Captured", "capture", "choose_camera"]
