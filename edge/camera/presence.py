"""Staff presence (在岗) with hysteresis: one empty frame is not an absence.

A seat must look occupied for ``present_after_s`` to make the staff member present, and empty
for ``away_after_s`` to make them away. ``since`` is when the run that decided it began (the
first empty frame), not when the decision was taken, so the record says when they actually
left.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

PresenceState = Literal["present", "away", "unknown"]


@dataclass(frozen=True, slots=True)
class PresenceChange:
    window: int
    state: Literal["present", "away"]
    since: float  # monotonic
    decided: float  # monotonic
    confidence: float


class PresenceTracker:
    def __init__(self, window: int, away_after_s: float, present_after_s: float = 2.0) -> None:
        self.window = window
        self.away_after_s = away_after_s
        self.present_after_s = present_after_s
        self.state: PresenceState = "unknown"
        self.since: float | None = None
        self._run_value: bool | None = None
        self._run_start = 0.0
        self._run_frames = 0
        self._run_agree = 0

    def update(self, mono: float, occupied: bool | None) -> PresenceChange | None:
        """Feed one observation; returns a change when the state flips."""
        if occupied is None:
            # No judgement possible (no reference yet, camera trouble): the run is broken.
            self._run_value = None
            return None
        if occupied != self._run_value:
            self._run_value = occupied
            self._run_start = mono
            self._run_frames = 0
            self._run_agree = 0
        self._run_frames += 1
        self._run_agree += 1
        target: Literal["present", "away"] = "present" if occupied else "away"
        if target == self.state:
            return None
        needed = self.present_after_s if occupied else self.away_after_s
        if mono - self._run_start < needed:
            return None
        self.state = target
        self.since = self._run_start
        # Confidence grows with how many frames backed the decision (10 frames: full).
        confidence = round(min(1.0, 0.5 + self._run_frames / 20), 2)
        return PresenceChange(self.window, target, self._run_start, mono, confidence)

    def reset(self) -> None:
        """Camera lost: the next decision starts from scratch."""
        self.state = "unknown"
        self.since = None
        self._run_value = None
