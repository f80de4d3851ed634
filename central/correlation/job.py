"""The correlation job: index new events, recompute every hall-day with new input, append a
new result version only where something changed, open and escalate follow-up items.

Two parts. The scan (``intake``) indexes new input and marks its hall-days in the work queue
(``workqueue``); it runs in one process at a time (on PostgreSQL a session advisory lock: an
aggregator that finds it taken skips its turn), with the follow-up escalations. Workers, in
every aggregator process, claim hall-days from the queue and recompute them: a hall-day's inputs
are read without holding the write lock, computed, then written in one transaction that also
takes it off the queue, so a killed worker leaves it queued and another takes it over when the
lease ends.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
import logging
import os
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field, replace

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from central.config import CentralConfig
from central.correlation import followups, intake, store, workqueue
from central.correlation.camera_presence import combine, seen_present
from central.correlation.config import CorrelationConfig, load_config
from central.correlation.engine import CorrelationDay, correlate
from central.correlation.sessions import SessionDay, build_sessions
from central.correlation.workqueue import Claim
from central.haocha.config import book_of
from central.reporting import halls, rollups
from central.rules.workdays import WorkCalendar, day_start, load_overrides
from central.store import archived_months

log = logging.getLogger(__name__)

LOCK_KEY = 0x6877_636F  # "hwco": one scanner at a time on PostgreSQL
CLAIM_BATCH = 4  # hall-days a worker claims at once (~0.2 s each): small, so others share
POLL_S = 1.0  # an idle worker looks at the queue this often (other processes mark it too)


@dataclass
class RunReport:
    skipped: bool = False  # another process holds the lock
    new_events: int = 0
    repaired_events: int = 0
    resent_placed: int = 0  # queue messages moved to (or back from) the machine's clock
    changed_cases: int = 0
    days: list[tuple[str, dt.date]] = field(default_factory=list)
    new_results: int = 0  # version 1 of an evaluation
    reissued: int = 0  # a later version of one
    followups_opened: int = 0
    escalations: int = 0


@asynccontextmanager
async def _runner_lock(engine: AsyncEngine) -> AsyncIterator[bool]:
    if engine.dialect.name != "postgresql":
        yield True
        return
    async with engine.connect() as conn:
        conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
        got = bool(
            (await conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": LOCK_KEY})).scalar()
        )
        try:
            yield got
        finally:
            if got:
                try:
                    await conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": LOCK_KEY})
                except BaseException:
                    await conn.invalidate()  # closing the session releases the lock
                    raise


def worker_name(n: int = 0) -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{n}"


async def scan_once(
    engine: AsyncEngine,
    cfg: CorrelationConfig,
    calendar: WorkCalendar,
    now: dt.datetime,
    report: RunReport,
    *,
    escalate: bool = True,
) -> bool:
    """Index new input and queue its hall-days; False when another process is scanning."""
    async with _runner_lock(engine) as got:
        if not got:
            report.skipped = True
            return False
        if engine.dialect.name == "postgresql":
            # in parts, so workers start on the first hall-days of a storm sooner; the
            # advisory lock above makes this the only scanner
            scanned = await intake.scan_in_parts(engine.begin, cfg)
        else:
            async with engine.begin() as conn:
                await store.lock_for_write(conn)
                scanned = await intake.scan(conn, cfg)
        report.new_events += scanned.new_events
        report.repaired_events += scanned.repaired_events
        report.resent_placed += scanned.resent_placed
        report.changed_cases += scanned.changed_cases
        if escalate:
            async with engine.begin() as conn:
                await store.lock_for_write(conn)
                report.escalations += await followups.escalate_all(
                    conn, now, calendar, cfg.followup
                )
    return True


async def run_once(
    engine: AsyncEngine,
    *,
    cfg: CorrelationConfig | None = None,
    calendar: WorkCalendar | None = None,
    now: dt.datetime | None = None,
) -> RunReport:
    """Scan, recompute every queued hall-day, escalate (the command line's run and the tests').
    ``now`` dates follow-up items and escalations (tests pass it; the job uses the clock)."""
    cfg = cfg or CorrelationConfig()
    calendar = calendar or WorkCalendar()
    now = now or dt.datetime.now(dt.UTC)
    report = RunReport()
    if not await scan_once(engine, cfg, calendar, now, report, escalate=False):
        return report
    await drain(engine, worker_name(), cfg, calendar, report, now=now)
    async with engine.begin() as conn:
        await store.lock_for_write(conn)
        report.escalations = await followups.escalate_all(conn, now, calendar, cfg.followup)
    return report


async def drain(
    engine: AsyncEngine,
    worker: str,
    cfg: CorrelationConfig,
    calendar: WorkCalendar,
    report: RunReport,
    *,
    now: dt.datetime | None = None,
) -> int:
    """Claim and compute hall-days until the queue has none free; the number computed."""
    done = 0
    while True:
        async with engine.begin() as conn:
            await store.lock_for_write(conn)
            claims = await workqueue.claim(conn, worker, CLAIM_BATCH, cfg.lease_s)
        if not claims:
            return done
        done += await _work_batch(engine, worker, claims, cfg, calendar, report, now)


async def _work_batch(
    engine: AsyncEngine,
    worker: str,
    claims: list[Claim],
    cfg: CorrelationConfig,
    calendar: WorkCalendar,
    report: RunReport,
    now: dt.datetime | None,
) -> int:
    done = 0
    renewed = time.monotonic()
    for i, item in enumerate(claims):
        if time.monotonic() - renewed > cfg.lease_s / 3:  # a slow batch keeps the rest
            async with engine.begin() as conn:
                await workqueue.extend(conn, worker, claims[i:], cfg.lease_s)
            renewed = time.monotonic()
        try:
            if await _correlate_day(
                engine, worker, item, cfg, calendar, now or dt.datetime.now(dt.UTC), report
            ):
                done += 1
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("correlation %s %s failed; queued again", item.hall, item.day)
            async with engine.begin() as conn:
                await workqueue.release(conn, worker, item, retry_s=workqueue.RETRY_S)
    return done


async def _correlate_day(
    engine: AsyncEngine,
    worker: str,
    item: Claim,
    cfg: CorrelationConfig,
    calendar: WorkCalendar,
    now: dt.datetime,
    report: RunReport,
) -> bool:
    """Recompute one claimed hall-day; False when another worker had taken it over."""
    hall, day = item.hall, item.day
    async with engine.connect() as conn:
        kept_from = await archived_months.events_kept_from(conn)
        if kept_from is not None and day_start(day) < kept_from:
            return await _leave_archived(engine, worker, item)
        inputs = await store.load_day(conn, hall, day, cfg)
        setup = (await halls.stored_setups(conn, [hall])).get(hall)
    # the pure part runs in a worker thread: the aggregator's ingest shares this event loop
    built, outcome = await asyncio.to_thread(_compute, hall, inputs, cfg)
    roster = halls.with_defaults(
        hall, setup, ((c.window, c.department) for c in inputs.cases)
    ).windows
    async with engine.begin() as conn:
        await store.lock_for_write(conn)
        if not await workqueue.holds(conn, worker, item):
            log.info("correlation %s %s: taken over by another worker, dropped", hall, day)
            return False
        saved = await store.save_day(conn, hall, day, built, outcome, now)
        opened, complete = await followups.ensure_items(
            conn,
            outcome.results,
            saved.issued,
            now,
            calendar,
            cfg.followup,
            {c.case_no: c.department for c in inputs.cases},
            roster,
            book_of(engine),
        )
        # the day's indicator rollups in the same transaction: dashboards never see results
        # without them. Facts the indicators cannot read (a case whose promise exceeds its
        # legal limit) leave the rollups as they were, not the hall-day uncorrelated.
        try:
            await rollups.refresh_day(conn, hall, day, calendar)
        except ValueError as exc:
            log.warning("rollups %s %s not refreshed: %s", hall, day, exc)
        await workqueue.finish(conn, worker, item, complete=complete)
    report.days.append((hall, day))
    report.new_results += sum(1 for i in saved.issued if i.version == 1)
    report.reissued += sum(1 for i in saved.issued if i.version > 1)
    report.followups_opened += opened
    if saved.issued or built.anomalies:
        log.info(
            "correlation %s %s: %d sessions, %d evaluations, %d new versions%s",
            hall,
            day,
            len(outcome.sessions),
            len(outcome.results),
            len(saved.issued),
            f", {len(built.anomalies)} queue anomalies" if built.anomalies else "",
        )
    return True


async def _leave_archived(engine: AsyncEngine, worker: str, item: Claim) -> bool:
    """A hall-day some of whose raw events were archived and dropped: its results and rollups
    stay as they were (recomputed from the events left, its evaluations would vanish)."""
    async with engine.begin() as conn:
        await store.lock_for_write(conn)
        if not await workqueue.holds(conn, worker, item):
            return False
        await workqueue.finish(conn, worker, item, complete=True)
    log.info("correlation %s %s: its events are archived, left as it was", item.hall, item.day)
    return True


def _compute(
    hall: str, inputs: store.DayInputs, cfg: CorrelationConfig
) -> tuple[SessionDay, CorrelationDay]:
    built = build_sessions(hall, inputs.queue, dt.timedelta(seconds=cfg.reporting_gap_s))
    if inputs.camera_presence and built.horizon is not None:
        # where a camera watches the window, 在岗 also needs the seat seen occupied
        seen = seen_present(inputs.camera_presence, built.horizon)
        built = replace(built, presence=tuple(combine(built.presence, seen)))
    return built, correlate(
        hall,
        built.sessions,
        inputs.presses,
        invites=inputs.invites,
        cases=inputs.cases,
        verdicts=inputs.verdicts,
        presence=built.presence,
        cfg=cfg,
    )


def calendar_of(config: CentralConfig | None) -> WorkCalendar:
    path = config.rules.calendar_overrides if config is not None else None
    return WorkCalendar(load_overrides(path) if path else None)


async def run_forever(
    engine: AsyncEngine,
    interval: float = 30.0,
    *,
    cfg: CorrelationConfig | None = None,
    calendar: WorkCalendar | None = None,
) -> None:
    """The aggregator's background job: a scan with the escalations every ``interval`` seconds
    (in one process at a time) and ``cfg.workers`` workers on the shared queue."""
    cfg = cfg or CorrelationConfig()
    calendar = calendar or WorkCalendar()
    queued = asyncio.Event()
    async with asyncio.TaskGroup() as tasks:
        tasks.create_task(_scanner(engine, interval, cfg, calendar, queued))
        for n in range(cfg.workers):
            tasks.create_task(_worker(engine, worker_name(n), cfg, calendar, queued))


async def _scanner(
    engine: AsyncEngine,
    interval: float,
    cfg: CorrelationConfig,
    calendar: WorkCalendar,
    queued: asyncio.Event,
) -> None:
    # not sooner: a scan re-reads hours of each active gateway's queue messages (machine clock)
    while True:
        report = RunReport()
        try:
            if await scan_once(engine, cfg, calendar, dt.datetime.now(dt.UTC), report):
                queued.set()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("correlation scan failed; retrying in %.0f s", interval)
        await asyncio.sleep(interval)


async def _worker(
    engine: AsyncEngine,
    worker: str,
    cfg: CorrelationConfig,
    calendar: WorkCalendar,
    queued: asyncio.Event,
) -> None:
    while True:
        report = RunReport()
        try:
            await drain(engine, worker, cfg, calendar, report)
            if report.reissued:
                log.info("correlation: %d results re-issued", report.reissued)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("correlation worker %s failed; retrying", worker)
        queued.clear()
        with suppress(TimeoutError):
            await asyncio.wait_for(queued.wait(), POLL_S)


def job(engine: AsyncEngine, config: CentralConfig) -> Callable[[], Awaitable[None]]:
    """The aggregator's job, its settings read now: a bad ``correlation.yaml`` or calendar
    override file stops the start with the file and line (ConfigError, CalendarConfigError),
    never a background task later."""
    cfg = load_config(config.data_dir)
    calendar = calendar_of(config)
    return functools.partial(run_forever, engine, cfg.scan_every_s, cfg=cfg, calendar=calendar)
