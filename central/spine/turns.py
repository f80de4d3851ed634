"""Groups for ingest taken in turns, one gateway after another (each gateway's own messages in
order), bounded in count and bytes; shared by both intake transports."""

from __future__ import annotations

from collections import deque

from central.spine.reading import Incoming

GROUP_BYTES = 2 * 1024 * 1024  # a group's payloads; bounds how long one transaction takes


def sender_of(topic_name: str) -> str:
    """The hall/gateway part of a topic: whose turn a message waits for."""
    parts = topic_name.split("/", 4)
    return "/".join(parts[2:4]) if len(parts) == 5 else ""


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
