"""The built-in event source: stands in for devices in the demo, the tests and benchmarks.

Like a device, it only counts an event as delivered once the journal says it is durable; with a
witness file it writes down each of those, so a test can later prove that every event the
"device" was told about reached central.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from functools import partial

from edge.config import GeneratorConfig
from edge.journal import Journal, JournalError
from protocols.events import GeneratorSample

WITNESS_MARK = "ok"  # the last field of a whole witness line


class Generator:
    def __init__(self, journal: Journal, settings: GeneratorConfig) -> None:
        self.journal = journal
        self.settings = settings
        self.run_id = uuid.uuid4().hex[:12]
        self.durable = 0
        self._witness_fd: int | None = None

    async def run(self) -> None:
        s = self.settings
        if s.witness is not None:
            s.witness.parent.mkdir(parents=True, exist_ok=True)
            # O_APPEND + os.write: the lines reach the kernel at once. A kill -9 can still cut a
            # write of several pages short, so every line ends with a mark (a cut one lacks it)
            # and a new run starts on a line of its own.
            self._witness_fd = os.open(s.witness, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o644)
            size = os.fstat(self._witness_fd).st_size
            if size and os.pread(self._witness_fd, 1, size - 1) != b"\n":
                os.write(self._witness_fd, b"\n")
        try:
            if s.rate == 0:
                await self._flat_out()
            else:
                await self._paced()
        finally:
            if self._witness_fd is not None:
                os.close(self._witness_fd)

    def _body(self, n: int) -> GeneratorSample:
        if self.settings.pad_bytes:
            return GeneratorSample(n=n, run=self.run_id, pad="x" * self.settings.pad_bytes)
        return GeneratorSample(n=n, run=self.run_id)

    async def _flat_out(self) -> None:
        n = 0
        total = self.settings.total
        while total is None or n < total:
            size = self.settings.chunk if total is None else min(self.settings.chunk, total - n)
            futures = [
                self.journal.append_nowait("gen.sample", self._body(n + i)) for i in range(size)
            ]
            results = await asyncio.gather(*futures, return_exceptions=True)
            self._witness(n, results)
            n += size

    async def _paced(self) -> None:
        period = 1.0 / self.settings.rate
        loop = asyncio.get_running_loop()
        next_at = loop.time()
        n = 0
        outstanding: set[asyncio.Future[int]] = set()
        while self.settings.total is None or n < self.settings.total:
            future = self.journal.append_nowait("gen.sample", self._body(n))
            future.add_done_callback(partial(self._witness_one, n))
            outstanding.add(future)
            future.add_done_callback(outstanding.discard)
            n += 1
            next_at += period
            await asyncio.sleep(max(0.0, next_at - loop.time()))
        await asyncio.gather(*outstanding, return_exceptions=True)

    def _witness_one(self, n: int, future: asyncio.Future[int]) -> None:
        self._witness(n, [_outcome(future)])

    def _witness(self, first_n: int, results: list[int | BaseException]) -> None:
        lines = []
        for offset, result in enumerate(results):
            if isinstance(result, int):
                self.durable += 1
                lines.append(f"{self.run_id} {result} {first_n + offset} {WITNESS_MARK}\n")
        if self._witness_fd is not None and lines:
            os.write(self._witness_fd, "".join(lines).encode())


def _outcome(future: asyncio.Future[int]) -> int | BaseException:
    if future.cancelled():
        return JournalError("cancelled")
    exc = future.exception()
    return exc if exc is not None else future.result()
