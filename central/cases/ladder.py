"""The time-limit ladder on stored cases: record each step when it happens.

``run_once(engine, today, …)`` derives the ladder (``central.rules.timelimit.steps``) up to the
close of ``today`` for every case that may have moved: never derived, revised since, open and not
yet derived for ``today``, or derived under other rules. Each step not yet recorded becomes a row
in ``case_steps`` (append-only; the key (case, at, stage) makes a second run for the same day add
nothing) and ``case_ladder`` gets the case's stage on ``today``. A completed or withdrawn case is
settled once its last step is recorded and is not looked at again unless it is revised.

``run_forever`` runs it every few minutes, which also makes the first run after midnight
(Asia/Shanghai) the nightly one: every open case moves to the new day then. Several aggregator
processes on PostgreSQL share the work by hall: the halls fall into shares, each derived by one
process at a time under its advisory lock; the writes are idempotent anyway.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import json
import logging
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import and_, func, not_, or_, select, text, true
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from central.cases.store import clock_of
from central.rules.indicators import CaseStatus
from central.rules.timelimit import (
    DEFAULT_LADDER,
    ClockSuspended,
    LadderConfig,
    LadderStage,
    days_over,
    deadline,
    stage_on,
    steps,
)
from central.rules.workdays import WorkCalendar, business_date, day_start, load_overrides
from central.store.db import dialect_insert, insert_ignore
from central.store.schema import case_suspensions, cases
from central.store.schema_cases import case_ladder, case_steps
from hallkit.clock import utc_now

log = logging.getLogger(__name__)

CHUNK = 500  # cases per transaction
EVERY_S = 120.0
# a case's received_at is stamped before its transaction commits: look back this far
SINCE_SLACK = dt.timedelta(minutes=5)
AFTER_MIDNIGHT_S = 30.0
# pg_try_advisory_lock(LOCK_CLASS, share): the first 4 bytes of sha256("hallwatch.case_ladder")
LOCK_CLASS = int.from_bytes(
    hashlib.sha256(b"hallwatch.case_ladder").digest()[:4], "big", signed=True
)
SHARES = 8  # PostgreSQL: the halls' cases in this many shares, one process on each at a time

OVERDUE_STAGES = frozenset(
    {
        LadderStage.YELLOW_CARD,
        LadderStage.RED_CARD,
        LadderStage.SUPERVISION_LETTER,
        LadderStage.DONE_LATE,
    }
)


def rules_digest(calendar: WorkCalendar, config: LadderConfig) -> str:
    """Identifies the calendar and thresholds a ladder was derived under."""
    doc = {
        "ladder": config.model_dump(),
        "assume_weekends": calendar.assume_weekends,
        "overrides": calendar.overrides.model_dump(mode="json"),
    }
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:16]


def calendar_from(overrides: Any) -> WorkCalendar:
    """The working-day calendar for a configured override file (None: the library only)."""
    return WorkCalendar(load_overrides(overrides) if overrides is not None else None)


@dataclass(slots=True)
class LadderRun:
    today: dt.date
    cases: int = 0
    steps_recorded: int = 0
    failed: dict[str, str] = field(default_factory=dict)  # case_no → why (e.g. unknown year)
    skipped: bool = False  # another process holds a share's lock
    done_shares: set[int] = field(default_factory=set)
    skipped_shares: set[int] = field(default_factory=set)


@dataclass(frozen=True, slots=True)
class Standing:
    """Where one case stands on a day (what ``case_ladder`` stores)."""

    stage: LadderStage | None  # None: withdrawn, the ladder stopped
    deadline: dt.date | None  # None while the clock is stopped
    days_over: int | None
    overdue: bool
    settled: bool


def standing(
    clock: Any, status: str, today: dt.date, calendar: WorkCalendar, config: LadderConfig
) -> Standing:
    """The stage, deadline and position of a case on ``today`` (pure)."""
    try:
        due: dt.date | None = deadline(clock, calendar)
    except ClockSuspended:
        due = None
    position = days_over(clock, today, calendar)
    if status == CaseStatus.WITHDRAWN.value:
        return Standing(None, due, position, False, True)
    stage = stage_on(clock, today, calendar, config)
    return Standing(stage, due, position, stage in OVERDUE_STAGES or position > 0, stage.is_done)


async def run_once(
    engine: AsyncEngine,
    today: dt.date,
    calendar: WorkCalendar,
    config: LadderConfig = DEFAULT_LADDER,
    *,
    now: dt.datetime | None = None,
    since: dt.datetime | Mapping[int, dt.datetime] | None = None,
) -> LadderRun:
    """Record the ladder steps up to the close of ``today`` (a business date).

    ``since`` narrows the search to cases received (created or revised) since then plus the
    open cases not yet moved to ``today``, both found through an index; None looks at every
    case, as the first run of a process must (its calendar or thresholds may be new). A mapping
    gives it per share of halls (a share missing from it: every case of the share).

    On PostgreSQL the halls are split into ``SHARES`` shares by a hash of the hall, each
    derived under its own advisory lock: aggregator processes running at once take different
    shares, and a share another process holds is skipped (``run.skipped_shares``)."""
    now = now or utc_now()
    run = LadderRun(today)
    if engine.dialect.name != "postgresql":
        await _run(engine, run, calendar, config, now, _since_of(since, 0), None)
        run.done_shares.add(0)
    else:
        first = os.getpid() % SHARES  # processes start on different shares
        for share in [(first + i) % SHARES for i in range(SHARES)]:
            async with engine.connect() as lock:
                key = {"c": LOCK_CLASS, "s": share}
                if not await lock.scalar(text("SELECT pg_try_advisory_lock(:c, :s)"), key):
                    run.skipped_shares.add(share)
                    continue
                try:
                    await _run(engine, run, calendar, config, now, _since_of(since, share), share)
                    run.done_shares.add(share)
                finally:
                    await lock.execute(text("SELECT pg_advisory_unlock(:c, :s)"), key)
                    await lock.commit()
    run.skipped = bool(run.skipped_shares)
    if run.failed:
        first_failed = next(iter(run.failed.items()))
        log.warning(
            "ladder %s: %d cases could not be derived, e.g. %s: %s",
            today,
            len(run.failed),
            *first_failed,
        )
    log.info(
        "ladder %s: %d cases looked at, %d steps recorded%s",
        today,
        run.cases,
        run.steps_recorded,
        f", {len(run.skipped_shares)} shares left to other processes" if run.skipped else "",
    )
    return run


def _since_of(
    since: dt.datetime | Mapping[int, dt.datetime] | None, share: int
) -> dt.datetime | None:
    return since.get(share) if isinstance(since, Mapping) else since


def _in_share(share: int) -> Any:
    """PostgreSQL: the cases whose hall hashes to ``share``."""
    return func.hashtext(cases.c.hall_id).op("&")(0x7FFFFFFF) % SHARES == share


def _due(today: dt.date, digest: str) -> Any:
    """Cases whose ladder may have moved since it was last derived."""
    lad = case_ladder.c
    return and_(
        cases.c.accepted_at < day_start(today + dt.timedelta(days=1)),
        or_(
            lad.case_no.is_(None),
            lad.revision != cases.c.revision,
            and_(not_(lad.settled), or_(lad.as_of < today, lad.rules_digest != digest)),
        ),
    )


async def _run(
    engine: AsyncEngine,
    run: LadderRun,
    calendar: WorkCalendar,
    config: LadderConfig,
    now: dt.datetime,
    since: dt.datetime | None,
    share: int | None,
) -> None:
    digest = rules_digest(calendar, config)
    due = _due(run.today, digest)
    if share is not None:
        due = and_(_in_share(share), due)
    if since is None:
        scopes = [due]
    else:
        lad = case_ladder.c
        scopes = [
            and_(cases.c.received_at >= since, due),
            and_(
                lad.settled.is_(False),
                lad.as_of < run.today,
                cases.c.accepted_at < day_start(run.today + dt.timedelta(days=1)),
                true() if share is None else _in_share(share),
            ),
        ]
    for scope in scopes:
        await _run_scope(engine, run, scope, calendar, config, digest, now)


async def _run_scope(
    engine: AsyncEngine,
    run: LadderRun,
    scope: Any,
    calendar: WorkCalendar,
    config: LadderConfig,
    digest: str,
    now: dt.datetime,
) -> None:
    after = ""
    while True:
        query = (
            select(cases)
            .outerjoin(case_ladder, case_ladder.c.case_no == cases.c.case_no)
            .where(scope, cases.c.case_no > after)
            .order_by(cases.c.case_no)
            .limit(CHUNK)
        )
        async with engine.connect() as conn:
            rows = (await conn.execute(query)).all()
            if not rows:
                return
            numbers = [r.case_no for r in rows]
            held: dict[str, list[Any]] = {n: [] for n in numbers}
            for s in await conn.execute(
                select(case_suspensions).where(case_suspensions.c.case_no.in_(numbers))
            ):
                held[s.case_no].append(s)
        # pure and CPU-bound (~0.5 ms a case): off the event loop the ingest and API share
        step_rows, ladder_rows = await asyncio.to_thread(
            _derive, rows, held, run, calendar, config, digest, now
        )
        async with engine.begin() as conn:
            await _record(conn, numbers, step_rows, ladder_rows, run)
        after = rows[-1].case_no


def _derive(
    rows: Sequence[Any],
    held: dict[str, list[Any]],
    run: LadderRun,
    calendar: WorkCalendar,
    config: LadderConfig,
    digest: str,
    now: dt.datetime,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    step_rows: list[dict[str, Any]] = []
    ladder_rows: list[dict[str, Any]] = []
    for row in rows:
        run.cases += 1
        try:
            clock = clock_of(row, held[row.case_no])
            at = standing(clock, row.status, run.today, calendar, config)
            found = (
                []
                if row.status == CaseStatus.WITHDRAWN.value
                else steps(clock, run.today, calendar, config)
            )
        except ValueError as exc:  # UnknownYearError and data the rules refuse
            run.failed[row.case_no] = str(exc)
            continue
        step_rows += [
            {
                "case_no": row.case_no,
                "at": s.at,
                "stage": s.stage.value,
                "on_date": s.on_date,
                "days_over": s.days_over,
                "revision": row.revision,
                "recorded_at": now,
            }
            for s in found
        ]
        ladder_rows.append(
            {
                "case_no": row.case_no,
                "revision": row.revision,
                "rules_digest": digest,
                "as_of": run.today,
                "stage": at.stage.value if at.stage else None,
                "deadline": at.deadline,
                "days_over": at.days_over,
                "overdue": at.overdue,
                "settled": at.settled,
                "updated_at": now,
            }
        )
    return step_rows, ladder_rows


async def _record(
    conn: AsyncConnection,
    numbers: list[str],
    step_rows: list[dict[str, Any]],
    ladder_rows: list[dict[str, Any]],
    run: LadderRun,
) -> None:
    if conn.dialect.name == "sqlite":
        # the write lock first, so that the read below cannot go stale before the writes
        await conn.execute(text("UPDATE case_ladder SET as_of = as_of WHERE 0"))
    if step_rows:
        recorded = {
            (r.case_no, r.at, r.stage)
            for r in await conn.execute(
                select(case_steps.c.case_no, case_steps.c.at, case_steps.c.stage).where(
                    case_steps.c.case_no.in_(numbers)
                )
            )
        }
        new = [r for r in step_rows if (r["case_no"], r["at"], r["stage"]) not in recorded]
        if new:
            await conn.execute(insert_ignore(conn.dialect, case_steps), new)
            run.steps_recorded += len(new)
    if ladder_rows:
        await conn.execute(_upsert_ladder(conn.dialect.name), ladder_rows)


def _upsert_ladder(dialect: str) -> Any:
    stmt = dialect_insert(dialect, case_ladder)
    keep = {c.name: stmt.excluded[c.name] for c in case_ladder.c if c.name != "case_no"}
    return stmt.on_conflict_do_update(index_elements=["case_no"], set_=keep)


def seconds_to_next_run(now: dt.datetime, every_s: float) -> float:
    """Every ``every_s``, and just after midnight Asia/Shanghai whatever the interval."""
    midnight = day_start(business_date(now) + dt.timedelta(days=1))
    until_midnight = (midnight - now).total_seconds() + AFTER_MIDNIGHT_S
    return max(1.0, min(every_s, until_midnight))


async def run_forever(
    engine: AsyncEngine,
    calendar: WorkCalendar,
    config: LadderConfig = DEFAULT_LADDER,
    *,
    every_s: float = EVERY_S,
    clock: Callable[[], dt.datetime] = utc_now,
) -> None:
    since: dict[int, dt.datetime] = {}  # by share; the first run looks at every case
    while True:
        now = clock()
        try:
            run = await run_once(engine, business_date(now), calendar, config, now=now, since=since)
            for share in run.done_shares:
                since[share] = now - SINCE_SLACK
        except Exception:
            log.exception("ladder: run failed; trying again in %.0f s", every_s)
        await asyncio.sleep(seconds_to_next_run(clock(), every_s))


__all__ = [
    "LadderRun",
    "Standing",
    "calendar_from",
    "rules_digest",
    "run_forever",
    "run_once",
    "standing",
]
