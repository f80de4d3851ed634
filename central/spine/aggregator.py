"""The aggregator process: consume, ingest in groups, acknowledge after commit.

Gateway state messages do not go through a transaction each: the latest of every gateway waits
in ``central.spine.states`` and all are written together about twice a second.

The gateways' live lanes (``hw/v1/H/G/live``) have a path of their own on PostgreSQL
(``ingest.live``): their batches are taken as they arrive, in small groups with gateways in
turns, and committed in transactions of their own beside the drain's group pipeline, so a
hall's presses wait neither for the drain's group being committed nor for the one read ahead
(each up to 2 MB in a reconnect storm). One gateway's live and drain batches may so commit at
once: its row lock orders them, and its acks never go back to an older commit's
(``outcome.SentAcks``). On SQLite (one writer, and reads outside the write transaction) one
transaction at a time: the drain's groups take the live batches first."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import TypeVar

from pydantic import ValidationError
from sqlalchemy.exc import DBAPIError

from central.audits import config as audit_config
from central.cases import service as case_jobs
from central.cases.context import CaseContext
from central.cases.context import bind as bind_case_context
from central.complaints import service as complaint_jobs
from central.config import CentralConfig
from central.correlation import job as correlation_job
from central.gaming import job as gaming_job
from central.gateways import command_queue
from central.gateways.command_signing import CommandSigner, load_or_create_signing_key
from central.haocha.config import bind_book
from central.outbox import service as outbox_jobs
from central.records import event_archive, evidence
from central.records.ledger import append as ledger_append
from central.records.timeseries import sink as timeseries_sink
from central.spine import bridges
from central.spine.admission import Admission
from central.spine.amqp_intake import AmqpConsumer
from central.spine.consumer import Consumer
from central.spine.ingest import Ingestor
from central.spine.outcome import AckDecision, SentAcks
from central.spine.reading import (
    Incoming,
    Rejected,
    StoreUnavailable,
    Unit,
    failure,
    unreachable,
)
from central.spine.states import StateBook
from central.spine.turns import LIVE_GROUP_BYTES, sender_of
from central.store import partitions
from central.store.db import make_engine
from central.store.migrate import upgrade
from central.web.context import bind_config as bind_dashboard
from hallkit.clock import utc_now
from hallkit.supervise import Supervisor
from protocols import topics
from protocols.envelope import Ack, encode

log = logging.getLogger(__name__)
T = TypeVar("T")

SIDE_CHANNELS = tuple(
    "/" + channel
    for channel in (topics.Channel.STATE, topics.Channel.RESULT, topics.Channel.EVIDENCE)
)  # what is not an event batch: kept apart from the groups' transactions
CONSUMER_TASK = "mqtt.consumer"  # paho's network thread: its connection, as a task record
WAITING_ACK_S = 2.0  # ack stream kept alive for waiting gateways: well inside their timeout
DROPS_REPORT_S = 5.0  # how often messages dropped unread are added to the gateways' alarms
RETRY_FIRST_S = 0.25  # the database unreachable: first pause before the same group again
RETRY_MAX_S = 8.0


async def _nothing() -> None:
    pass


class Aggregator:
    def __init__(self, config: CentralConfig) -> None:
        self.config = config
        self.engine = make_engine(config.database_url)
        self.ingestor = Ingestor(
            self.engine,
            quarantine_rows=config.ingest.quarantine_rows_per_gateway,
            quarantine_bytes=int(config.ingest.quarantine_mb_per_gateway * 1024 * 1024),
        )
        self.states = StateBook(self.ingestor)
        self.supervisor = Supervisor(on_failed=self._task_failed)
        limits = config.ingest
        admission = (
            Admission(
                limits.gateway_mb_per_s * 1024 * 1024,
                limits.gateway_messages_per_s,
                limits.gateway_burst_s,
            )
            if limits.throttle
            else None
        )
        self.consumer: Consumer | AmqpConsumer
        if config.broker.amqp is not None and config.broker.kind == "rabbitmq":
            # the province cluster: partitioned quorum queues over AMQP (prefetch bounds them)
            self.consumer = AmqpConsumer(config.broker.amqp, self.supervisor.record(CONSUMER_TASK))
        else:
            self.consumer = Consumer(
                config.broker,
                limits.max_pending,
                self.supervisor.record(CONSUMER_TASK),
                admission=admission,
            )
        self.consuming = True  # not in a dashboard process (``start_api_only``)
        # the live lanes' batches committed on their own path: PostgreSQL's row locks let two
        # ingest transactions run at once; SQLite's one writer would refuse the second
        self.live_path = self.engine.dialect.name == "postgresql"
        self.consumer.waiting.live_apart = self.live_path
        # read, waiting for the group before it to commit (one at most: the rest waits in
        # the consumer, where its PUBACKs pace the broker)
        self._read: asyncio.Queue[tuple[list[Incoming], list[Unit]]] = asyncio.Queue(1)
        self._holding: Counter[str] = Counter()  # messages per sender in those groups
        self._acks = SentAcks()  # per gateway: the last ack sent, and when
        self._live_idle = asyncio.Event()  # no live group in hand: the drain may read
        self._live_idle.set()
        self.failure: str | None = None  # a task given up: the process should stop
        self.failed = asyncio.Event()

    async def start(self) -> None:
        """Every configuration file is read here, before any task runs: a bad one raises
        ConfigError (or CalendarConfigError) naming the file and line."""
        correlation = correlation_job.job(self.engine, self.config)
        if self.config.database_url.startswith("sqlite"):
            self.config.data_dir.mkdir(parents=True, exist_ok=True)
        await upgrade(self.engine)
        try:  # PostgreSQL: events by month, this one and two ahead (the daily pass retries)
            await partitions.ensure_ahead(self.engine, utc_now().date())
        except DBAPIError as exc:  # a lock held too long: the DEFAULT partition takes events
            log.warning("event partitions not made at start: %s", exc)
        bind_dashboard(self.engine, self.config)  # login sessions: key in the data dir
        bridges.bind(self.engine, self.config.bridges.down_grace_s)
        self.vault = evidence.bind(self.engine, self.config.data_dir)  # uploaded snapshots
        case_jobs.start(self.engine, self.config, self.supervisor)  # case feed + ladder
        audit_config.bind(self.engine, self.config.audits)  # 抽查 sample sizes
        outbox_jobs.start(self.engine, self.config, self.supervisor)  # delivery, feed, warnings
        complaint_jobs.start(self.engine, self.config, self.supervisor)  # escalation
        await self.consumer.start()
        spawn = self.supervisor.spawn
        spawn("ingest.read", self._read_ahead)
        spawn("ingest", self._ingest_loop)
        if self.live_path:
            spawn("ingest.live", self._live_loop)
        spawn("ingest.drops", self._report_drops)
        spawn("ingest.waiting", self._ack_waiting)
        spawn("ingest.states", self.states.run_forever)
        signer = CommandSigner(load_or_create_signing_key(self.config.command_key_path))
        spawn(
            "commands",
            lambda: command_queue.run_forever(
                self.engine, signer, self.consumer.publish, self.consumer.connected.is_set
            ),
        )
        spawn(
            "ledger",
            lambda: ledger_append.run_forever(
                self.engine,
                seal_every_s=self.config.ledger.seal_every_s,
                seal_file=self.config.seal_file,
            ),
        )
        spawn(
            "timeseries", lambda: timeseries_sink.run_forever(self.engine, self.config.timeseries)
        )
        spawn("correlation", correlation)  # + follow-up
        if self.engine.dialect.name == "postgresql":  # months ahead daily, retention policy
            retention = self.config.retention
            spawn(
                "partitions",
                lambda: event_archive.run_forever(
                    self.engine,
                    retention.events_keep_months,
                    self.config.archive_dir,
                    retention.check_every_s,
                ),
            )
        if self.config.anomalies.enabled:  # 异常线索: daily and weekly gaming detection
            spawn("anomalies", lambda: gaming_job.run_forever(self.engine, self.config.anomalies))

    async def start_api_only(self) -> None:
        """A dashboard process (``serve --no-ingest``): the schema and what the API finds bound
        to the engine, but no consumer and no jobs (the ``serve --no-api`` aggregators run
        them), so its answers never queue behind ingest on one event loop."""
        await upgrade(self.engine)
        bind_dashboard(self.engine, self.config)
        bridges.bind(self.engine, self.config.bridges.down_grace_s)
        self.vault = evidence.bind(self.engine, self.config.data_dir)
        bind_case_context(self.engine, CaseContext.from_config(self.config))
        audit_config.bind(self.engine, self.config.audits)
        bind_book(self.engine, self.config.haocha.book())
        complaint_jobs.bind(self.engine, self.config.complaints)
        self.consuming = False

    def _task_failed(self, name: str, error: str) -> None:
        self.failure = f"{name}: {error}"
        self.failed.set()

    async def stop(self) -> None:
        """Close everything, each part even when another fails; the database last."""
        for what, step in (
            ("tasks", self.supervisor.stop),
            ("consumer", self.consumer.stop if self.consuming else _nothing),
            ("gateway states", self.states.flush),  # the last ones received
            ("database", self.engine.dispose),
        ):
            try:
                await step()
            except Exception:
                log.exception("stopping the aggregator: %s failed; carrying on", what)

    async def _read_ahead(self) -> None:
        """Take the next group and read its event messages while the group before it commits:
        reading is CPU in this process, committing is mostly waiting for PostgreSQL, so the
        two overlap. One group is read ahead at most; groups commit in the order taken, so
        each gateway's acks stay in order."""
        while True:
            group = await self.consumer.next_group(self.config.ingest.max_group)
            self._holding.update(sender_of(msg.topic) for msg in group)
            units: list[Unit] = []
            for msg in group:
                if not msg.topic.endswith(SIDE_CHANNELS):
                    # a live group in hand goes first: its round trips must not wait behind
                    # this CPU on the one event loop (reading holds no lock it could need)
                    await self._live_idle.wait()
                    units.append(self.ingestor.read(msg))
                    await asyncio.sleep(0)  # the commit in flight takes its turns between
            await self._read.put((group, units))

    async def _ingest_loop(self) -> None:
        while True:
            group, units = await self._read.get()
            await self._commit_group(group, units)

    async def _live_loop(self) -> None:
        """The live lanes' batches as they arrive, committed beside the drain's groups: a
        live batch waits for the live group before it at most, a few presses per gateway."""
        while True:
            group = await self.consumer.next_live_group(
                self.config.ingest.max_group, LIVE_GROUP_BYTES
            )
            self._holding.update(sender_of(msg.topic) for msg in group)
            self._live_idle.clear()
            try:
                await self._commit_group(group, [self.ingestor.read(msg) for msg in group])
            finally:
                self._live_idle.set()

    async def _commit_group(self, group: list[Incoming], units: list[Unit]) -> None:
        """Store a group, acknowledge it to the gateways and then to the broker."""
        try:
            await self._handle(group, units)
        except Exception:
            # nothing was acknowledged: the gateways resend after their ack timeout
            log.exception("ingest: a group of %d messages failed; awaiting resend", len(group))
            await asyncio.sleep(0.5)
        finally:
            for msg in group:
                self.consumer.done(msg)
            self._holding.subtract(sender_of(msg.topic) for msg in group)
            self._holding = +self._holding  # senders with nothing held leave

    async def _report_drops(self) -> None:
        """Messages dropped unread become a ``flood_dropped`` alarm on their gateway."""
        reported: dict[str, tuple[int, int]] = {}
        while True:
            await asyncio.sleep(DROPS_REPORT_S)
            now = self.consumer.dropped()
            new = {}
            for sender, (throttled, shed) in now.items():
                before = reported.get(sender, (0, 0))
                if (throttled, shed) != before:
                    new[sender] = (throttled - before[0], shed - before[1])
            if not new:
                continue
            try:
                await self.ingestor.alarm_drops(new)
            except Exception:  # counted again next time: the deltas stay unreported
                log.exception("ingest: could not record dropped messages as alarms")
                continue
            reported = now

    async def _handle(self, group: list[Incoming], units: list[Unit]) -> None:
        """Store a group (its event messages read by ``_read_ahead``); while the database
        cannot be reached (a failover, a restart) the same group is tried again with a growing
        pause and nothing is acknowledged meanwhile: the broker's flow control (PUBACKs held
        back, the AMQP prefetch) holds the rest."""
        for msg in group:
            if msg.topic.endswith(SIDE_CHANNELS):
                await self._until_stored(lambda m=msg: self._side_message(m))  # type: ignore[misc]
        if units:
            for decision in await self._until_stored(lambda: self.ingestor.store(units)):
                self._acknowledge(decision)

    async def _until_stored(self, step: Callable[[], Awaitable[T]]) -> T:
        delay = RETRY_FIRST_S
        while True:
            try:
                return await step()
            except StoreUnavailable as exc:
                log.warning(
                    "ingest: database unavailable (%s); the group again in %.2f s, nothing "
                    "acknowledged meanwhile",
                    exc,
                    delay,
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, RETRY_MAX_S)

    async def _side_message(self, msg: Incoming) -> None:
        try:
            if bridges.is_bridge_topic(msg.topic):
                await self._bridge_notification(msg)
            elif msg.topic.endswith("/" + topics.Channel.STATE):
                await self.states.offer(msg)  # written with the others' within a second
            elif msg.topic.endswith("/" + topics.Channel.RESULT):
                await command_queue.record_result(self.engine, msg)
            elif msg.topic.endswith("/" + topics.Channel.EVIDENCE):
                await self._receive_evidence(msg)
        except Exception as exc:
            if unreachable(exc):  # a gateway sends a command result once: keep it
                raise StoreUnavailable(failure(exc)[:300]) from exc
            # one gateway's side message never holds up the others' events
            log.exception("ingest: a message on %r failed", msg.topic[:200])
            await self.ingestor.quarantine_alone(msg, f"{type(exc).__name__}: {exc}")

    async def _bridge_notification(self, msg: Incoming) -> None:
        try:
            name, up = await bridges.record(self.engine, msg)
        except Rejected as exc:  # a hostile name or payload: the reason says it all
            await self.ingestor.quarantine_alone(msg, str(exc))
            return
        if up:
            log.info("tier bridge %s: link up (上联 正常)", name)
        else:
            log.warning("tier bridge %s: link down (上联 中断)", name)

    async def _receive_evidence(self, msg: Incoming) -> None:
        receipt = await evidence.receive(self.engine, self.vault, msg.topic, msg.payload)
        if receipt is not None:
            self.consumer.publish(
                topics.topic(receipt.hall, receipt.gateway, topics.Channel.RECEIPT), encode(receipt)
            )

    async def _ack_waiting(self) -> None:
        """Keep the ack stream of every gateway whose batches wait here from falling silent.

        A gateway sends its unacknowledged events again when it hears no ack for its ack
        timeout (5 s by default); in a reconnect storm or a long drain its batches may wait
        longer than that for their turn, and each resend is more work for the same events.
        So every ``WAITING_ACK_S`` a gateway with messages waiting here (received, not yet
        committed) and no ack for that long hears its last ack again (or ``committed_through``
        0 if it had none from this process): true, as every ack is, and asking nothing (no
        replay, no renumbering)."""
        while True:
            await asyncio.sleep(WAITING_ACK_S)
            now = time.monotonic()
            for sender in {*self.consumer.senders_waiting(), *self._holding}:
                hall, _, gateway = sender.partition("/")
                last = self._acks.last.get(gateway)
                if last is not None and now - last[1] < WAITING_ACK_S:
                    continue
                decision = (
                    AckDecision(hall, gateway, 0, None)
                    if last is None or last[0].hall != hall
                    else replace(last[0], replay_from=None, rebase_to=None)
                )
                try:
                    self._acknowledge(decision)
                except ValidationError:  # not a gateway's topic: nobody to tell
                    continue

    def _acknowledge(self, decision: AckDecision) -> None:
        decision = self._acks.to_send(decision, time.monotonic())
        ack = Ack(
            hall=decision.hall,
            gateway=decision.gateway,
            committed_through=decision.committed_through,
            replay_from=decision.replay_from,
            utc=utc_now(),
            epoch=decision.epoch,
            rebase_to=decision.rebase_to,
        )
        # unset fields stay off the wire: gateways older than epochs refuse unknown keys
        self.consumer.publish(
            topics.topic(decision.hall, decision.gateway, topics.Channel.ACK),
            ack.model_dump_json(exclude_none=True).encode(),
        )
