"""Appending: chain what has been stored since the last pass, and the job that does it every
few seconds and seals the heads."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import and_, exists, insert, select, text, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from central.records.ledger.chain import (
    BATCH,
    CASE_SETTLE,
    CHUNK,
    EVALUATION_KIND,
    LOCK_KEY,
    Record,
    cases_with_suspensions,
    chain_next,
    genesis,
    revision_hall,
    row_hash,
)
from central.records.ledger.heads import seal_once
from central.rules.workdays import business_date
from central.store.db import insert_ignore
from central.store.schema import (
    case_revisions,
    events,
    gateways,
)
from central.store.schema_tsledger import ledger_entries, ledger_progress

log = logging.getLogger(__name__)


@dataclass(slots=True)
class _Chain:
    position: int
    head: str


class _Appender:
    def __init__(self, conn: AsyncConnection, day: dt.date, now: dt.datetime) -> None:
        self.conn, self.day, self.now = conn, day, now
        self.chains: dict[str, _Chain] = {}
        self.rows: list[dict[str, Any]] = []

    async def add(self, hall: str, record: Record, ref: str, ref_no: int, digest: str) -> None:
        chain = self.chains.get(hall)
        if chain is None:
            last = (
                await self.conn.execute(
                    select(ledger_entries.c.position, ledger_entries.c.chain_hash)
                    .where(ledger_entries.c.hall_id == hall, ledger_entries.c.day == self.day)
                    .order_by(ledger_entries.c.position.desc())
                    .limit(1)
                )
            ).first()
            chain = (
                _Chain(last.position, last.chain_hash)
                if last is not None
                else _Chain(0, genesis(hall, self.day))
            )
            self.chains[hall] = chain
        chain.position += 1
        chain.head = chain_next(chain.head, digest)
        self.rows.append(
            {
                "hall_id": hall,
                "day": self.day,
                "position": chain.position,
                "record": record.value,
                "ref": ref,
                "ref_no": ref_no,
                "row_hash": digest,
                "chain_hash": chain.head,
                "entered_at": self.now,
            }
        )

    async def flush(self) -> int:
        for start in range(0, len(self.rows), CHUNK):
            await self.conn.execute(insert(ledger_entries), self.rows[start : start + CHUNK])
        return len(self.rows)


async def append_once(
    engine: AsyncEngine, now: dt.datetime | None = None, batch: int = BATCH
) -> int:
    """Chain what was stored since the last pass; returns the number of entries added."""
    now = now or dt.datetime.now(dt.UTC)
    async with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            if not (
                await conn.execute(text("SELECT pg_try_advisory_xact_lock(:k)"), {"k": LOCK_KEY})
            ).scalar():
                return 0  # another aggregator process is appending
        else:
            # take SQLite's write lock before reading the chain heads: a read snapshot that
            # later writes fails once another connection has committed in between
            await conn.execute(
                update(ledger_progress)
                .where(text("1 = 0"))
                .values(through_seq=ledger_progress.c.through_seq)
            )
        appender = _Appender(conn, business_date(now), now)
        await _append_evaluations(conn, appender, batch)
        await _append_cases(conn, appender, batch)
        return await appender.flush()


async def _append_evaluations(conn: AsyncConnection, appender: _Appender, batch: int) -> None:
    progress = ledger_progress
    todo = (
        await conn.execute(
            select(gateways.c.gateway_id, gateways.c.committed_through, progress.c.through_seq)
            .outerjoin(
                progress,
                and_(progress.c.source == "events", progress.c.ref == gateways.c.gateway_id),
            )
            .order_by(gateways.c.gateway_id)
        )
    ).all()
    for gw in todo:
        through = gw.through_seq or 0
        if gw.committed_through <= through:
            continue
        rows = (
            (
                await conn.execute(
                    select(events)
                    .where(
                        events.c.gateway_id == gw.gateway_id,
                        events.c.seq > through,
                        events.c.seq <= gw.committed_through,
                        events.c.kind == EVALUATION_KIND,
                    )
                    .order_by(events.c.seq)
                    .limit(batch)
                )
            )
            .mappings()
            .all()
        )
        for row in rows:
            await appender.add(
                row["hall_id"],
                Record.EVALUATION,
                row["gateway_id"],
                row["seq"],
                row_hash(Record.EVALUATION, row),
            )
        new_through = rows[-1]["seq"] if len(rows) == batch else gw.committed_through
        await _set_progress(conn, "events", gw.gateway_id, through_seq=new_through)


async def _append_cases(conn: AsyncConnection, appender: _Appender, batch: int) -> None:
    mark = (
        await conn.execute(
            select(ledger_progress.c.through_at).where(
                ledger_progress.c.source == "case_revisions", ledger_progress.c.ref == ""
            )
        )
    ).scalar()
    chained = exists().where(
        ledger_entries.c.record == Record.CASE_REVISION.value,
        ledger_entries.c.ref == case_revisions.c.case_no,
        ledger_entries.c.ref_no == case_revisions.c.revision,
    )
    query = (
        select(case_revisions)
        .where(~chained)
        .order_by(case_revisions.c.received_at, case_revisions.c.case_no, case_revisions.c.revision)
        .limit(batch)
    )
    if mark is not None:
        query = query.where(case_revisions.c.received_at > mark - CASE_SETTLE)
    revisions = (await conn.execute(query)).mappings().all()
    if not revisions:
        return
    numbers = sorted({r["case_no"] for r in revisions})
    current = await cases_with_suspensions(conn, numbers)
    for rev in revisions:
        case = current.get(rev["case_no"])
        hall = revision_hall(rev, case[0] if case else None)
        await appender.add(
            hall,
            Record.CASE_REVISION,
            rev["case_no"],
            rev["revision"],
            row_hash(Record.CASE_REVISION, rev),
        )
        if case is not None and case[0]["revision"] == rev["revision"]:
            await appender.add(
                case[0]["hall_id"],
                Record.CASE,
                rev["case_no"],
                rev["revision"],
                row_hash(Record.CASE, case[0], case[1]),
            )
    newest = max(r["received_at"] for r in revisions)
    if mark is None or newest > mark:
        await _set_progress(conn, "case_revisions", "", through_at=newest)


async def _set_progress(conn: AsyncConnection, source: str, ref: str, **values: Any) -> None:
    await conn.execute(
        insert_ignore(conn, ledger_progress),
        [{"source": source, "ref": ref, "through_seq": 0, "through_at": None}],
    )
    await conn.execute(
        update(ledger_progress)
        .where(ledger_progress.c.source == source, ledger_progress.c.ref == ref)
        .values(**values)
    )


async def run_forever(
    engine: AsyncEngine,
    interval_s: float = 2.0,
    *,
    seal_every_s: float = 300.0,
    seal_file: Path | None = None,
) -> None:
    """The aggregator's background job: chain new records every few seconds, seal the chains'
    heads every ``seal_every_s``."""
    loop = asyncio.get_running_loop()
    next_seal = loop.time() + seal_every_s
    while True:
        try:
            added = await append_once(engine)
            if loop.time() >= next_seal:
                await seal_once(engine, mirror=seal_file)
                next_seal = loop.time() + seal_every_s
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("ledger: a pass failed; trying again")
            added = 0
        await asyncio.sleep(0 if added >= BATCH else interval_s)
