"""The aggregator process: consume, ingest in groups, acknowledge after commit."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from central import evidence, ledger, remote, timeseries
from central.cases import service as case_jobs
from central.commands import CommandSigner, load_or_create_signing_key
from central.config import CentralConfig
from central.consumer import Consumer
from central.correlation import job as correlation_job
from central.ingest import AckDecision, Incoming, Ingestor
from central.store.db import make_engine
from central.store.migrate import upgrade
from central.web.context import bind_config as bind_dashboard
from protocols import topics
from protocols.envelope import Ack, encode, utc_now

log = logging.getLogger(__name__)


class Aggregator:
    def __init__(self, config: CentralConfig) -> None:
        self.config = config
        self.engine = make_engine(config.database_url)
        self.ingestor = Ingestor(self.engine)
        self.consumer = Consumer(config.broker, config.ingest.max_pending)
        self._task: asyncio.Task[None] | None = None
        self._jobs: list[asyncio.Task[None]] = []  # background jobs, cancelled in stop()

    async def start(self) -> None:
        if self.config.database_url.startswith("sqlite"):
            self.config.data_dir.mkdir(parents=True, exist_ok=True)
        await upgrade(self.engine)
        bind_dashboard(self.engine, self.config)  # login sessions: key in the data dir
        self.vault = evidence.bind(self.engine, self.config.data_dir)  # uploaded snapshots
        await self.consumer.start()
        self._task = asyncio.create_task(self._ingest_loop(), name="ingest")
        self._jobs.append(asyncio.create_task(remote.run_forever(
            self.engine, CommandSigner(load_or_create_signing_key(self.config.command_key_path)),
            self.consumer.publish, self.consumer.connected.is_set), name="commands"))
        self._jobs.append(asyncio.create_task(ledger.run_forever(self.engine), name="ledger"))
        self._jobs.append(asyncio.create_task(timeseries.run_forever(
            self.engine, self.config.timeseries), name="timeseries"))
        self._jobs.append(case_jobs.start(self.engine, self.config))  # case feed + ladder
        self._jobs.append(correlation_job.start(self.engine, self.config))  # + follow-up

    async def stop(self) -> None:
        for job in self._jobs:
            job.cancel()
        for job in self._jobs:
            with contextlib.suppress(asyncio.CancelledError):
                await job
        await self.consumer.stop()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.engine.dispose()

    async def _ingest_loop(self) -> None:
        queue = self.consumer.queue
        while True:
            group = [await queue.get()]
            while len(group) < self.config.ingest.max_group and not queue.empty():
                group.append(queue.get_nowait())
            try:
                await self._handle(group)
            except Exception:
                # nothing was acknowledged: the gateways resend after their ack timeout
                log.exception("ingest: a group of %d messages failed; awaiting resend",
                              len(group))
                await asyncio.sleep(0.5)
            finally:
                for _ in group:
                    self.consumer.done()

    async def _handle(self, group: list[Incoming]) -> None:
        side = ("/" + topics.Channel.STATE, "/" + topics.Channel.RESULT,
                "/" + topics.Channel.EVIDENCE)
        batches = [m for m in group if not m.topic.endswith(side)]
        for msg in group:
            if msg.topic.endswith("/" + topics.Channel.STATE):
                await self.ingestor.ingest_state(msg)
            elif msg.topic.endswith("/" + topics.Channel.RESULT):
                await remote.record_result(self.engine, msg)
            elif msg.topic.endswith("/" + topics.Channel.EVIDENCE):
                await self._receive_evidence(msg)
        if batches:
            for decision in await self.ingestor.ingest(batches):
                self._acknowledge(decision)

    async def _receive_evidence(self, msg: Incoming) -> None:
        receipt = await evidence.receive(self.engine, self.vault, msg.topic, msg.payload)
        if receipt is not None:
            self.consumer.publish(topics.topic(receipt.hall, receipt.gateway,
                                               topics.Channel.RECEIPT), encode(receipt))

    def _acknowledge(self, decision: AckDecision) -> None:
        ack = Ack(hall=decision.hall, gateway=decision.gateway,
                  committed_through=decision.committed_through,
                  replay_from=decision.replay_from, utc=utc_now())
        self.consumer.publish(
            topics.topic(decision.hall, decision.gateway, topics.Channel.ACK), encode(ack))
