"""The hall-day work queue (``correlation_dirty``): marked by the intake scan, claimed by the
correlation workers of every aggregator process.

- Marking is an upsert: a hall-day with new input is one row however many arrivals it had, and
  each marking bumps its ``generation``.
- A worker claims a few free rows at a time with a lease (PostgreSQL: ``FOR UPDATE SKIP
  LOCKED``, so workers never wait on each other's rows; SQLite has one process and the same
  statement without it). A worker killed mid-work holds its rows only until the lease ends.
- The hall-day's results are written in one transaction that first re-reads its row, locked:
  if another worker took it over (the lease ran out) the work is dropped; the row is deleted
  only if its generation is still the one claimed, otherwise it is freed for another run, so
  input that arrived during the computation is never lost.

The functions take the queue table (``correlation_dirty`` unless told): any table of the same
shape, keyed by hall and day, is shared out the same way (gaming detection's day and week
queues).

Leases run on the database's clock (PostgreSQL ``now()``), so aggregator hosts whose clocks
disagree still agree on when a lease ends.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, Table, and_, delete, func, or_, select, tuple_, update
from sqlalchemy.ext.asyncio import AsyncConnection

from central.correlation.store import chunks
from central.store.db import dialect_insert
from central.store.schema_correlation import correlation_dirty

RETRY_S = 30.0  # a hall-day whose computation failed waits this long before the next try


@dataclass(frozen=True, slots=True)
class Claim:
    hall: str
    day: dt.date
    generation: int


async def db_now(conn: AsyncConnection) -> dt.datetime:
    """The time leases are measured in: the database server's on PostgreSQL."""
    if conn.dialect.name == "postgresql":
        value = (await conn.execute(select(func.now()))).scalar_one()
        assert isinstance(value, dt.datetime)
        return value.astimezone(dt.UTC)
    return dt.datetime.now(dt.UTC)


def _upsert(dialect: str, queue: Table) -> Any:
    stmt = dialect_insert(dialect, queue)
    return stmt.on_conflict_do_update(
        index_elements=[queue.c.hall_id, queue.c.business_day],
        set_={"generation": queue.c.generation + 1},
    )


async def mark(
    conn: AsyncConnection,
    hall_days: Iterable[tuple[str, dt.date]],
    *,
    queue: Table = correlation_dirty,
) -> int:
    """Each hall-day gets one row (dirty since now) or its row's generation bumped; sorted, so
    that two markers lock rows in the same order."""
    now = dt.datetime.now(dt.UTC)
    rows = [
        {"hall_id": hall, "business_day": day, "marked_at": now, "generation": 1}
        for hall, day in sorted(set(hall_days))
    ]
    stmt = _upsert(conn.dialect.name, queue)
    for chunk in chunks(rows):
        await conn.execute(stmt, list(chunk))
    return len(rows)


async def claim(
    conn: AsyncConnection,
    worker: str,
    limit: int,
    lease_s: float,
    *,
    queue: Table = correlation_dirty,
) -> list[Claim]:
    """Up to ``limit`` free hall-days (never claimed, or their lease over), oldest first,
    now held by ``worker`` for ``lease_s``."""
    now = await db_now(conn)
    free = (
        select(queue.c.hall_id, queue.c.business_day)
        .where(or_(queue.c.lease_until.is_(None), queue.c.lease_until < now))
        .order_by(queue.c.marked_at, queue.c.business_day, queue.c.hall_id)
        .limit(limit)
    )
    if conn.dialect.name == "postgresql":
        free = free.with_for_update(skip_locked=True)
    rows = (
        await conn.execute(
            update(queue)
            .where(tuple_(queue.c.hall_id, queue.c.business_day).in_(free))
            .values(claimed_by=worker, lease_until=now + dt.timedelta(seconds=lease_s))
            .returning(queue.c.hall_id, queue.c.business_day, queue.c.generation)
        )
    ).all()
    return sorted((Claim(r.hall_id, r.business_day, r.generation) for r in rows), key=_order)


def _order(c: Claim) -> tuple[dt.date, str]:
    return c.day, c.hall


async def extend(
    conn: AsyncConnection,
    worker: str,
    claims: list[Claim],
    lease_s: float,
    *,
    queue: Table = correlation_dirty,
) -> None:
    """A worker still busy with a batch keeps the rest of it."""
    if not claims:
        return
    now = await db_now(conn)
    await conn.execute(
        update(queue)
        .where(
            tuple_(queue.c.hall_id, queue.c.business_day).in_([(c.hall, c.day) for c in claims]),
            queue.c.claimed_by == worker,
        )
        .values(lease_until=now + dt.timedelta(seconds=lease_s))
    )


def _row(c: Claim, queue: Table) -> ColumnElement[bool]:
    return and_(queue.c.hall_id == c.hall, queue.c.business_day == c.day)


async def holds(
    conn: AsyncConnection, worker: str, c: Claim, *, queue: Table = correlation_dirty
) -> bool:
    """Inside the write transaction: the row is still this worker's (locked until commit on
    PostgreSQL, so nobody takes it over between this check and the commit)."""
    query = select(queue.c.generation).where(_row(c, queue), queue.c.claimed_by == worker)
    if conn.dialect.name == "postgresql":
        query = query.with_for_update()
    return (await conn.execute(query)).first() is not None


async def finish(
    conn: AsyncConnection,
    worker: str,
    c: Claim,
    *,
    complete: bool,
    queue: Table = correlation_dirty,
) -> bool:
    """In the write transaction, after the results: delete the row if nothing newer came in
    (True), else free it for the next worker. ``complete`` False (a follow-up item could not be
    dated yet) frees it for a later retry instead."""
    if complete:
        done = await conn.execute(
            delete(queue).where(
                _row(c, queue), queue.c.claimed_by == worker, queue.c.generation == c.generation
            )
        )
        if done.rowcount:
            return True
    await release(conn, worker, c, retry_s=0.0 if complete else RETRY_S, queue=queue)
    return False


async def release(
    conn: AsyncConnection,
    worker: str,
    c: Claim,
    *,
    retry_s: float,
    queue: Table = correlation_dirty,
) -> None:
    """Give a hall-day back: free now, or after ``retry_s`` (a computation that failed)."""
    until = None if retry_s <= 0 else await db_now(conn) + dt.timedelta(seconds=retry_s)
    await conn.execute(
        update(queue)
        .where(_row(c, queue), queue.c.claimed_by == worker)
        .values(claimed_by=None, lease_until=until)
    )


async def pending(conn: AsyncConnection, *, queue: Table = correlation_dirty) -> int:
    """Hall-days waiting or being computed."""
    return int((await conn.execute(select(func.count()).select_from(queue))).scalar_one())


__all__ = ["Claim", "claim", "extend", "finish", "holds", "mark", "pending", "release"]
