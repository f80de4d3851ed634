"""The sink itself: read committed events past the watermark, write their samples, then move
the watermark; the job that runs it."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import urlsplit, urlunsplit

from sqlalchemy import and_, select, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from central.config import TimeseriesConfig
from central.records.timeseries.samples import Deriver, Sample, StoredEvent, gateway_samples
from central.store.clockfix import corrected_utc
from central.store.db import insert_ignore
from central.store.schema import boot_clocks, events, gateways
from central.store.schema_tsledger import timeseries_progress
from hallkit.clock import utc_now

log = logging.getLogger(__name__)


LOCK_KEY = 0x6877_7473  # "hwts": one sink writer at a time on PostgreSQL
SAMPLING_ROW = "*"  # timeseries_progress row of the gateway gauges' last sampling slot
WARM_EVENTS = 50_000  # how far back queue state is rebuilt after a restart or a takeover


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
