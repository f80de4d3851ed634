"""Staff presence (在岗 / 离岗) decided over time, robust to brief occlusions.

A seat's per-frame judgement is noisy in ways that matter: a colleague walking behind the
seat, a citizen leaning over the counter, a moment of bad light. So a *run* (the seat empty, or
the seat occupied) is not broken by a contrary streak shorter than ``occlusion_s``; only a
contrary streak that lasts starts a new run, dated from its first frame. A run decides once it
has lasted ``away_after_s`` (empty) or ``present_after_s`` (occupied) and most of its frames
agree with it (``agree_fraction``), so alternating judgements never decide anything.

``since`` is when the deciding run began (the first empty frame), not when the decision was
taken, so the record says when the staff member actually left. The decision comes at most
``occlusion_s`` after ``away_after_s`` even when a passer-by crosses at the last moment.
Frames with no judgement (``None``) neither extend nor break a run unless they last longer than
``occlusion_s``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

PresenceState = Literal["present", "away", "unknown"]

DEFAULT_OCCLUSION_S = 8.0
AGREE_FRACTION = 0.7


@dataclass(frozen=True, slots=True)
class PresenceChange:
    window: int
    state: Literal["present", "away"]
    since: float  # monotonic
    decided: float  # monotonic
    confidence: float


@dataclass(slots=True)
class _Run:
    value: bool
    start: float
    frames: int = 0
    agree: int = 0


class PresenceTracker:
    def __init__(
        self,
        window: int,
        away_after_s: float,
        present_after_s: float = 2.0,
        occlusion_s: float = DEFAULT_OCCLUSION_S,
        agree_fraction: float = AGREE_FRACTION,
    ) -> None:
        self.window = window
        self.away_after_s = away_after_s
        self.present_after_s = present_after_s
        self.occlusion_s = occlusion_s
        self.agree_fraction = agree_fraction
        self.state: PresenceState = "unknown"
        self.since: float | None = None
        self._run: _Run | None = None
        self._contrary: _Run | None = None  # the streak against the run, while it is short
        self._blind_since: float | None = None

    def update(self, mono: float, occupied: bool | None) -> PresenceChange | None:
        """Feed one observation; returns a change when the state flips."""
        if occupied is None:
            if self._blind_since is None:
                self._blind_since = mono
            elif mono - self._blind_since >= self.occlusion_s:
                # Long without judgement (camera trouble): what comes next starts afresh.
                self._run = self._contrary = None
            return None
        self._blind_since = None
        run = self._run
        if run is None:
            run = self._run = _Run(occupied, mono)
        if occupied == run.value:
            self._contrary = None
        else:
            contrary = self._contrary
            if contrary is None:
                contrary = self._contrary = _Run(occupied, mono)
            contrary.frames += 1
            contrary.agree += 1
            if mono - contrary.start >= self.occlusion_s:
                # Not an occlusion: a change. The new run began with the streak.
                run = self._run = contrary
                self._contrary = None
                return self._decide(mono, run)
        run.frames += 1
        if occupied == run.value:
            run.agree += 1
        return self._decide(mono, run)

    def _decide(self, mono: float, run: _Run) -> PresenceChange | None:
        target: Literal["present", "away"] = "present" if run.value else "away"
        if target == self.state or self._contrary is not None:
            return None  # decided already, or a contrary streak may yet become a change
        needed = self.present_after_s if run.value else self.away_after_s
        if mono - run.start < needed or run.agree < self.agree_fraction * run.frames:
            return None
        self.state = target
        self.since = run.start
        # Confidence grows with the share and the number of frames that backed the decision.
        share = run.agree / max(1, run.frames)
        confidence = round(min(1.0, share * (0.5 + run.frames / 20)), 2)
        return PresenceChange(self.window, target, run.start, mono, confidence)

    def reset(self) -> None:
        """Camera lost: the next decision starts from scratch."""
        self.state = "unknown"
        self.since = None
        self._run = self._contrary = None
        self._blind_since = None
