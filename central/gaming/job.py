"""The gaming detection job: each day over yesterday, each Monday over the last ISO week.

Periods due are marked per hall (the halls correlation computed in them) in two work queues
of the same shape as correlation's hall-days, and shared out the same way
(``central.correlation.workqueue``): every aggregator process runs a worker that claims a batch
of hall-periods with a lease, loads their facts, runs the detector over the batch together
(its false-discovery control spans the batch), and opens the anomaly cases in the transaction
that takes the hall-periods off the queue. A killed worker's batch is taken over when the lease
ends; opening is by fingerprint, so doing a hall-period twice opens nothing twice.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

from sqlalchemy import Table, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from central.config import AnomaliesConfig
from central.correlation import store as correlation_store
from central.correlation import workqueue
from central.correlation.job import worker_name
from central.gaming import casebook, facts_store
from central.gaming.detector import detect_many
from central.gaming.model import Anomaly, Facts, Period
from central.rules.workdays import BUSINESS_TZ, business_date
from central.store.schema_correlation import correlation_days, correlation_state
from central.store.schema_gaming import anomaly_day_queue, anomaly_week_queue

log = logging.getLogger(__name__)

Detect = Callable[[list[Facts]], list[Anomaly]]  # the detector with its settings bound
QUEUES: dict[str, Table] = {"day": anomaly_day_queue, "week": anomaly_week_queue}
DUE_STATE = "gaming.{kind}.marked"  # correlation_state: the last period start marked
SCHEDULE_LOCK_KEY = 0x6877_6761  # "hwga": one scheduler transaction at a time (PostgreSQL)


@dataclass
class RunReport:
    marked: dict[str, int] = field(default_factory=dict)  # kind → hall-periods queued
    detected: list[tuple[str, Period]] = field(default_factory=list)
    anomalies: int = 0  # found by the detector
    opened: int = 0  # new cases (the rest were open, decided or dismissed before)


def period_of(kind: str, start: dt.date) -> Period:
    return Period.day(start) if kind == "day" else Period.iso_week(start)


def due(now: dt.datetime, after_hour: int) -> dict[str, Period]:
    """The periods due at ``now``: the last day complete ``after_hour`` hours into the next
    (Beijing), and the last ISO week complete by then."""
    late = now.astimezone(BUSINESS_TZ).hour < after_hour
    settled = business_date(now) - dt.timedelta(days=2 if late else 1)
    sunday = (
        settled if settled.weekday() == 6 else settled - dt.timedelta(days=settled.weekday() + 1)
    )
    return {"day": Period.day(settled), "week": Period.iso_week(sunday)}


async def _last_marked(conn: AsyncConnection, name: str) -> dt.date | None:
    query = select(correlation_state.c.value).where(correlation_state.c.name == name)
    value = (await conn.execute(query)).scalar()
    return None if value is None else dt.date.fromisoformat(value["start"])


async def _set_marked(conn: AsyncConnection, name: str, start: dt.date, known: bool) -> None:
    doc = {"start": start.isoformat()}
    if known:
        where = correlation_state.c.name == name
        await conn.execute(update(correlation_state).where(where).values(value=doc))
    else:
        await conn.execute(insert(correlation_state).values(name=name, value=doc))


async def _halls_with_data(engine: AsyncEngine, period: Period) -> list[str]:
    c = correlation_days.c
    query = (
        select(c.hall_id)
        .where(c.business_day >= period.start, c.business_day <= period.end)
        .distinct()
    )
    async with engine.connect() as conn:
        return sorted(r.hall_id for r in await conn.execute(query))


async def mark(engine: AsyncEngine, period: Period, halls: Sequence[str] | None = None) -> int:
    """Queue ``period`` for the given halls (default: every hall correlated in it)."""
    chosen = list(halls) if halls is not None else await _halls_with_data(engine, period)
    async with engine.begin() as conn:
        await correlation_store.lock_for_write(conn)
        return await _queue(conn, period, chosen)


async def _queue(conn: AsyncConnection, period: Period, halls: Sequence[str]) -> int:
    return await workqueue.mark(conn, [(h, period.start) for h in halls], queue=QUEUES[period.kind])


async def _one_scheduler(conn: AsyncConnection) -> None:
    """Every aggregator runs the schedule: one transaction at a time reads and moves a period's
    mark (two that both read "not marked" both inserted it, and one failed on the key)."""
    if conn.dialect.name == "postgresql":
        await conn.execute(select(func.pg_advisory_xact_lock(SCHEDULE_LOCK_KEY)))
    else:
        await correlation_store.lock_for_write(conn)


async def schedule(engine: AsyncEngine, now: dt.datetime, after_hour: int) -> dict[str, int]:
    """Mark each period due that was not marked yet; how many hall-periods per kind. Each
    period is queued once, whichever aggregator gets to it first."""
    marked: dict[str, int] = {}
    for kind, period in due(now, after_hour).items():
        name = DUE_STATE.format(kind=kind)
        async with engine.connect() as conn:
            last = await _last_marked(conn, name)  # most runs stop here, without the lock
        if last is not None and last >= period.start:
            continue
        halls = await _halls_with_data(engine, period)
        async with engine.begin() as conn:
            await _one_scheduler(conn)
            last = await _last_marked(conn, name)  # again, under the lock
            if last is not None and last >= period.start:
                continue
            marked[kind] = await _queue(conn, period, halls)
            await _set_marked(conn, name, period.start, known=last is not None)
    return marked


async def drain(
    engine: AsyncEngine,
    worker: str,
    detect: Detect,
    report: RunReport,
    cfg: AnomaliesConfig,
    *,
    now: dt.datetime | None = None,
) -> int:
    """Claim and detect hall-periods until both queues have none free; how many done."""
    done = 0
    for kind, queue in QUEUES.items():
        while True:
            async with engine.begin() as conn:
                await correlation_store.lock_for_write(conn)
                claims = await workqueue.claim(conn, worker, cfg.batch, cfg.lease_s, queue=queue)
            if not claims:
                break
            done += await _isolated(engine, worker, kind, claims, detect, report, cfg, now)
    return done


async def _isolated(
    engine: AsyncEngine,
    worker: str,
    kind: str,
    claims: list[workqueue.Claim],
    detect: Detect,
    report: RunReport,
    cfg: AnomaliesConfig,
    now: dt.datetime | None,
) -> int:
    """The batch together; if it fails, each hall-period alone, so that one that cannot be
    detected (or stored) waits for its retry without holding the others back."""
    try:
        return await _detect_batch(engine, worker, kind, claims, detect, report, cfg, now)
    except asyncio.CancelledError:
        raise
    except Exception:
        if len(claims) > 1:
            log.warning("anomaly detection of %d %s periods failed; one by one", len(claims), kind)
            done = 0
            for claim in claims:
                done += await _isolated(engine, worker, kind, [claim], detect, report, cfg, now)
            return done
        one = claims[0]
        log.exception("anomaly detection of %s %s %s failed; queued again", one.hall, one.day, kind)
        async with engine.begin() as conn:
            await workqueue.release(
                conn, worker, one, retry_s=workqueue.RETRY_S, queue=QUEUES[kind]
            )
        return 0


async def _facts(
    engine: AsyncEngine, kind: str, claims: list[workqueue.Claim], weeks: int, grace_s: float
) -> list[Facts]:
    facts = []
    async with engine.connect() as conn:
        for c in claims:
            period = period_of(kind, c.day)
            found = await facts_store.load(conn, c.hall, period)
            normal = await facts_store.baseline(conn, c.hall, period, weeks, grace_s)
            facts.append(replace(found, baseline=normal))
    return facts


async def _detect_batch(
    engine: AsyncEngine,
    worker: str,
    kind: str,
    claims: list[workqueue.Claim],
    detect: Detect,
    report: RunReport,
    cfg: AnomaliesConfig,
    now: dt.datetime | None,
) -> int:
    queue = QUEUES[kind]
    facts = await _facts(engine, kind, claims, cfg.baseline_weeks, cfg.detector.idle_grace_s)
    # the pure part in a worker thread: the aggregator's ingest shares this event loop
    found = await asyncio.to_thread(detect, facts)
    done = 0
    async with engine.begin() as conn:
        await correlation_store.lock_for_write(conn)
        held = [c for c in claims if await workqueue.holds(conn, worker, c, queue=queue)]
        halls = {c.hall for c in held}
        mine = [a for a in found if a.hall_id in halls]
        report.opened += await casebook.open_cases(
            conn, (casebook.from_anomaly(a) for a in mine), now or dt.datetime.now(dt.UTC)
        )
        for c in held:
            await workqueue.finish(conn, worker, c, complete=True, queue=queue)
            report.detected.append((c.hall, period_of(kind, c.day)))
            done += 1
    report.anomalies += len(mine)
    if mine:
        log.info("anomalies: %d found over %d %s periods", len(mine), done, kind)
    return done


async def run_once(
    engine: AsyncEngine,
    periods: Sequence[Period],
    *,
    cfg: AnomaliesConfig | None = None,
    detect: Detect | None = None,
    halls: Sequence[str] | None = None,
    now: dt.datetime | None = None,
) -> RunReport:
    """Queue ``periods`` and detect them now (the command line's run and the tests')."""
    cfg = cfg or AnomaliesConfig()
    detect = detect or detector_for(cfg)
    report = RunReport()
    for period in periods:
        report.marked[period.kind] = report.marked.get(period.kind, 0) + await mark(
            engine, period, halls
        )
    await drain(engine, worker_name(), detect, report, cfg, now=now)
    return report


def detector_for(cfg: AnomaliesConfig) -> Detect:
    return functools.partial(detect_many, cfg=cfg.detector)


async def run_forever(engine: AsyncEngine, cfg: AnomaliesConfig) -> None:
    """The aggregator's task: mark what is due, drain the queues, every ``check_every_s``."""
    detect = detector_for(cfg)
    worker = worker_name(90)
    while True:
        report = RunReport()
        try:
            await schedule(engine, dt.datetime.now(dt.UTC), cfg.after_hour)
            await drain(engine, worker, detect, report, cfg)
            if report.opened:
                log.info("anomalies: %d new cases opened", report.opened)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("anomaly detection failed; retrying in %.0f s", cfg.check_every_s)
        await asyncio.sleep(cfg.check_every_s)
