"""How fast a backlog drains: central's acknowledged seq over the last half minute, as events a
second, for the hall page ("补传中"). Plain numbers in, no clock of its own."""

from __future__ import annotations

from collections import deque

SPAN_S = 30.0


class DrainRate:
    def __init__(self, span_s: float = SPAN_S) -> None:
        self.span_s = span_s
        self._samples: deque[tuple[float, int]] = deque()  # (monotonic time, acked seq)

    def record(self, now: float, acked: int) -> None:
        """Central acknowledged through ``acked`` at ``now``."""
        if self._samples and acked < self._samples[-1][1]:
            self._samples.clear()  # renumbered: the old seqs say nothing of the new ones
        self._samples.append((now, acked))
        self._forget(now)

    def per_second(self, now: float) -> float:
        """Events acknowledged a second, over the span up to ``now`` (0 without progress)."""
        self._forget(now)
        if len(self._samples) < 2:
            return 0.0
        (first_at, first), (_, last) = self._samples[0], self._samples[-1]
        return (last - first) / max(now - first_at, 1.0)

    def _forget(self, now: float) -> None:
        while len(self._samples) > 1 and self._samples[1][0] < now - self.span_s:
            self._samples.popleft()  # keep one sample from before the span: its start
        if self._samples and self._samples[0][0] < now - 2 * self.span_s:
            self._samples.clear()
