"""Rows the ledger does not hold: records put in the database behind the application's back,
and the evaluations that arrived early and are not chained yet."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import and_, exists, func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from central.records.ledger.chain import (
    CASE_SETTLE,
    EVALUATION_KIND,
    STATE_SLACK,
    Record,
    revision_hall,
)
from central.records.ledger.findings import Finding, Problem
from central.rules.workdays import business_date, day_start
from central.store.schema import (
    case_revisions,
    cases,
    events,
    gateways,
    pending_ranges,
)
from central.store.schema_tsledger import ledger_entries, ledger_progress


async def case_mark(conn: AsyncConnection) -> dt.datetime | None:
    return (
        await conn.execute(
            select(ledger_progress.c.through_at).where(
                ledger_progress.c.source == "case_revisions", ledger_progress.c.ref == ""
            )
        )
    ).scalar()


def _day_bounds(day: dt.date) -> tuple[dt.datetime, dt.datetime]:
    return day_start(day), day_start(day + dt.timedelta(days=1))


def _events_in(query: Any, hall: str | None, day: dt.date | None) -> Any:
    if hall is not None:
        query = query.where(events.c.hall_id == hall)
    if day is not None:
        start, end = _day_bounds(day)
        query = query.where(events.c.received_at >= start, events.c.received_at < end)
    return query


def _chained_event() -> Any:
    """The event row in hand has its ledger entry."""
    return exists().where(
        ledger_entries.c.record == Record.EVALUATION.value,
        ledger_entries.c.ref == events.c.gateway_id,
        ledger_entries.c.ref_no == events.c.seq,
    )


def _arrived_early() -> Any:
    """The event row in hand lies in a range that arrived beyond a gap."""
    return exists().where(
        pending_ranges.c.gateway_id == events.c.gateway_id,
        pending_ranges.c.first_seq <= events.c.seq,
        pending_ranges.c.last_seq >= events.c.seq,
    )


async def find_unchained_evaluations(
    conn: AsyncConnection, hall: str | None, day: dt.date | None
) -> list[Finding]:
    """evaluator.key rows no entry holds: at or below the ledger's watermark, or beyond what the
    gateway has committed and outside every range that arrived early."""
    progress = ledger_progress
    chained = _chained_event()
    early = _arrived_early()
    watermark = func.coalesce(progress.c.through_seq, 0)
    query = (
        select(
            events.c.gateway_id,
            events.c.seq,
            events.c.hall_id,
            events.c.received_at,
            watermark.label("through"),
            gateways.c.committed_through,
        )
        .select_from(
            events.join(gateways, gateways.c.gateway_id == events.c.gateway_id).outerjoin(
                progress, and_(progress.c.source == "events", progress.c.ref == events.c.gateway_id)
            )
        )
        .where(
            events.c.kind == EVALUATION_KIND,
            ~chained,
            (events.c.seq <= watermark) | ((events.c.seq > gateways.c.committed_through) & ~early),
        )
        .order_by(events.c.gateway_id, events.c.seq)
    )
    query = _events_in(query, hall, day)
    out = []
    for r in (await conn.execute(query)).all():
        why = (
            "stored below the ledger's watermark without an entry"
            if r.seq <= r.through
            else f"stored beyond the gateway's committed sequence ({r.committed_through})"
        )
        out.append(
            Finding(
                Problem.NOT_IN_LEDGER,
                Record.EVALUATION,
                r.gateway_id,
                r.seq,
                r.hall_id,
                business_date(r.received_at),
                None,
                why,
            )
        )
    return out


async def find_early_evaluations(
    conn: AsyncConnection, hall: str | None, day: dt.date | None
) -> tuple[int, list[Finding]]:
    """``evaluator.key`` rows beyond the committed sequence inside a range that arrived early:
    how many the gateway's own words explain (not chained yet), and a finding for each they
    do not."""
    early = _arrived_early()
    chained = _chained_event()
    query = (
        select(
            events.c.gateway_id,
            events.c.seq,
            events.c.hall_id,
            events.c.boot,
            events.c.mono_ns,
            events.c.utc,
            events.c.synced,
            events.c.received_at,
            gateways.c.state,
        )
        .select_from(events.join(gateways, gateways.c.gateway_id == events.c.gateway_id))
        .where(
            events.c.kind == EVALUATION_KIND,
            ~chained,
            early,
            events.c.seq > gateways.c.committed_through,
        )
        .order_by(events.c.gateway_id, events.c.seq)
    )
    query = _events_in(query, hall, day)
    explained, found = 0, []
    for r in (await conn.execute(query)).all():
        why = _beyond_reported_head(r) or await _out_of_clock_order(conn, r)
        if why is None:
            explained += 1
            continue
        found.append(
            Finding(
                Problem.NOT_IN_LEDGER,
                Record.EVALUATION,
                r.gateway_id,
                r.seq,
                r.hall_id,
                business_date(r.received_at),
                None,
                f"stored ahead of the committed sequence, but {why}",
            )
        )
    return explained, found


def _beyond_reported_head(r: Any) -> str | None:
    """The gateway's last state report was made (by its own synchronised clock, in the same
    boot) after this event's time, yet its journal ended below the event's seq: the gateway
    never journaled it. The state's own clock, not its arrival: a retained state can arrive
    late."""
    state = r.state if isinstance(r.state, dict) else {}
    journal = state.get("journal")
    if not isinstance(journal, dict):
        journal = {}
    head = journal.get("head_seq")
    try:
        made = dt.datetime.fromisoformat(str(state.get("utc")))
    except ValueError:
        return None
    if (
        isinstance(head, int)
        and r.seq > head
        and state.get("boot") == r.boot
        and state.get("synced") is True
        and r.synced
        and made.tzinfo is not None
        and made > r.utc + STATE_SLACK
    ):
        return f"the gateway reported its journal ending at {head} after it"
    return None


async def _out_of_clock_order(conn: AsyncConnection, r: Any) -> str | None:
    """Within one boot the journal numbers events in the order of the gateway's monotonic
    clock: a row that the clock puts before the last event its gateway committed (the rows
    ingest stored without a gap, which the ledger trusts) was not numbered there."""
    last = (
        await conn.execute(
            select(events.c.seq, events.c.boot, events.c.mono_ns)
            .join(gateways, gateways.c.gateway_id == events.c.gateway_id)
            .where(
                events.c.gateway_id == r.gateway_id, events.c.seq <= gateways.c.committed_through
            )
            .order_by(events.c.seq.desc())
            .limit(1)
        )
    ).first()
    if last is not None and last.boot == r.boot and last.mono_ns > r.mono_ns:
        return f"its gateway clock puts it before seq {last.seq} of the same boot"
    return None


async def count_pending_evaluations(conn: AsyncConnection, hall: str | None) -> int:
    progress = ledger_progress
    query = (
        select(func.count())
        .select_from(
            events.join(gateways, gateways.c.gateway_id == events.c.gateway_id).outerjoin(
                progress, and_(progress.c.source == "events", progress.c.ref == events.c.gateway_id)
            )
        )
        .where(
            events.c.kind == EVALUATION_KIND,
            events.c.seq > func.coalesce(progress.c.through_seq, 0),
            events.c.seq <= gateways.c.committed_through,
        )
    )
    if hall is not None:
        query = query.where(events.c.hall_id == hall)
    return int((await conn.execute(query)).scalar() or 0)


async def find_unchained_cases(
    conn: AsyncConnection, hall: str | None, day: dt.date | None
) -> tuple[list[Finding], int]:
    mark = await case_mark(conn)
    chained = exists().where(
        ledger_entries.c.record == Record.CASE_REVISION.value,
        ledger_entries.c.ref == case_revisions.c.case_no,
        ledger_entries.c.ref_no == case_revisions.c.revision,
    )
    query = (
        select(case_revisions, cases.c.hall_id)
        .select_from(case_revisions.outerjoin(cases, cases.c.case_no == case_revisions.c.case_no))
        .where(~chained)
    )
    if day is not None:
        start, end = _day_bounds(day)
        query = query.where(
            case_revisions.c.received_at >= start, case_revisions.c.received_at < end
        )
    found, pending = [], 0
    for r in (
        await conn.execute(query.order_by(case_revisions.c.case_no, case_revisions.c.revision))
    ).mappings():
        row_hall = revision_hall(r, {"hall_id": r["hall_id"]} if r["hall_id"] else None)
        if hall is not None and row_hall != hall:
            continue
        if mark is None or r["received_at"] > mark - CASE_SETTLE:
            pending += 1
            continue
        found.append(
            Finding(
                Problem.NOT_IN_LEDGER,
                Record.CASE_REVISION,
                r["case_no"],
                r["revision"],
                row_hall,
                business_date(r["received_at"]),
                None,
                "a revision older than the ledger's watermark without an entry",
            )
        )
    # a case the case store wrote always has its revision beside it
    orphan = (
        select(cases.c.case_no, cases.c.revision, cases.c.hall_id, cases.c.received_at)
        .where(
            ~exists().where(
                case_revisions.c.case_no == cases.c.case_no,
                case_revisions.c.revision == cases.c.revision,
            ),
            ~exists().where(
                ledger_entries.c.record == Record.CASE.value,
                ledger_entries.c.ref == cases.c.case_no,
            ),
        )
        .order_by(cases.c.case_no)
    )
    if hall is not None:
        orphan = orphan.where(cases.c.hall_id == hall)
    for case in (await conn.execute(orphan)).all():
        if day is not None and business_date(case.received_at) != day:
            continue
        found.append(
            Finding(
                Problem.NOT_IN_LEDGER,
                Record.CASE,
                case.case_no,
                case.revision,
                case.hall_id,
                business_date(case.received_at),
                None,
                "a case row without its revision record",
            )
        )
    return found, pending
