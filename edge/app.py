"""The gateway service: journal, uplink and sources, started and stopped together."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from typing import Any

from edge.clock import Clock
from edge.config import GatewayConfig
from edge.generator import Generator
from edge.journal import Journal
from edge.uplink import SOFTWARE, Uplink

log = logging.getLogger(__name__)


class Gateway:
    def __init__(self, config: GatewayConfig) -> None:
        self.config = config
        self.clock = Clock(assume_synced=config.clock.assume_synced)
        self.journal = Journal(
            config.journal_path, self.clock,
            limit_bytes=int(config.journal.limit_mb * 1024 * 1024),
            seq_floor=config.journal.seq_floor,
        )
        self.uplink = Uplink(
            self.journal, self.clock, config.hall, config.gateway, config.broker, config.uplink,
            health=self.health,
        )
        self._tasks: list[asyncio.Task[Any]] = []

    def health(self) -> dict[str, Any]:
        return {"journal_write_errors": self.journal.write_errors,
                "uplink_rewinds": self.uplink.rewinds}

    async def start(self) -> None:
        self.config.data_dir.mkdir(parents=True, exist_ok=True)
        await self.journal.open()
        previous = self.journal.head_seq
        await self.journal.append("gateway.boot", {
            "software": SOFTWARE, "config_version": "", "previous_head_seq": previous})
        await self.uplink.start()
        if self.config.generator.enabled:
            generator = Generator(self.journal, self.config.generator)
            self._tasks.append(asyncio.create_task(generator.run(), name="generator"))
        log.info("gateway %s/%s started; journal head %d, acked %d", self.config.hall,
                 self.config.gateway, self.journal.head_seq, self.journal.acked_seq)

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.uplink.stop()
        await self.journal.close()

    async def run_forever(self) -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await self.start()
        try:
            await stop.wait()
        finally:
            log.info("gateway stopping")
            await self.stop()
