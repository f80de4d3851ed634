# Long module: the scan and its two forms (one transaction, or in parts of whole halls) share
# the indexing, clock repair and resent placement that must stay one unit per gateway.
"""Correlation's intake: finding the hall-days with new input and marking them in the work
queue (``central.correlation.workqueue``) for the workers to recompute.

Finding new input without trusting anyone's clock ordering: events and cases are scanned by
``received_at`` from a watermark (the highest one seen by the previous scan) less a margin, so
a transaction that committed after a later one was scanned is still seen; an event already
known (``correlation_event_days``) is skipped, so the overlap costs a little reading, nothing
else. A boot whose clock offset arrives later (its synchronised events were held back by an
uplink cut) moves its unsynchronised events to their repaired time: both the day they were on
and the day they move to are recomputed.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import and_, bindparam, delete, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from central.correlation import workqueue
from central.correlation.config import CorrelationConfig
from central.correlation.machine_clock import ClockSample, machine_datetime, place
from central.correlation.model import TimeSource, event_time
from central.correlation.store import chunks
from central.rules.workdays import business_date
from central.store.db import insert_ignore
from central.store.schema import boot_clocks, case_revisions, cases, events
from central.store.schema_correlation import (
    correlation_case_links,
    correlation_case_seen,
    correlation_event_days,
    correlation_heads,
    correlation_state,
)

log = logging.getLogger(__name__)

KINDS = ("queue.event", "evaluator.key", "evaluator.invite", "camera.verdict", "camera.presence")
EVENTS_MARK = "events_received_at"
CASES_MARK = "cases_received_at"


async def _mark(conn: AsyncConnection, name: str) -> dt.datetime | None:
    row = (
        await conn.execute(
            select(correlation_state.c.value).where(correlation_state.c.name == name)
        )
    ).first()
    return None if row is None else dt.datetime.fromisoformat(row.value["received_at"])


async def _set_mark(
    conn: AsyncConnection, name: str, value: dt.datetime | None, old: dt.datetime | None
) -> None:
    if value is None or (old is not None and value <= old):
        return
    doc = {"received_at": value.astimezone(dt.UTC).isoformat()}
    if old is None:
        await conn.execute(insert(correlation_state).values(name=name, value=doc))
    else:
        await conn.execute(
            update(correlation_state).where(correlation_state.c.name == name).values(value=doc)
        )


@dataclass
class ScanReport:
    new_events: int = 0
    repaired_events: int = 0
    resent_placed: int = 0  # queue messages whose time moved to or from the machine's clock
    changed_cases: int = 0
    dirty: set[tuple[str, dt.date]] = field(default_factory=set)


Begin = Callable[[], AbstractAsyncContextManager[AsyncConnection]]
Row = Any  # a row of the new events' query
PART_EVENTS = 5000  # new events per transaction of a scan in parts


async def scan(conn: AsyncConnection, cfg: CorrelationConfig) -> ScanReport:
    """Index new events' corrected times and mark the hall-days with new input dirty, in the
    caller's transaction."""

    @asynccontextmanager
    async def same() -> AsyncIterator[AsyncConnection]:
        yield conn

    return await scan_in_parts(same, cfg, part_events=None)


async def scan_in_parts(
    begin: Begin, cfg: CorrelationConfig, part_events: int | None = PART_EVENTS
) -> ScanReport:
    """The scan, its new events committed a part at a time (``begin`` opens a transaction),
    so workers take the first hall-days while the rest is indexed. A part holds whole halls
    and their gateways: a gateway's new events, its clock repairs and its machine-clock
    placement are one unit, so the result is the one-transaction scan's, and each hall-day is
    queued in one transaction of the scan (computed once for one burst). The watermarks and
    the cases seen move in the last transaction: a scan stopped part-way is read again, its
    committed parts skipped as indexed. With ``part_events`` None: one transaction's work, the
    hall-days queued at the end. Callers must be the only scanner (the job's advisory lock)."""
    report = ScanReport()
    margin = dt.timedelta(seconds=cfg.scan_margin_s)
    cases_dirty: set[tuple[str, dt.date]] = set()
    async with begin() as conn:
        ev_mark = await _mark(conn, EVENTS_MARK)
        since = None if ev_mark is None else ev_mark - margin
        rows = await _new_events(conn, since)
        clocks = await _new_clocks(conn, since)
        if part_events is not None:
            changes = await _changed_cases(conn, margin, cases_dirty)
    newest, queued = ev_mark, set[tuple[str, dt.date]]()
    parts, cases_part = _parts(rows, clocks, part_events, {hall for hall, _ in cases_dirty})
    for n, (part_rows, part_clocks) in enumerate(parts):
        async with begin() as conn:
            dirty: set[tuple[str, dt.date]] = set()
            touched: dict[str, dt.datetime] = {}  # gateway → first receipt of new queue events
            indexed = await _index(part_rows, dirty, touched)
            for chunk in chunks(indexed, 2000):
                await conn.execute(insert_ignore(conn, correlation_event_days), list(chunk))
            report.repaired_events += await _repair_clocks(conn, part_clocks, dirty, touched)
            report.resent_placed += await _place_resent(conn, touched, cfg, dirty)
            if n == cases_part:  # the changed cases seen where all their days are queued
                report.changed_cases = await _see_cases(conn, changes)
                dirty |= cases_dirty
            if part_events is not None:  # a part of clocks alone: its days queued again
                await workqueue.mark(conn, dirty)
                queued |= dirty
        report.new_events += len(indexed)
        report.dirty |= dirty
        for row in part_rows:
            newest = row.received_at if newest is None else max(newest, row.received_at)
    async with begin() as conn:
        await _set_mark(conn, EVENTS_MARK, newest, ev_mark)
        if part_events is None:
            changes = await _changed_cases(conn, margin, cases_dirty)
        if cases_part is None:
            report.changed_cases = await _see_cases(conn, changes)
            report.dirty |= cases_dirty
        await workqueue.mark(conn, report.dirty - queued)
    return report


async def _new_events(conn: AsyncConnection, since: dt.datetime | None) -> Sequence[Row]:
    """Events correlation reads, received after ``since`` and not indexed yet."""
    ed = correlation_event_days
    query = (
        select(
            events.c.gateway_id,
            events.c.seq,
            events.c.hall_id,
            events.c.kind,
            events.c.utc,
            events.c.synced,
            events.c.mono_ns,
            events.c.received_at,
            boot_clocks.c.offset_us,
        )
        .select_from(
            events.outerjoin(
                boot_clocks,
                and_(
                    boot_clocks.c.gateway_id == events.c.gateway_id,
                    boot_clocks.c.boot == events.c.boot,
                ),
            ).outerjoin(ed, and_(ed.c.gateway_id == events.c.gateway_id, ed.c.seq == events.c.seq))
        )
        .where(events.c.kind.in_(KINDS), ed.c.seq.is_(None))
    )
    if since is not None:
        query = query.where(events.c.received_at > since)
    return (await conn.execute(query)).all()


async def _new_clocks(conn: AsyncConnection, since: dt.datetime | None) -> Sequence[Row]:
    """Offsets whose first synchronised event was received after ``since``."""
    bc = boot_clocks
    query = select(bc.c.gateway_id, bc.c.boot, bc.c.offset_us).select_from(
        bc.join(events, and_(events.c.gateway_id == bc.c.gateway_id, events.c.seq == bc.c.from_seq))
    )
    if since is not None:
        query = query.where(events.c.received_at > since)
    return (await conn.execute(query)).all()


def _parts(
    rows: Sequence[Row], clocks: Sequence[Row], part_events: int | None, together: set[str]
) -> tuple[list[tuple[list[Row], list[Row]]], int | None]:
    """Parts of whole halls with all their gateways (a gateway's halls, a hall's gateways, and
    so on; the halls ``together`` in one part), each at least ``part_events`` new events but
    the last; a clock goes with its gateway's part, or with a last part of its own when its
    gateway has no new events. And the part holding the halls ``together`` (None: none)."""
    if not rows and not clocks:
        return [], None
    if part_events is None:
        return [(list(rows), list(clocks))], None
    group = {key: key for row in rows for key in (("g", row.gateway_id), ("h", row.hall_id))}

    def root(key: tuple[str, str]) -> tuple[str, str]:
        while group[key] != key:
            group[key] = group[group[key]]
            key = group[key]
        return key

    for row in rows:
        group[root(("g", row.gateway_id))] = root(("h", row.hall_id))
    joined = sorted(("h", hall) for hall in together if ("h", hall) in group)
    for key in joined[1:]:
        group[root(key)] = root(joined[0])
    by_group: dict[tuple[str, str], list[Row]] = {}
    for row in rows:
        by_group.setdefault(root(("g", row.gateway_id)), []).append(row)
    parts: list[tuple[list[Row], list[Row]]] = [([], [])]
    part_of: dict[str, int] = {}
    for key in sorted(by_group):
        if len(parts[-1][0]) >= part_events:
            parts.append(([], []))
        parts[-1][0].extend(by_group[key])
        part_of.update((r.gateway_id, len(parts) - 1) for r in by_group[key])
    alone = [c for c in clocks if c.gateway_id not in part_of]
    for clock in clocks:
        if clock.gateway_id in part_of:
            parts[part_of[clock.gateway_id]][1].append(clock)
    if alone:
        parts.append(([], alone))
    cases_part = part_of[by_group[root(joined[0])][0].gateway_id] if joined else None
    return parts, cases_part


async def _index(
    rows: Sequence[Row], dirty: set[tuple[str, dt.date]], touched: dict[str, dt.datetime]
) -> list[dict[str, Any]]:
    """The index rows of new events (their corrected time and business day)."""
    indexed = []
    for i, row in enumerate(rows):
        if i % 2000 == 1999:
            await asyncio.sleep(0)  # a first scan reads everything: let ingest run between
        at, source = event_time(row.utc, row.synced, row.mono_ns, row.offset_us, row.received_at)
        day = business_date(at)
        indexed.append(
            {
                "gateway_id": row.gateway_id,
                "seq": row.seq,
                "hall_id": row.hall_id,
                "kind": row.kind,
                "business_day": day,
                "at": at,
                "time_source": source.value,
            }
        )
        dirty.add((row.hall_id, day))
        if row.kind == "queue.event":
            _touch(touched, row.gateway_id, row.received_at)
    return indexed


def _touch(touched: dict[str, dt.datetime], gateway: str, received_at: dt.datetime) -> None:
    first = touched.get(gateway)
    touched[gateway] = received_at if first is None else min(first, received_at)


async def _repair_clocks(
    conn: AsyncConnection,
    clocks: Sequence[Row],
    dirty: set[tuple[str, dt.date]],
    touched: dict[str, dt.datetime],
) -> int:
    """Offsets whose first synchronised event is new: move that boot's unsynced events (and
    look again at the gateway's late queue messages: their receive times are now trusted)."""
    ed = correlation_event_days
    repaired = 0
    for clock in clocks:
        stale = (
            await conn.execute(
                select(
                    ed.c.gateway_id,
                    ed.c.seq,
                    ed.c.hall_id,
                    ed.c.business_day,
                    ed.c.kind,
                    events.c.utc,
                    events.c.mono_ns,
                    events.c.received_at,
                )
                .select_from(
                    ed.join(
                        events,
                        and_(events.c.gateway_id == ed.c.gateway_id, events.c.seq == ed.c.seq),
                    )
                )
                .where(
                    ed.c.gateway_id == clock.gateway_id,
                    events.c.boot == clock.boot,
                    ed.c.time_source == TimeSource.UNSYNCED.value,
                )
            )
        ).all()
        moves = []
        for row in stale:
            at, source = event_time(row.utc, False, row.mono_ns, clock.offset_us, row.received_at)
            day = business_date(at)
            dirty.add((row.hall_id, row.business_day))
            dirty.add((row.hall_id, day))
            moves.append(
                {
                    "b_gateway": row.gateway_id,
                    "b_seq": row.seq,
                    "at": at,
                    "business_day": day,
                    "time_source": source.value,
                }
            )
            if row.kind == "queue.event":
                _touch(touched, row.gateway_id, row.received_at)
        if moves:
            await conn.execute(
                update(ed).where(
                    ed.c.gateway_id == bindparam("b_gateway"), ed.c.seq == bindparam("b_seq")
                ),
                moves,
            )
        repaired += len(stale)
    return repaired


async def _place_resent(
    conn: AsyncConnection,
    touched: dict[str, dt.datetime],
    cfg: CorrelationConfig,
    dirty: set[tuple[str, dt.date]],
) -> int:
    """Queue messages received late get the machine's clock + its learned offset (see
    ``machine_clock``); the others keep their receive time. Per gateway with new (or newly
    repaired) queue events, its queue events received from ``lookback_s`` before the first of
    them are read again, so an outage's messages move once the live ones after it arrive."""
    ed, clock = correlation_event_days, cfg.queue_clock
    moved = 0
    for gateway, first in sorted(touched.items()):
        since = first - dt.timedelta(seconds=clock.lookback_s)
        rows = (
            await conn.execute(
                select(
                    ed.c.seq,
                    ed.c.hall_id,
                    ed.c.business_day,
                    ed.c.at,
                    ed.c.time_source,
                    events.c.utc,
                    events.c.synced,
                    events.c.mono_ns,
                    # only the field used: decoding each whole JSON body cost the event loop
                    events.c.body["machine_time"].as_string().label("machine_time"),
                    events.c.received_at,
                    boot_clocks.c.offset_us,
                )
                .select_from(
                    ed.join(
                        events,
                        and_(events.c.gateway_id == ed.c.gateway_id, events.c.seq == ed.c.seq),
                    ).outerjoin(
                        boot_clocks,
                        and_(
                            boot_clocks.c.gateway_id == events.c.gateway_id,
                            boot_clocks.c.boot == events.c.boot,
                        ),
                    )
                )
                .where(
                    ed.c.gateway_id == gateway,
                    ed.c.kind == "queue.event",
                    events.c.received_at >= since,
                )
                .order_by(ed.c.seq)
            )
        ).all()
        received: dict[int, tuple[dt.datetime, TimeSource]] = {}
        samples = []
        for row in rows:
            at, source = event_time(
                row.utc, row.synced, row.mono_ns, row.offset_us, row.received_at
            )
            received[row.seq] = (at, source)
            machine = machine_datetime(row.machine_time)
            if machine is not None:
                samples.append(
                    ClockSample(
                        row.seq, at, machine, source in (TimeSource.SYNCED, TimeSource.REPAIRED)
                    )
                )
        # pure and linear, but a day of heartbeats is thousands of samples: off the event loop
        placed = await asyncio.to_thread(place, samples, clock)
        moves = []
        for row in rows:
            at, source = received[row.seq]
            if row.seq in placed:
                at, source = placed[row.seq], TimeSource.MACHINE
            if (at, source.value) == (row.at, row.time_source):
                continue
            day = business_date(at)
            dirty.add((row.hall_id, row.business_day))
            dirty.add((row.hall_id, day))
            moves.append(
                {
                    "b_gateway": gateway,
                    "b_seq": row.seq,
                    "at": at,
                    "business_day": day,
                    "time_source": source.value,
                }
            )
        for chunk in chunks(moves, 1000):
            await conn.execute(
                update(ed).where(
                    ed.c.gateway_id == bindparam("b_gateway"), ed.c.seq == bindparam("b_seq")
                ),
                list(chunk),
            )
        moved += len(moves)
    return moved


@dataclass
class CaseChanges:
    mark: dt.datetime | None  # the cases' watermark they were read from
    rows: Sequence[Row]  # changed cases: case_no, revision, received_at


async def _changed_cases(
    conn: AsyncConnection, margin: dt.timedelta, dirty: set[tuple[str, dt.date]]
) -> CaseChanges:
    """Changed cases (read only): every day any of their revisions was accepted or completed
    on, and the days of the evaluations currently linked to them, go to ``dirty``."""
    mark = await _mark(conn, CASES_MARK)
    seen = correlation_case_seen
    query = (
        select(cases.c.case_no, cases.c.revision, cases.c.received_at)
        .select_from(cases.outerjoin(seen, seen.c.case_no == cases.c.case_no))
        .where(or_(seen.c.revision.is_(None), seen.c.revision != cases.c.revision))
    )
    if mark is not None:
        query = query.where(cases.c.received_at > mark - margin)
    rows = (await conn.execute(query)).all()
    numbers = [r.case_no for r in rows]
    for chunk in chunks(numbers):
        for rev in await conn.execute(
            select(case_revisions.c.doc).where(case_revisions.c.case_no.in_(chunk))
        ):
            doc = rev.doc
            try:
                accepted = dt.datetime.fromisoformat(doc["accepted_at"])
                dirty.add((doc["hall"], business_date(accepted)))
                # the completion day too: its indicator rollups count the completion
                if doc.get("completed_at"):
                    completed = dt.datetime.fromisoformat(doc["completed_at"])
                    dirty.add((doc["hall"], business_date(completed)))
            except (KeyError, TypeError, ValueError):
                continue
        for hall_id, accepted_at, completed_at in await conn.execute(
            cases.select()
            .with_only_columns(cases.c.hall_id, cases.c.accepted_at, cases.c.completed_at)
            .where(cases.c.case_no.in_(chunk))
        ):
            dirty.add((hall_id, business_date(accepted_at)))
            if completed_at is not None:
                dirty.add((hall_id, business_date(completed_at)))
        linked = (
            select(correlation_heads.c.hall_id, correlation_heads.c.business_day)
            .select_from(
                correlation_heads.join(
                    correlation_case_links,
                    and_(
                        correlation_case_links.c.gateway_id == correlation_heads.c.gateway_id,
                        correlation_case_links.c.seq == correlation_heads.c.seq,
                        correlation_case_links.c.version == correlation_heads.c.version,
                    ),
                )
            )
            .where(correlation_case_links.c.case_no.in_(chunk))
        )
        for row in await conn.execute(linked):
            dirty.add((row.hall_id, row.business_day))
    return CaseChanges(mark, rows)


async def _see_cases(conn: AsyncConnection, changes: CaseChanges) -> int:
    """Record the changed cases as seen, in the transaction that queues their hall-days."""
    rows, seen = changes.rows, correlation_case_seen
    if not rows:
        return 0
    for chunk in chunks([r.case_no for r in rows]):
        await conn.execute(delete(seen).where(seen.c.case_no.in_(chunk)))
    for chunk in chunks([{"case_no": r.case_no, "revision": r.revision} for r in rows], 1000):
        await conn.execute(insert(seen), list(chunk))
    await _set_mark(conn, CASES_MARK, max(r.received_at for r in rows), changes.mark)
    return len(rows)


async def mark_dirty(conn: AsyncConnection, hall: str, day: dt.date) -> None:
    """Recompute a hall-day (by hand, or after a change correlation's scan cannot see)."""
    await workqueue.mark(conn, [(hall, day)])
