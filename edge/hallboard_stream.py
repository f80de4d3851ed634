"""One reader of the hall board's changes (a page's event stream), with its own bounded queue."""

from __future__ import annotations

import asyncio
from typing import Any

Message = dict[str, Any]


class Subscription:
    """One reader of the board's changes: the snapshot first, then updates, in order.

    Iterating ends when the board stops or after a ``reload`` message (the reader fell more than
    ``maxsize`` updates behind and must start over from a fresh snapshot)."""

    def __init__(self, readers: set[Subscription], first: Message, maxsize: int) -> None:
        self._readers = readers  # the board's; a reader leaves it when its stream ends
        self._queue: asyncio.Queue[Message | None] = asyncio.Queue(maxsize)
        self._queue.put_nowait(first)
        self._ended = False
        self.dropped = False

    def offer(self, message: Message | None) -> bool:
        """Queue a message (None: the board stops); False when the reader is too far behind,
        which replaces everything queued with one ``reload`` and unsubscribes it."""
        try:
            self._queue.put_nowait(message)
            return True
        except asyncio.QueueFull:
            pass
        while not self._queue.empty():
            self._queue.get_nowait()
        self.dropped = True
        self._queue.put_nowait({"type": "reload", "reason": "too_slow"})
        self.close()
        return False

    async def get(self) -> Message | None:
        """The next message; None once the stream has ended."""
        if self._ended:
            return None
        message = await self._queue.get()
        if message is None or message["type"] == "reload":
            self._ended = True
            self.close()
        return message

    @property
    def pending(self) -> int:
        """Messages queued, not yet read."""
        return self._queue.qsize()

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> Message:
        message = await self.get()
        if message is None:
            raise StopAsyncIteration
        return message

    def close(self) -> None:
        self._readers.discard(self)
