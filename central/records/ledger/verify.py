"""Verification: recompute every chain, check each chained row against its hash and the heads
against the sealed and published ones."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

from sqlalchemy import func, select, tuple_
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from central.records.ledger.chain import (
    CASE_SETTLE,
    CHUNK,
    Record,
    cases_with_suspensions,
    chain_next,
    genesis,
    row_hash,
)
from central.records.ledger.findings import Finding, Problem, Report
from central.records.ledger.heads import Head, sealed_heads
from central.records.ledger.unchained import (
    case_mark,
    count_pending_evaluations,
    find_early_evaluations,
    find_unchained_cases,
    find_unchained_evaluations,
)
from central.store.schema import (
    case_revisions,
    events,
)
from central.store.schema_tsledger import ledger_entries


async def verify(
    engine: AsyncEngine,
    hall: str | None = None,
    day: dt.date | None = None,
    published: Sequence[Head] = (),
) -> Report:
    """Recompute every chain in scope and every chained row; find rows no chain holds."""
    report = Report([])
    async with engine.connect() as conn:
        if conn.dialect.name == "postgresql":  # one snapshot for the whole check
            await conn.execution_options(isolation_level="REPEATABLE READ")
        scope = []
        if hall is not None:
            scope.append(ledger_entries.c.hall_id == hall)
        if day is not None:
            scope.append(ledger_entries.c.day == day)
        chains = (
            await conn.execute(
                select(ledger_entries.c.hall_id, ledger_entries.c.day)
                .where(*scope)
                .group_by(ledger_entries.c.hall_id, ledger_entries.c.day)
                .order_by(ledger_entries.c.day, ledger_entries.c.hall_id)
            )
        ).all()
        for chain in chains:
            entries = (
                await conn.execute(
                    select(ledger_entries)
                    .where(
                        ledger_entries.c.hall_id == chain.hall_id, ledger_entries.c.day == chain.day
                    )
                    .order_by(ledger_entries.c.position)
                )
            ).all()
            report.chains += 1
            report.entries += len(entries)
            report.findings += _check_chain(chain.hall_id, chain.day, entries)
            report.findings += await _check_rows(conn, entries)
        report.findings += await find_unchained_evaluations(conn, hall, day)
        early, unexplained = await find_early_evaluations(conn, hall, day)
        report.findings += unexplained
        unchained_cases, pending = await find_unchained_cases(conn, hall, day)
        report.findings += unchained_cases
        report.pending += pending + early
        report.pending += await count_pending_evaluations(conn, hall)
        report.findings += await _check_heads(conn, published)
        report.findings += await _check_heads(conn, await sealed_heads(conn, hall, day), "sealed")
    return report


def _check_chain(hall: str, day: dt.date, entries: Sequence[Any]) -> list[Finding]:
    found = []
    previous = genesis(hall, day)
    for expected, entry in enumerate(entries, start=1):
        problem = None
        if entry.position != expected:
            problem = f"entry {expected} is missing (next is {entry.position})"
        elif chain_next(previous, entry.row_hash) != entry.chain_hash:
            problem = "entry does not follow from the one before"
        if problem:
            found.append(
                Finding(
                    Problem.CHAIN_BROKEN,
                    Record(entry.record),
                    entry.ref,
                    entry.ref_no,
                    hall,
                    day,
                    entry.position,
                    problem,
                )
            )
        previous = entry.chain_hash  # resynchronise, so that each break is reported once
    return found


async def _check_rows(conn: AsyncConnection, entries: Sequence[Any]) -> list[Finding]:
    found: list[Finding] = []
    by_record: dict[Record, list[Any]] = {}
    for entry in entries:
        by_record.setdefault(Record(entry.record), []).append(entry)

    def finding(problem: Problem, entry: Any, detail: str) -> Finding:
        return Finding(
            problem,
            Record(entry.record),
            entry.ref,
            entry.ref_no,
            entry.hall_id,
            entry.day,
            entry.position,
            detail,
        )

    for record, table, cols in (
        (Record.EVALUATION, events, (events.c.gateway_id, events.c.seq)),
        (
            Record.CASE_REVISION,
            case_revisions,
            (case_revisions.c.case_no, case_revisions.c.revision),
        ),
    ):
        todo = by_record.get(record, [])
        for start in range(0, len(todo), CHUNK):
            chunk = todo[start : start + CHUNK]
            rows = {
                (r[cols[0].name], r[cols[1].name]): r
                for r in (
                    await conn.execute(
                        select(table).where(tuple_(*cols).in_([(e.ref, e.ref_no) for e in chunk]))
                    )
                ).mappings()
            }
            for entry in chunk:
                row = rows.get((entry.ref, entry.ref_no))
                if row is None:
                    found.append(finding(Problem.DELETED, entry, "the row is gone"))
                elif row_hash(record, row) != entry.row_hash:
                    found.append(
                        finding(Problem.CHANGED, entry, "the row differs from what was chained")
                    )

    todo = by_record.get(Record.CASE, [])
    for start in range(0, len(todo), CHUNK):
        chunk = todo[start : start + CHUNK]
        numbers = sorted({e.ref for e in chunk})
        newest = dict(
            (
                await conn.execute(
                    select(ledger_entries.c.ref, func.max(ledger_entries.c.ref_no))
                    .where(
                        ledger_entries.c.record == Record.CASE.value,
                        ledger_entries.c.ref.in_(numbers),
                    )
                    .group_by(ledger_entries.c.ref)
                )
            ).all()
        )
        current = await cases_with_suspensions(conn, numbers)
        for entry in chunk:
            if entry.ref_no != newest.get(entry.ref):
                continue  # an earlier state of the case: the row has moved on by a revision
            case = current.get(entry.ref)
            if case is None:
                found.append(finding(Problem.DELETED, entry, "the case row is gone"))
            elif case[0]["revision"] != entry.ref_no:
                if case[0]["revision"] < entry.ref_no or not await _revision_pending(
                    conn, entry.ref, case[0]["revision"]
                ):
                    found.append(
                        finding(
                            Problem.CHANGED,
                            entry,
                            f"the case row is at revision "
                            f"{case[0]['revision']}, which the ledger does not hold",
                        )
                    )
            elif row_hash(Record.CASE, case[0], case[1]) != entry.row_hash:
                found.append(
                    finding(
                        Problem.CHANGED,
                        entry,
                        "the case row or its suspensions differ from what was chained",
                    )
                )
    return found


async def _revision_pending(conn: AsyncConnection, case_no: str, revision: int) -> bool:
    """Is this revision stored recently enough that the job may simply not have run yet?"""
    row = (
        await conn.execute(
            select(case_revisions.c.received_at).where(
                case_revisions.c.case_no == case_no, case_revisions.c.revision == revision
            )
        )
    ).first()
    return row is not None and await _within_settle(conn, row.received_at)


async def _within_settle(conn: AsyncConnection, received_at: dt.datetime) -> bool:
    mark = await case_mark(conn)
    return mark is None or received_at > mark - CASE_SETTLE


async def _check_heads(
    conn: AsyncConnection, published: Sequence[Head], what: str = "published"
) -> list[Finding]:
    found, seen = [], set()
    for head in published:
        if head in seen:  # the same head from the table and from a file
            continue
        seen.add(head)
        row = (
            await conn.execute(
                select(ledger_entries.c.chain_hash).where(
                    ledger_entries.c.hall_id == head.hall,
                    ledger_entries.c.day == head.day,
                    ledger_entries.c.position == head.entries,
                )
            )
        ).first()
        if row is None:
            detail = f"the chain no longer has the {head.entries} entries {what}"
        elif row.chain_hash != head.head:
            detail = f"entry {head.entries} no longer ends in the {what} head"
        else:
            continue
        found.append(
            Finding(
                Problem.HEAD_MISMATCH,
                None,
                f"chain {head.hall}/{head.day}",
                None,
                head.hall,
                head.day,
                head.entries,
                detail,
            )
        )
    return found
