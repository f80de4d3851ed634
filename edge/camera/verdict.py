"""Citizen present / absent / unknown at an evaluation key press, from the frames around it.

An "absent" verdict can make central flag the staff member (SELF_PRESS_SUSPECTED: the key
pressed with nobody at the window), so it is given only on clear evidence: enough analysed
frames around the press, none of them with anyone at the counter, and the camera healthy.
Anything mixed is "present" (someone was there for part of it) or "unknown".
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from edge.camera.analytics import OCCUPIED_SCORE
from edge.camera.config import VerdictConfig

VerdictValue = Literal["present", "absent", "unknown"]


@dataclass(frozen=True, slots=True)
class Observation:
    mono: float
    occupied: bool | None
    score: float | None


@dataclass(frozen=True, slots=True)
class Decision:
    verdict: VerdictValue
    confidence: float
    reason: str
    frames: int
    occupied_frames: int


def decide(
    observations: Sequence[Observation],
    at: float,
    config: VerdictConfig,
    camera_trouble: str | None = None,
) -> Decision:
    """Judge the press at monotonic ``at`` from observations of the window's citizen side.

    ``camera_trouble`` (the camera's health when not online) only explains too few frames:
    observations exist only for frames that really arrived."""
    window = [o for o in observations if at - config.before_s <= o.mono <= at + config.after_s]
    judged = [o for o in window if o.occupied is not None]
    occupied = sum(1 for o in judged if o.occupied)
    frames = len(judged)
    expected = max(1, len(window))
    if frames < config.min_frames:
        why = camera_trouble or (
            "no empty-counter reference yet" if window else "no analysed frames around the press"
        )
        return Decision("unknown", 0.0, f"{frames} usable frames: {why}", frames, occupied)
    fraction = occupied / frames
    coverage = min(1.0, frames / expected)
    if fraction >= config.present_fraction:
        confidence = round(min(1.0, 0.5 + fraction / 2) * coverage, 2)
        return Decision(
            "present",
            confidence,
            f"someone at the counter in {occupied}/{frames} frames",
            frames,
            occupied,
        )
    if occupied == 0:
        # Enough real frames around the press: camera trouble after them changes nothing.
        peak = max((o.score or 0.0) for o in judged)
        margin = max(0.0, 1.0 - peak / OCCUPIED_SCORE)
        fill = min(1.0, frames / (2 * config.min_frames))
        confidence = round(coverage * (0.5 + 0.5 * margin) * fill, 2)
        return Decision(
            "absent", confidence, f"nobody at the counter in all {frames} frames", frames, occupied
        )
    return Decision(
        "unknown",
        round(1.0 - fraction, 2),
        f"someone at the counter in only {occupied}/{frames} frames",
        frames,
        occupied,
    )
