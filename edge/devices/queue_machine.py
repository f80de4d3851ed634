"""Queue-machine supervision: journal the $QM feed, acknowledge after commit, pass each message
on (in journal order) to the evaluators' invitation rules, which invite on FN and close on ST.

The machine resends every unacknowledged message on a 2 s tick and its whole buffer after every
reconnect, so the same message arrives again and again; it is journaled once (keyed by mseq and
its exact line) and acknowledged every time. The de-duplication memory is rebuilt from the
journal at start, so a gateway restart does not journal the machine's replay a second time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

from pydantic import ValidationError

from edge.config import QueueConfig
from edge.journal import Journal, JournalError
from firmware_bridges.qm.codec import (
    Heartbeat,
    QMMessage,
    Unusable,
)
from firmware_bridges.qm.driver import QueueFeed
from hallkit.supervise import Supervisor
from protocols.body import Body
from protocols.devices import MAX_QM_LINE_CHARS, QueueEvent, QueueFault
from protocols.strict import clean_text, device_text

log = logging.getLogger(__name__)

SEEN_KEPT = 5000  # > the machine's 1,000-message buffer, with room for its replays

QueueEventHook = Callable[[dict[str, Any]], None]  # a queue.event body, once queued to the journal


class QueueSupervisor:
    def __init__(
        self, config: QueueConfig, journal: Journal, on_event: QueueEventHook | None = None
    ) -> None:
        self.config = config
        self.journal = journal
        self.on_event = on_event
        self.feed: QueueFeed | None = None
        self.duplicates = 0
        self.faults = 0
        self._supervisor: Supervisor | None = None
        self._seen: set[tuple[int, str]] = set()
        self._order: deque[tuple[int, str]] = deque()
        self._tasks: set[asyncio.Task[Any]] = set()

    name = "queue"  # the unit a remote command restarts
    task_name = "device.queue"

    def device_ids(self) -> list[str]:
        return [self.name]

    async def start(self, supervisor: Supervisor) -> None:
        self._supervisor = supervisor
        supervisor.spawn(self.task_name, self.run, retry_forever=True)

    def health(self) -> dict[str, Any]:
        """Its part of the gateway's health (the state message)."""
        feed = self.feed
        return {
            "queue": {
                "duplicates": self.duplicates,
                "faults": self.faults,
                "connected": bool(feed and feed.stats().connected),
            }
        }

    async def run(self) -> None:
        for kind in ("queue.event", "queue.fault"):
            for doc in reversed(await self.journal.recent(kind, "", limit=SEEN_KEPT)):
                body = doc["body"]
                self._remember((body.get("mseq") or 0, body.get("raw_hex") or body["raw"]))
        async with QueueFeed(
            self.config.transport, encoding=self.config.encoding, baudrate=self.config.baudrate
        ) as feed:
            self.feed = feed
            try:
                async for item in feed.messages():
                    self._on_item(feed, item)
            finally:
                self.feed = None

    def _remember(self, key: tuple[int, str]) -> None:
        if key in self._seen:
            return
        self._seen.add(key)
        self._order.append(key)
        if len(self._order) > SEEN_KEPT:
            self._seen.discard(self._order.popleft())

    def _raw_fields(self, raw: bytes) -> dict[str, str]:
        """The line as safe text, and its bytes as hex when the text is not exactly them."""
        text, altered = device_text(raw, self.config.encoding, MAX_QM_LINE_CHARS)
        return {"raw": text, "raw_hex": raw.hex()} if altered else {"raw": text}

    def _on_item(self, feed: QueueFeed, item: QMMessage | Unusable) -> None:
        raw = self._raw_fields(item.raw)
        key = (item.mseq, raw.get("raw_hex") or raw["raw"])
        if key in self._seen:
            self.duplicates += 1
            self._spawn(feed.ack(item.mseq))  # it was journaled before; say so again
            return
        self._remember(key)
        body: Body
        if isinstance(item, Unusable):
            kind, body = "queue.fault", self._fault(item.mseq, item.reason, raw)
        else:
            kind, body = self._describe(item, raw)
        if kind == "queue.fault":
            self.faults += 1
        # append_nowait in arrival order keeps the journal in the machine's order
        future = self.journal.append_nowait(kind, body)
        doc = body.model_dump(mode="json")
        self._spawn(self._ack_when_durable(feed, item.mseq, key, future))
        if kind == "queue.event" and self.on_event is not None:
            try:
                self.on_event(doc)
            except Exception:  # the feed and its acknowledgements must go on
                log.exception("queue: handling mseq %d failed", item.mseq)

    def _describe(self, msg: QMMessage, raw: dict[str, str]) -> tuple[str, Body]:
        fields: dict[str, Any] = {
            "mseq": msg.mseq,
            "type": msg.CODE,
            **raw,
            "machine_time": msg.machine_time.isoformat() if msg.machine_time else None,
        }
        for name in (
            "ticket",
            "service",
            "service_name",
            "window",
            "staff",
            "to_service",
            "waiting",
        ):
            if hasattr(msg, name):
                fields[name] = getattr(msg, name)
        if hasattr(msg, "from_window"):
            fields["window"] = msg.from_window
        if isinstance(msg, Heartbeat):
            fields["waiting"] = msg.waiting_total
        try:
            return "queue.event", QueueEvent.model_validate(fields)
        except ValidationError as exc:
            err = exc.errors()[0]
            return "queue.fault", self._fault(
                msg.mseq, f"{'.'.join(map(str, err['loc']))}: {err['msg']}", raw
            )

    @staticmethod
    def _fault(mseq: int, reason: str, raw: dict[str, str]) -> QueueFault:
        return QueueFault(mseq=mseq, reason=clean_text(reason, 300), **raw)

    async def _ack_when_durable(
        self, feed: QueueFeed, mseq: int, key: tuple[int, str], future: asyncio.Future[int]
    ) -> None:
        try:
            await future
        except JournalError as exc:
            # not acknowledged: the machine sends it again and we try again then
            self._seen.discard(key)
            log.error("queue: mseq %d not acknowledged: %s", mseq, exc)
            return
        await feed.ack(mseq)

    def _spawn(self, coro: Awaitable[Any]) -> None:
        task: asyncio.Task[Any] = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def close(self) -> None:
        """Stop reading the machine; wait a moment for acknowledgements under way."""
        if self._supervisor is not None:
            await self._supervisor.cancel(self.task_name)
        for task in list(self._tasks):
            with contextlib.suppress(Exception):
                await asyncio.wait_for(task, 2)
