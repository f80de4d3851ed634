"""Groups for ingest taken in turns, one gateway after another (each gateway's own messages in
order), bounded in count and bytes; shared by both intake transports.

What the consumers received waits in a ``Waiting``: the live lanes' batches apart from the
rest. When the aggregator commits them on a path of their own (``live_apart``) each side waits
for its own messages; otherwise every drain group takes the live ones first (``live_first``)."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable

from central.spine.reading import Incoming
from protocols import topics

GROUP_BYTES = 2 * 1024 * 1024  # a group's payloads; bounds how long one transaction takes
LIVE_GROUP_BYTES = 256 * 1024  # the live path's: a few presses per gateway, a short transaction


def sender_of(topic_name: str) -> str:
    """The hall/gateway part of a topic: whose turn a message waits for."""
    parts = topic_name.split("/", 4)
    return "/".join(parts[2:4]) if len(parts) == 5 else ""


def is_live(topic_name: str) -> bool:
    """A live lane's batch (``hw/v1/H/G/live``)."""
    return topic_name.endswith("/" + topics.Channel.LIVE)


def take_turns(
    waiting: dict[str, deque[Incoming]], max_group: int, max_bytes: int = GROUP_BYTES
) -> list[Incoming]:
    """Up to ``max_group`` messages (and about ``max_bytes``), one per sender per round; what
    is taken leaves ``waiting``."""
    group: list[Incoming] = []
    size = 0
    while waiting and len(group) < max_group and size < max_bytes:
        for who in list(waiting):
            backlog = waiting[who]
            msg = backlog.popleft()
            if not backlog:
                del waiting[who]
            group.append(msg)
            size += len(msg.payload)
            if len(group) >= max_group or size >= max_bytes:
                break
    return group


def live_first(
    live: dict[str, deque[Incoming]],
    waiting: dict[str, deque[Incoming]],
    max_group: int,
    max_bytes: int = GROUP_BYTES,
) -> list[Incoming]:
    """A group of the live lanes' batches first, filled up in turns from the rest: a live
    batch waits for the group in progress, never behind a backlog delivered before it."""
    group = take_turns(live, max_group, max_bytes)
    size = sum(len(msg.payload) for msg in group)
    if len(group) < max_group and size < max_bytes:
        group += take_turns(waiting, max_group - len(group), max_bytes - size)
    return group


class Waiting:
    """Messages received and not yet taken into a group, by sender, each sender's in order:
    the live lanes' batches (``live``) apart from the rest (``drain``)."""

    def __init__(self) -> None:
        self.drain: dict[str, deque[Incoming]] = {}
        self.live: dict[str, deque[Incoming]] = {}
        # the aggregator commits the live batches on a path of their own (``live_group``)
        self.live_apart = False
        self._drain_came = asyncio.Event()
        self._live_came = asyncio.Event()

    def add(self, msg: Incoming, *, live: bool) -> None:
        (self.live if live else self.drain).setdefault(sender_of(msg.topic), deque()).append(msg)
        (self._live_came if live and self.live_apart else self._drain_came).set()

    def senders(self) -> list[str]:
        return list({**self.live, **self.drain})

    def keep(self, wanted: Callable[[Incoming], bool]) -> None:
        """Forget what is not ``wanted`` (delivered on a connection that has gone)."""
        for waiting in (self.live, self.drain):
            for who in list(waiting):
                kept = deque(msg for msg in waiting[who] if wanted(msg))
                if kept:
                    waiting[who] = kept
                else:
                    del waiting[who]

    async def drain_group(self, max_group: int, max_bytes: int = GROUP_BYTES) -> list[Incoming]:
        """The next group of the drain; the live batches first unless they go apart."""
        while True:
            live = {} if self.live_apart else self.live
            if self.drain or live:
                return live_first(live, self.drain, max_group, max_bytes)
            self._drain_came.clear()
            await self._drain_came.wait()

    async def live_group(self, max_group: int, max_bytes: int = LIVE_GROUP_BYTES) -> list[Incoming]:
        """The next group of live batches (``live_apart``)."""
        while not self.live:
            self._live_came.clear()
            await self._live_came.wait()
        return take_turns(self.live, max_group, max_bytes)
