"""What the camera service yields; the bodies are part of the wire contract (protocols.camera).

``CitizenVerdict`` answers ``verdict_at`` at a key press; the gateway journals it as a
``camera.verdict`` event tied to the key, where central uses it for SELF_PRESS_SUSPECTED.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from protocols.body import Body
from protocols.camera import (
    KINDS,
    SHA256,
    CameraHealth,
    CameraPresence,
    CameraVerdict,
    CameraWaiting,
    CitizenVerdict,
    EvidenceEntry,
)

__all__ = [
    "KINDS",
    "SHA256",
    "CameraEvent",
    "CameraHealth",
    "CameraPresence",
    "CameraVerdict",
    "CameraWaiting",
    "CitizenVerdict",
    "EvidenceEntry",
]


@dataclass(frozen=True, slots=True)
class CameraEvent:
    """What ``CameraService.events()`` yields: a kind from ``KINDS``, its body, and when."""

    kind: str
    body: Body
    utc: datetime
    mono_ns: int
