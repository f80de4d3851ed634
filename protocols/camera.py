"""Camera event bodies (issue: cameras at the windows).

    camera.health    a camera's state (online / offline / stalled, or online but unable to judge:
                     frozen, too_dark, flicker, no_reference), with the reason and advice
    camera.presence  a window's staff became present / away (在岗 / 离岗), since when
    camera.waiting   the waiting area's head count and how far to trust it
    camera.evidence  an evidence file entered or left the manifest, and the new chain head
    camera.verdict   was a citizen at the window when an evaluation key was pressed

Central keeps every evidence ``head`` it is sent, so a file or manifest entry changed on the
gateway afterwards no longer verifies; it sets SELF_PRESS_SUSPECTED from ``camera.verdict``.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from protocols.body import Body
from protocols.strict import Count, Int64, MonoNs, Name, Seq, Text, UtcTime, safe

SHA256 = r"^[0-9a-f]{64}$"


class CameraHealth(Body):
    """camera.health"""

    camera: Name
    state: Literal["online", "offline", "stalled", "frozen", "too_dark", "flicker", "no_reference"]
    reason: Text
    advice: Text = Field(default="", description="what to do about it")


class CameraPresence(Body):
    """camera.presence: staff at a window's seat, decided with hysteresis."""

    camera: Name
    window: int = Field(ge=1, le=99_999)
    staff: Literal["present", "away"]
    since: UtcTime = Field(description="when the run that decided it began, UTC")
    since_mono_ns: MonoNs = Field(description="the same instant on the gateway's monotonic clock")
    confidence: float = Field(ge=0, le=1)
    snapshot: Text | None = Field(default=None, description="evidence snapshot at the decision")
    snapshot_sha256: str | None = Field(default=None, pattern=SHA256)


class CameraWaiting(Body):
    """camera.waiting: people in the waiting area (sent when the count changes)."""

    camera: Name
    count: Count
    confidence: float = Field(ge=0, le=1)
    basis: Annotated[str, safe(120)] = Field(default="", description="what the count rests on")


class EvidenceEntry(Body):
    """camera.evidence: one manifest entry. ``head`` is the chain hash after it; central keeps
    it, so a file or entry changed on the gateway later no longer matches."""

    seq: Seq
    action: Literal["add", "delete"]
    path: Text
    sha256: str = Field(pattern=SHA256)
    size: Count
    reason: Annotated[str, safe(120)]
    camera: Name | None = None
    window: int | None = Field(default=None, ge=1, le=99_999)
    head: str = Field(pattern=SHA256)


class CitizenVerdict(Body):
    """Was a citizen at the window when the evaluation key was pressed?"""

    window: int = Field(ge=1, le=99_999)
    verdict: Literal["present", "absent", "unknown"]
    confidence: float = Field(ge=0, le=1)
    reason: Annotated[str, safe(200)]
    camera: Name | None = None
    at_mono_ns: MonoNs = Field(description="the key press on the gateway's monotonic clock")
    frames: Count = Field(description="analysed frames in the seconds around the press")
    occupied_frames: Count
    snapshot: Text | None = Field(default=None, description="evidence path, relative to its dir")
    snapshot_sha256: str | None = Field(default=None, pattern=SHA256)
    snapshot_offset_ms: Int64 | None = Field(
        default=None, description="snapshot frame time minus press time"
    )
    manifest_seq: Count
    manifest_head: str = Field(pattern=SHA256)


class CameraVerdict(CitizenVerdict):
    """camera.verdict: the citizen-present verdict for one evaluation key press."""

    addr: int = Field(ge=0, le=255, description="the evaluator that sent the key")
    dev_seq: int = Field(ge=0, le=255, description="the KEY frame's SEQ")
    key_seq: Seq = Field(description="gateway seq of the evaluator.key event it judges")


KINDS: dict[str, type[Body]] = {
    "camera.health": CameraHealth,
    "camera.presence": CameraPresence,
    "camera.waiting": CameraWaiting,
    "camera.evidence": EvidenceEntry,
    "camera.verdict": CameraVerdict,
}
