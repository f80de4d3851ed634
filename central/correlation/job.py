"""The correlation job: index new events, recompute every hall-day with new input, append a
new result version only where something changed, open and escalate follow-up items.

One runner at a time: on PostgreSQL a session advisory lock (another aggregator process that
finds it taken skips the run; the next run picks up whatever is dirty); SQLite has one process.
A hall-day's inputs are read without holding the write lock, computed, then written in one
transaction that also clears its dirty mark, so a crash leaves it dirty and it is redone.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from central.config import CentralConfig
from central.correlation import followups, intake, store
from central.correlation.camera_presence import combine, seen_present
from central.correlation.config import CorrelationConfig, load_config
from central.correlation.engine import CorrelationDay, correlate
from central.correlation.sessions import SessionDay, build_sessions
from central.reporting import halls
from central.rules.workdays import WorkCalendar, load_overrides

log = logging.getLogger(__name__)

LOCK_KEY = 0x6877_636F  # "hwco": one correlation runner at a time on PostgreSQL


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


async def run_once(
    engine: AsyncEngine,
    *,
    cfg: CorrelationConfig | None = None,
    calendar: WorkCalendar | None = None,
    now: dt.datetime | None = None,
) -> RunReport:
    """``now`` dates follow-up items and escalations (tests pass it; the job uses the clock)."""
    cfg = cfg or CorrelationConfig()
    calendar = calendar or WorkCalendar()
    now = now or dt.datetime.now(dt.UTC)
    report = RunReport()
    async with _runner_lock(engine) as got:
        if not got:
            report.skipped = True
            return report
        async with engine.begin() as conn:
            await store.lock_for_write(conn)
            scanned = await intake.scan(conn, cfg)
        report.new_events = scanned.new_events
        report.repaired_events = scanned.repaired_events
        report.resent_placed = scanned.resent_placed
        report.changed_cases = scanned.changed_cases
        async with engine.connect() as conn:
            dirty = await intake.dirty_days(conn)
        for hall, day, marked_at in dirty:
            await _correlate_day(engine, hall, day, marked_at, cfg, calendar, now, report)
        async with engine.begin() as conn:
            await store.lock_for_write(conn)
            report.escalations = await followups.escalate_all(conn, now, calendar, cfg.followup)
    return report


async def _correlate_day(
    engine: AsyncEngine,
    hall: str,
    day: dt.date,
    marked_at: dt.datetime,
    cfg: CorrelationConfig,
    calendar: WorkCalendar,
    now: dt.datetime,
    report: RunReport,
) -> None:
    async with engine.connect() as conn:
        inputs = await store.load_day(conn, hall, day, cfg)
        setup = (await halls.stored_setups(conn, [hall])).get(hall)
    # the pure part runs in a worker thread: the aggregator's ingest shares this event loop
    built, outcome = await asyncio.to_thread(_compute, hall, inputs, cfg)
    roster = halls.with_defaults(
        hall, setup, ((c.window, c.department) for c in inputs.cases)
    ).windows
    async with engine.begin() as conn:
        await store.lock_for_write(conn)
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
        )
        if complete:
            await intake.clear_dirty(conn, hall, day, marked_at)
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
    """The aggregator's background job: a run every ``interval`` seconds."""
    cfg = cfg or CorrelationConfig()
    calendar = calendar or WorkCalendar()
    while True:
        try:
            report = await run_once(engine, cfg=cfg, calendar=calendar)
            if report.reissued:
                log.info("correlation: %d results re-issued", report.reissued)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("correlation run failed; retrying in %.0f s", interval)
        await asyncio.sleep(interval)


def job(engine: AsyncEngine, config: CentralConfig) -> Callable[[], Awaitable[None]]:
    """The aggregator's job, its settings read now: a bad ``correlation.yaml`` or calendar
    override file stops the start with the file and line (ConfigError, CalendarConfigError),
    never a background task later."""
    cfg = load_config(config.data_dir)
    calendar = calendar_of(config)
    return functools.partial(run_forever, engine, cfg=cfg, calendar=calendar)
