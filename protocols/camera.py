"""Camera event bodies (issue: cameras at the windows).

    camera.health    a camera went online / offline / stalled, with the reason
    camera.presence  a window's staff became present / away (在岗 / 离岗), since when
    camera.waiting   the waiting area's head count and how far to trust it
    camera.evidence  an evidence file entered or left the manifest, and the new chain head
    camera.verdict   was a citizen at the window when an evaluation key was pressed

Central keeps every evidence ``head`` it is sent, so a file or manifest entry changed on the
gateway afterwards no longer verifies; it sets SELF_PRESS_SUSPECTED from ``camera.verdict``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import Field

from protocols.body import Body

SHA256 = r"^[0-9a-f]{64}$"


class CameraHealth(Body):
    """camera.health"""

    camera: str = Field(max_length=64)
    state: Literal["online", "offline", "stalled"]
    reason: str = Field(max_length=300)


class CameraPresence(Body):
    """camera.presence: staff at a window's seat, decided with hysteresis."""

    camera: str = Field(max_length=64)
    window: int = Field(ge=1)
    staff: Literal["present", "away"]
    since: datetime = Field(description="when the run that decided it began, UTC")
    since_mono_ns: int = Field(
        ge=0, description="the same instant on the gateway's monotonic clock"
    )
    confidence: float = Field(ge=0, le=1)
    snapshot: str | None = Field(default=None, description="evidence snapshot at the decision")
    snapshot_sha256: str | None = Field(default=None, pattern=SHA256)


class CameraWaiting(Body):
    """camera.waiting: people in the waiting area (sent when the count changes)."""

    camera: str = Field(max_length=64)
    count: int = Field(ge=0)
    confidence: float = Field(ge=0, le=1)
    basis: str = Field(default="", max_length=120, description="what the count rests on")


class EvidenceEntry(Body):
    """camera.evidence: one manifest entry. ``head`` is the chain hash after it; central keeps
    it, so a file or entry changed on the gateway later no longer matches."""

    seq: int = Field(ge=1)
    action: Literal["add", "delete"]
    path: str = Field(max_length=300)
    sha256: str = Field(pattern=SHA256)
    size: int = Field(ge=0)
    reason: str = Field(max_length=120)
    camera: str | None = Field(default=None, max_length=64)
    window: int | None = Field(default=None, ge=1)
    head: str = Field(pattern=SHA256)


class CitizenVerdict(Body):
    """Was a citizen at the window when the evaluation key was pressed?"""

    window: int = Field(ge=1)
    verdict: Literal["present", "absent", "unknown"]
    confidence: float = Field(ge=0, le=1)
    reason: str = Field(max_length=200)
    camera: str | None = Field(default=None, max_length=64)
    at_mono_ns: int = Field(ge=0, description="the key press on the gateway's monotonic clock")
    frames: int = Field(ge=0, description="analysed frames in the seconds around the press")
    occupied_frames: int = Field(ge=0)
    snapshot: str | None = Field(default=None, description="evidence path, relative to its dir")
    snapshot_sha256: str | None = Field(default=None, pattern=SHA256)
    snapshot_offset_ms: int | None = Field(
        default=None, description="snapshot frame time minus press time"
    )
    manifest_seq: int = Field(ge=0)
    manifest_head: str = Field(pattern=SHA256)


class CameraVerdict(CitizenVerdict):
    """camera.verdict: the citizen-present verdict for one evaluation key press."""

    addr: int = Field(ge=0, le=255, description="the evaluator that sent the key")
    dev_seq: int = Field(ge=0, le=255, description="the KEY frame's SEQ")
    key_seq: int = Field(ge=1, description="gateway seq of the evaluator.key event it judges")


KINDS: dict[str, type[Body]] = {
    "camera.health": CameraHealth,
    "camera.presence": CameraPresence,
    "camera.waiting": CameraWaiting,
    "camera.evidence": EvidenceEntry,
    "camera.verdict": CameraVerdict,
}
