"""Staff presence (在岗 / 离岗) decided over time, robust to brief occlusions.

A seat's per-frame judgement is noisy in ways that matter: a colleague walking behind the
seat, a citizen leaning over the counter, a moment of bad light. So the tracker follows two
*segments*, one of "occupied" frames and one of "empty" frames; a segment goes on through
contrary frames as long as none of its own is missing for ``occlusion_s``. The state becomes
"away" once the empty segment has lasted ``away_after_s`` with most of its frames
(``agree_fraction``) empty and the newest frame empty too; "present" likewise after
``present_after_s`` (and at least ``occlusion_s`` after an absence, so that a passer-by is not
taken for the clerk's return). Alternating judgements never decide anything.

``since`` is when the deciding segment began (the first empty frame), not when the decision
was taken, so the record says when the staff member actually left. A passer-by at the moment
the decision falls due delays it by the seconds they take to pass. Frames with no judgement
(``None``) are skipped; if they last ``occlusion_s`` or more, both segments start afresh.
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
class _Segment:
    """Frames of one value (occupied or empty) with gaps shorter than an occlusion."""

    start: float = 0.0
    last: float | None = None  # the newest frame of this value
    frames: int = 0  # all judged frames since ``start``
    agree: int = 0  # of them, of this value


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
        self._segments = {True: _Segment(), False: _Segment()}
        self._blind_since: float | None = None

    def update(self, mono: float, occupied: bool | None) -> PresenceChange | None:
        """Feed one observation; returns a change when the state flips."""
        if occupied is None:
            if self._blind_since is None:
                self._blind_since = mono
            return None
        if self._blind_since is not None and mono - self._blind_since >= self.occlusion_s:
            # Long without judgement (camera trouble): what comes next starts afresh.
            self._segments = {True: _Segment(), False: _Segment()}
        self._blind_since = None
        for value, segment in self._segments.items():
            if value != occupied:
                segment.frames += 1
                continue
            if segment.last is None or mono - segment.last >= self.occlusion_s:
                segment.start, segment.frames, segment.agree = mono, 0, 0
            segment.last = mono
            segment.frames += 1
            segment.agree += 1
        return self._decide(mono, occupied)

    def _decide(self, mono: float, value: bool) -> PresenceChange | None:
        target: Literal["present", "away"] = "present" if value else "away"
        if target == self.state:
            return None
        segment = self._segments[value]
        if value:
            # after an absence, a passer-by must not count as the return
            needed = (
                self.present_after_s
                if self.state == "unknown"
                else max(self.present_after_s, self.occlusion_s)
            )
        else:
            needed = self.away_after_s
        if mono - segment.start < needed or segment.agree < self.agree_fraction * segment.frames:
            return None
        self.state = target
        self.since = segment.start
        # Confidence grows with the share and the number of frames that backed the decision.
        share = segment.agree / segment.frames
        confidence = round(min(1.0, share * (0.5 + segment.frames / 20)), 2)
        return PresenceChange(self.window, target, segment.start, mono, confidence)

    def reset(self) -> None:
        """Camera lost or recalibrated: the next decision starts from scratch."""
        self.state = "unknown"
        self.since = None
        self._segments = {True: _Segment(), False: _Segment()}
        self._blind_since = None
