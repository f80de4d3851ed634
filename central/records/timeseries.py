"""The time-series sink: hall metrics from stored events to InfluxDB 2.x/3.x (or VictoriaMetrics).

A background job reads the events each gateway has committed since the sink's watermark
(``timeseries_progress``: per gateway, the seq written through; never beyond the gateway's
``committed_through``, so nothing still uncommitted or behind a gap is read), turns them into
points and writes them with influxdb-client's write API; only after the write succeeded does the
watermark move. A restart therefore continues where the last successful write ended. The window
between a successful write and the watermark's commit (a crash exactly there) writes the same
points again with the same timestamps: InfluxDB overwrites a point with the same series and
time, and VictoriaMetrics does the same with ``-dedup.minScrapeInterval=1ms`` (without it the
repeat is kept, so counts over that window would double).

Metric names are ``<measurement>_<field>`` as VictoriaMetrics names them (in InfluxDB: the
measurement and the field). Every value is a float (InfluxDB refuses a field whose type
changes). Tags name places and devices only — hall, gateway, window, service, camera, the key
and its label — never staff numbers, ticket numbers or anything about an applicant; the
``ALLOWED_TAGS`` check refuses any other tag before it can leave the process.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from pydantic import ValidationError
from sqlalchemy import and_, select, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from central.config import TimeseriesConfig
from central.store.clockfix import corrected_utc
from central.store.db import insert_ignore
from central.store.schema import boot_clocks, events, gateways
from central.store.schema_tsledger import timeseries_progress
from hallkit.clock import utc_now
from hallkit.queuestate import PRESENT, QueueReducer, QueueRules, Waiting
from protocols.devices import KEY_LABELS
from protocols.events import KINDS

log = logging.getLogger(__name__)

# metric name → what it is. The Grafana dashboards may query only these (a test checks).
METRICS: dict[str, str] = {
    "hallwatch_queue_waiting": "people waiting for a service (排队人数), from TK, kept between",
    "hallwatch_queue_waiting_total": "people waiting in the whole hall (HB heartbeat)",
    "hallwatch_queue_tickets": "1 per ticket issued (取号)",
    "hallwatch_queue_no_show": "1 per ticket given up after calls (弃号)",
    "hallwatch_wait_seconds": "ticket issued (or transferred) → called, seconds (等候时长)",
    "hallwatch_window_present": "staff at the window 1 / away 0 (在岗), source queue|camera",
    "hallwatch_waiting_area_people": "people counted in a waiting area by a camera",
    "hallwatch_evaluation_count": "1 per evaluation key press, by key (not RETRANSMIT)",
    "hallwatch_invitation_sent": "1 per evaluation invitation the evaluator accepted",
    "hallwatch_invitation_timeout": "1 per invitation closed with no key pressed",
    "hallwatch_evaluator_online": "evaluator answers its polls 1 / offline 0",
    "hallwatch_evaluator_stuck_key": "a key is stuck down 1 / 0",
    "hallwatch_evaluator_display_failed": "display failure 1 / 0",
    "hallwatch_evaluator_keys_disabled": "keys disabled 1 / 0",
    "hallwatch_evaluator_faults": "1 per hardware fault frame",
    "hallwatch_camera_online": "camera streaming 1 / offline or stalled 0",
    "hallwatch_gateway_online": "gateway connected to the broker 1 / 0 (sampled)",
    "hallwatch_gateway_backlog": "events journaled on the gateway, not yet acknowledged (sampled)",
    "hallwatch_gateway_last_batch_age_seconds": "seconds since central stored a batch (sampled)",
}

ALLOWED_TAGS = frozenset(
    {"hall", "gateway", "window", "service", "camera", "key", "label", "status", "source"}
)

LOCK_KEY = 0x6877_7473  # "hwts": one sink writer at a time on PostgreSQL
SAMPLING_ROW = "*"  # timeseries_progress row of the gateway gauges' last sampling slot
MAX_WAIT_S = 12 * 3600  # a ticket number waiting longer is yesterday's number reused
WARM_EVENTS = 50_000  # how far back queue state is rebuilt after a restart or a takeover
MAX_PENDING_TICKETS = 20_000
_STAMPS_PER_SERIES = 64


@dataclass(frozen=True, slots=True)
class Sample:
    """One value of one metric at one instant (ms since the epoch, UTC)."""

    measurement: str
    field: str
    tags: tuple[tuple[str, str], ...]
    value: float
    ms: int

    @property
    def metric(self) -> str:
        return f"{self.measurement}_{self.field}"


@dataclass(frozen=True, slots=True)
class StoredEvent:
    """What the sink needs of a row of ``events``; ``at`` is the time central trusts."""

    gateway: str
    seq: int
    hall: str
    kind: str
    at: datetime
    mono_ns: int
    boot: str
    body: dict[str, Any]


@dataclass(frozen=True, slots=True)
class _Stamp:
    """When a gateway journaled an event: its monotonic clock within a boot, and the time
    central trusts."""

    boot: str
    mono_ns: int
    at: datetime


# a ticket waits until called (CL) or given up (NS); a heartbeat does not forget tickets
QUEUE_RULES = QueueRules(kept=MAX_PENDING_TICKETS)


@dataclass(slots=True)
class _GatewayQueue:
    state: QueueReducer[_Stamp] = field(default_factory=lambda: QueueReducer(QUEUE_RULES))
    waiting: dict[str, int] = field(default_factory=dict)  # the machine's count per service


def _ms(at: datetime) -> int:
    return int(at.timestamp() * 1000)


class Deriver:
    """Turns one gateway's events, in seq order, into samples. Keeps the little state that
    needs: tickets still waiting (for 等候时长) and the waiting count per service."""

    def __init__(self) -> None:
        self._queues: dict[str, _GatewayQueue] = {}
        self._stamps: dict[tuple[str, tuple[tuple[str, str], ...]], OrderedDict[int, None]] = {}

    def forget(self, gateway: str) -> None:
        self._queues.pop(gateway, None)

    def samples(self, ev: StoredEvent) -> list[Sample]:
        out: list[Sample] = []
        handler = _HANDLERS.get(ev.kind)
        if handler is not None:
            try:  # decoded with its protocol model first: the handlers read a checked body
                KINDS[ev.kind].model_validate(ev.body)
            except ValidationError:
                log.warning(
                    "timeseries: event %s:%d (%s) does not fit its model, skipped",
                    ev.gateway,
                    ev.seq,
                    ev.kind,
                )
                return []
            handler(self, ev, out)
        return [self._unique(s) for s in out]

    def _unique(self, s: Sample) -> Sample:
        """Two points of one series in the same millisecond would overwrite each other in
        InfluxDB (and under VictoriaMetrics dedup): move the later one on by a millisecond."""
        seen = self._stamps.setdefault((s.metric, s.tags), OrderedDict())
        ms = s.ms
        while ms in seen:
            ms += 1
        seen[ms] = None
        if len(seen) > _STAMPS_PER_SERIES:
            seen.popitem(last=False)
        return s if ms == s.ms else Sample(s.measurement, s.field, s.tags, s.value, ms)

    # -- per kind ----------------------------------------------------------------------------

    def _queue(self, ev: StoredEvent, out: list[Sample]) -> None:
        b = ev.body
        q = self._queues.setdefault(ev.gateway, _GatewayQueue())
        kind, ticket, window = b.get("type"), b.get("ticket"), b.get("window")
        service = b.get("service")

        def emit(measurement: str, name: str, value: float, **tags: object) -> None:
            out.append(_sample(ev, measurement, name, value, **tags))

        step = q.state.apply(b, _Stamp(ev.boot, ev.mono_ns, ev.at))
        if kind == "TK" and ticket and service:
            emit("hallwatch_queue", "tickets", 1, service=service)
            if b.get("waiting") is not None:
                q.waiting[service] = int(b["waiting"])
                emit("hallwatch_queue", "waiting", q.waiting[service], service=service)
        elif kind == "TR" and ticket:
            self._dequeue(q, step.left, emit)
            to = b.get("to_service")
            if to and to in q.waiting:
                q.waiting[to] += 1
                emit("hallwatch_queue", "waiting", q.waiting[to], service=to)
        elif kind in ("CL", "NS") and ticket:
            waited = step.left
            self._dequeue(q, waited, emit)
            if kind == "NS":
                emit("hallwatch_queue", "no_show", 1, window=window)
            elif waited is not None:
                seconds = _elapsed(waited.since, ev)
                if seconds is not None and 0 <= seconds <= MAX_WAIT_S:
                    emit(
                        "hallwatch_wait",
                        "seconds",
                        round(seconds, 3),
                        service=waited.service,
                        window=window,
                    )
        elif kind == "HB" and b.get("waiting") is not None:
            emit("hallwatch_queue", "waiting_total", int(b["waiting"]))
        elif kind in ("LI", "RS", "LO", "PS") and window is not None:
            emit(
                "hallwatch_window",
                "present",
                1 if q.state.window(window).presence == PRESENT else 0,
                window=window,
                source="queue",
            )

    @staticmethod
    def _dequeue(q: _GatewayQueue, left: Waiting[_Stamp] | None, emit: Any) -> None:
        if left is not None and left.service in q.waiting:
            service = left.service
            q.waiting[service] = max(0, q.waiting[service] - 1)
            emit("hallwatch_queue", "waiting", q.waiting[service], service=service)

    def _key(self, ev: StoredEvent, out: list[Sample]) -> None:
        b = ev.body
        marks = b.get("marks") or []
        if "RETRANSMIT" in marks:
            return  # the device's repeat of an evaluation already journaled
        key = int(b["key"])
        status = next((m.lower() for m in marks), "ok")
        out.append(
            _sample(
                ev,
                "hallwatch_evaluation",
                "count",
                1,
                window=b.get("window"),
                key=key,
                label=KEY_LABELS.get(key, str(key)),
                status=status,
            )
        )

    def _invite(self, ev: StoredEvent, out: list[Sample]) -> None:
        if ev.body.get("status") == "ok":
            out.append(_sample(ev, "hallwatch_invitation", "sent", 1, window=ev.body.get("window")))

    def _invite_timeout(self, ev: StoredEvent, out: list[Sample]) -> None:
        if "RETRANSMIT" not in (ev.body.get("marks") or []):
            out.append(
                _sample(ev, "hallwatch_invitation", "timeout", 1, window=ev.body.get("window"))
            )

    def _health(self, ev: StoredEvent, out: list[Sample]) -> None:
        b = ev.body
        for name in ("online", "stuck_key", "display_failed", "keys_disabled"):
            out.append(
                _sample(
                    ev, "hallwatch_evaluator", name, 1 if b.get(name) else 0, window=b.get("window")
                )
            )

    def _fault(self, ev: StoredEvent, out: list[Sample]) -> None:
        out.append(_sample(ev, "hallwatch_evaluator", "faults", 1, window=ev.body.get("window")))

    def _camera_health(self, ev: StoredEvent, out: list[Sample]) -> None:
        state = ev.body.get("state")
        out.append(
            _sample(
                ev,
                "hallwatch_camera",
                "online",
                1 if state == "online" else 0,
                camera=ev.body.get("camera"),
            )
        )
        # streaming but unable to judge (frozen, too dark, flicker, no reference): a
        # different fault from a camera that is down, with a different remedy
        out.append(
            _sample(
                ev,
                "hallwatch_camera",
                "blind",
                0 if state in ("online", "offline", "stalled") else 1,
                camera=ev.body.get("camera"),
            )
        )

    def _camera_presence(self, ev: StoredEvent, out: list[Sample]) -> None:
        out.append(
            _sample(
                ev,
                "hallwatch_window",
                "present",
                1 if ev.body.get("staff") == "present" else 0,
                window=ev.body.get("window"),
                source="camera",
            )
        )

    def _camera_waiting(self, ev: StoredEvent, out: list[Sample]) -> None:
        out.append(
            _sample(
                ev,
                "hallwatch_waiting_area",
                "people",
                int(ev.body["count"]),
                camera=ev.body.get("camera"),
            )
        )


_HANDLERS = {
    "queue.event": Deriver._queue,
    "evaluator.key": Deriver._key,
    "evaluator.invite": Deriver._invite,
    "evaluator.invite_timeout": Deriver._invite_timeout,
    "evaluator.health": Deriver._health,
    "evaluator.fault": Deriver._fault,
    "camera.health": Deriver._camera_health,
    "camera.presence": Deriver._camera_presence,
    "camera.waiting": Deriver._camera_waiting,
}


def _elapsed(start: _Stamp, ev: StoredEvent) -> float | None:
    """Seconds between two events of one gateway: its monotonic clock within one boot (immune
    to clock steps), else the times central trusts."""
    if start.boot == ev.boot:
        return (ev.mono_ns - start.mono_ns) / 1e9
    return (ev.at - start.at).total_seconds()


def _sample(ev: StoredEvent, measurement: str, name: str, value: float, **tags: object) -> Sample:
    return make_sample(
        measurement, name, value, _ms(ev.at), hall=ev.hall, gateway=ev.gateway, **tags
    )


def make_sample(measurement: str, name: str, value: float, ms: int, **tags: object) -> Sample:
    present = {k: str(v) for k, v in tags.items() if v is not None and v != ""}
    stray = set(present) - ALLOWED_TAGS
    if stray:  # a programming error: never let it reach the store
        raise ValueError(f"tag(s) {sorted(stray)} may not go to the time-series store")
    return Sample(measurement, name, tuple(sorted(present.items())), float(value), ms)


def gateway_samples(rows: Iterable[Any], now: datetime, ms: int) -> list[Sample]:
    """Sampled gauges of every registered, unrevoked gateway (from ``gateways``)."""
    out: list[Sample] = []
    for row in rows:
        if row.revoked_at is not None:
            continue
        tags = {"hall": row.hall_id, "gateway": row.gateway_id}
        out.append(make_sample("hallwatch_gateway", "online", 1 if row.online else 0, ms, **tags))
        journal = (row.state or {}).get("journal") or {}
        if journal.get("backlog") is not None:
            out.append(make_sample("hallwatch_gateway", "backlog", journal["backlog"], ms, **tags))
        if row.last_batch_at is not None:
            age = max(0.0, (now - row.last_batch_at).total_seconds())
            out.append(
                make_sample(
                    "hallwatch_gateway", "last_batch_age_seconds", round(age, 3), ms, **tags
                )
            )
    return out


def safe_url(url: str) -> str:
    """The URL without any user:password part, for logs."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


class Writer:
    """influxdb-client's synchronous write API, called from a worker thread."""

    def __init__(self, cfg: TimeseriesConfig) -> None:
        from influxdb_client.client.influxdb_client import InfluxDBClient
        from influxdb_client.client.write_api import SYNCHRONOUS

        self.cfg = cfg
        self._client = InfluxDBClient(
            url=cfg.url,
            token=cfg.token.get_secret_value(),
            org=cfg.org,
            timeout=int(cfg.timeout_s * 1000),
            auth_basic=cfg.auth_basic,
            debug=False,
        )
        self._api = self._client.write_api(write_options=SYNCHRONOUS)

    async def write(self, samples: Sequence[Sample]) -> None:
        if samples:
            await asyncio.to_thread(self._write, samples)

    def _write(self, samples: Sequence[Sample]) -> None:
        from influxdb_client.client.write.point import Point
        from influxdb_client.domain.write_precision import WritePrecision

        points = []
        for s in samples:
            p = Point(s.measurement).field(s.field, s.value).time(s.ms, WritePrecision.MS)
            for k, v in s.tags:
                p.tag(k, v)
            points.append(p)
        for start in range(0, len(points), self.cfg.write_chunk):
            self._api.write(
                bucket=self.cfg.bucket,
                org=self.cfg.org,
                record=points[start : start + self.cfg.write_chunk],
                # the library's precisions are plain strings, its signature says WritePrecision
                write_precision=WritePrecision.MS,  # type: ignore[arg-type]
            )

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._api.close()
        self._client.close()


@dataclass(slots=True)
class SinkStats:
    cycles: int = 0
    events_read: int = 0
    samples_written: int = 0
    write_failures: int = 0


class TimeseriesSink:
    """One pass at a time (``run_once``); ``run_forever`` loops it."""

    def __init__(
        self, engine: AsyncEngine, cfg: TimeseriesConfig, writer: Writer | None = None
    ) -> None:
        self.engine = engine
        self.cfg = cfg
        self.writer = writer or Writer(cfg)
        self.deriver = Deriver()
        self.stats = SinkStats()
        self._state_through: dict[str, int] = {}  # seq the deriver's state is current to

    async def run_once(self, now: datetime | None = None) -> int:
        """Write what has been committed since the watermark; returns the events read."""
        now = now or utc_now()
        async with self.engine.connect() as conn:
            postgres = conn.dialect.name == "postgresql"
            if (
                postgres
                and not (
                    await conn.execute(
                        text("SELECT pg_try_advisory_xact_lock(:k)"), {"k": LOCK_KEY}
                    )
                ).scalar()
            ):
                return 0  # another aggregator process is the writer just now
            samples, advanced, read = await self._collect(conn)
            slot = int(now.timestamp()) // self.cfg.gateway_sample_s
            last_slot = await self._through(conn, SAMPLING_ROW)
            if slot > last_slot:
                rows = (await conn.execute(select(gateways))).all()
                samples += gateway_samples(rows, now, slot * self.cfg.gateway_sample_s * 1000)
                advanced[SAMPLING_ROW] = slot
            if not postgres:
                # SQLite (one process): let go of the read snapshot while the store is written,
                # so ingest is never kept waiting on it
                await conn.rollback()
            try:
                await self.writer.write(samples)
            except Exception:
                self.stats.write_failures += 1
                self._state_through.clear()  # the deriver moved on; the watermarks did not
                raise
            for gateway, seq in advanced.items():
                await self._advance(conn, gateway, seq, now)
                if gateway != SAMPLING_ROW:
                    self._state_through[gateway] = seq
            await conn.commit()
        self.stats.cycles += 1
        self.stats.events_read += read
        self.stats.samples_written += len(samples)
        return read

    async def _collect(self, conn: AsyncConnection) -> tuple[list[Sample], dict[str, int], int]:
        todo = (
            await conn.execute(
                select(
                    gateways.c.gateway_id,
                    gateways.c.committed_through,
                    timeseries_progress.c.through_seq,
                )
                .outerjoin(
                    timeseries_progress, timeseries_progress.c.gateway_id == gateways.c.gateway_id
                )
                .order_by(gateways.c.gateway_id)
            )
        ).all()
        samples: list[Sample] = []
        advanced: dict[str, int] = {}
        read = 0
        for row in todo:
            through = row.through_seq or 0
            if row.committed_through <= through:
                continue
            if self._state_through.get(row.gateway_id) != through:
                await self._warm(conn, row.gateway_id, through)
            rows = await self._events(conn, row.gateway_id, through, row.committed_through)
            for ev in rows:
                samples += self.deriver.samples(ev)
            read += len(rows)
            full = len(rows) == self.cfg.batch_events
            advanced[row.gateway_id] = rows[-1].seq if full else row.committed_through
        return samples, advanced, read

    @staticmethod
    async def _through(conn: AsyncConnection, gateway: str) -> int:
        value = (
            await conn.execute(
                select(timeseries_progress.c.through_seq).where(
                    timeseries_progress.c.gateway_id == gateway
                )
            )
        ).scalar()
        return int(value or 0)

    async def _events(
        self,
        conn: AsyncConnection,
        gateway: str,
        after: int,
        through: int,
        kinds: Sequence[str] | None = None,
        limit: int | None = None,
    ) -> list[StoredEvent]:
        clock = boot_clocks
        query = (
            select(events, clock.c.offset_us)
            .select_from(
                events.outerjoin(
                    clock,
                    and_(clock.c.gateway_id == events.c.gateway_id, clock.c.boot == events.c.boot),
                )
            )
            .where(events.c.gateway_id == gateway, events.c.seq > after, events.c.seq <= through)
            .order_by(events.c.seq)
            .limit(limit or self.cfg.batch_events)
        )
        if kinds is not None:
            query = query.where(events.c.kind.in_(kinds))
        out = []
        for r in (await conn.execute(query)).all():
            # an unsynchronised stamp of a boot that never synchronised cannot be trusted:
            # central's receive time is the better guess for a chart
            at = (
                corrected_utc(r.utc, r.synced, r.mono_ns, r.offset_us, r.received_at)
                or r.received_at
            )
            out.append(
                StoredEvent(r.gateway_id, r.seq, r.hall_id, r.kind, at, r.mono_ns, r.boot, r.body)
            )
        return out

    async def _warm(self, conn: AsyncConnection, gateway: str, through: int) -> None:
        """Rebuild the gateway's queue state from the queue events just before the watermark
        (after a restart, or after another process wrote for a while)."""
        self.deriver.forget(gateway)
        for ev in await self._events(
            conn,
            gateway,
            max(0, through - WARM_EVENTS),
            through,
            kinds=("queue.event",),
            limit=WARM_EVENTS,
        ):
            self.deriver.samples(ev)
        self._state_through[gateway] = through

    @staticmethod
    async def _advance(conn: AsyncConnection, gateway: str, seq: int, now: datetime) -> None:
        await conn.execute(
            insert_ignore(conn, timeseries_progress),
            [{"gateway_id": gateway, "through_seq": 0, "written_at": now}],
        )
        await conn.execute(
            timeseries_progress.update()
            .where(timeseries_progress.c.gateway_id == gateway)
            .values(through_seq=seq, written_at=now)
        )

    def close(self) -> None:
        self.writer.close()


async def run_forever(engine: AsyncEngine, cfg: TimeseriesConfig) -> None:
    """The aggregator's background job; returns at once when the sink is disabled."""
    if not cfg.enabled:
        return
    sink = TimeseriesSink(engine, cfg)
    log.info("time-series sink writing to %s (bucket %s)", safe_url(cfg.url), cfg.bucket)
    failures = 0
    try:
        while True:
            try:
                read = await sink.run_once()
                failures = 0
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                failures += 1
                # the exception's text, not its traceback: it must not carry request headers
                log.error(
                    "time-series sink: write to %s failed (%d in a row): %s",
                    safe_url(cfg.url),
                    failures,
                    _describe(exc),
                )
                read = 0
            pause = 0.0 if read else cfg.interval_s
            if failures:
                pause = min(300.0, cfg.interval_s * math.pow(2, min(failures, 8)))
            await asyncio.sleep(pause)
    finally:
        sink.close()


def _describe(exc: BaseException) -> str:
    status = getattr(exc, "status", None)
    reason = getattr(exc, "reason", None)
    if status is not None:
        return f"HTTP {status} {reason or ''}".strip()
    return f"{type(exc).__name__}: {str(exc)[:300]}"
