"""What happens after a commit: the journal hands every committed event to its subscribers.

This is the gateway's one wiring place for reactions to journaled events (the hall board's
picture, the cameras' verdict on a key press, evidence to upload, the uplink's wake-up). A
subscriber is called in journal order, after the event's transaction committed, from the
journal's writer task: it must be quick and must not block (start a task for slow work). One
that raises is logged and the others still get the event.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Committed:
    """One committed journal event. ``body`` is the journaled body: read it, never change it."""

    seq: int
    kind: str
    utc: str
    mono_ns: int
    body: dict[str, Any]


Subscriber = Callable[[Committed], None]


class CommitFeed:
    def __init__(self) -> None:
        self._subscribers: list[Subscriber] = []
        self.errors = 0

    def subscribe(self, subscriber: Subscriber) -> Callable[[], None]:
        """Call ``subscriber`` with every event committed from now on; returns the call that
        unsubscribes it."""
        self._subscribers.append(subscriber)

        def unsubscribe() -> None:
            if subscriber in self._subscribers:
                self._subscribers.remove(subscriber)

        return unsubscribe

    def __len__(self) -> int:
        return len(self._subscribers)

    def publish(self, event: Committed) -> None:
        for subscriber in list(self._subscribers):
            try:
                subscriber(event)
            except Exception:  # one subscriber's failure is not the journal's
                self.errors += 1
                log.exception("journal subscriber %r failed on seq %d", subscriber, event.seq)
