"""The 好差评 feed upward: every counted evaluation, as correlation currently sees it, becomes a
platform record in the outbox.

A scan reads current correlation versions computed since its last pass (the first pass of a
process reads them all) and, for each version not yet fed:
- counted, nothing fed before (or the last thing fed withdrew it): ``create``;
- counted, an earlier version fed: ``update`` (a re-issued correlation);
- no longer counted, an earlier version fed: ``withdraw``; never fed: nothing to say.

An evaluation whose 差评 appeal a supervisor upheld (误评 / 恶意差评, ``followups.excluded``)
is not counted for the platform either (申诉核减): its versions are fed as not counted, and a pass
after each scan withdraws the current version already fed live, under the key
``haocha:<gateway>:<seq>:<version>:appeal`` (that version's row then records the withdrawal).

The idempotency key is ``haocha:<gateway>:<seq>:<version>``: two processes scanning at once, or
a scan repeated after a crash, enqueue one message. The record's level and tags come from the
mapping version in force on the evaluation's business day (``central.rules.scale``), and the
record names that version, so a later mapping never rewrites a record already sent.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Sequence
from typing import Any

from sqlalchemy import and_, select, tuple_, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from central.haocha.config import FeedConfig
from central.outbox.store import Channel, enqueue
from central.reporting import halls as hall_setups
from central.reporting.registry import display_name
from central.rules.scale import MappingBook, export_row
from central.store.db import insert_ignore
from central.store.schema import cases
from central.store.schema_correlation import correlation_heads, correlation_results, followups
from central.store.schema_halls import halls
from central.store.schema_outbox import haocha_feed
from hallkit.clock import utc_now

log = logging.getLogger(__name__)

CHUNK = 500
KIND = "haocha.record"
SINCE_SLACK = dt.timedelta(minutes=5)  # a version's computed_at precedes its commit


def feed_key(gateway: str, seq: int, version: int) -> str:
    return f"haocha:{gateway}:{seq}:{version}"


def operation(counted: bool, last_op: str | None) -> str | None:
    """What to send for a version given what was last fed for the evaluation (pure)."""
    live = last_op is not None and last_op != "withdraw"
    if counted:
        return "update" if live else "create"
    return "withdraw" if live else None


async def _context(conn: AsyncConnection, rows: Sequence[Any]) -> dict[str, Any]:
    nos = sorted({n for r in rows for n in r.case_nos})
    found: dict[str, Any] = {}
    for i in range(0, len(nos), CHUNK):
        for c in await conn.execute(select(cases).where(cases.c.case_no.in_(nos[i : i + CHUNK]))):
            found[c.case_no] = c
    registry = {h.hall_id: h for h in await conn.execute(select(halls))}
    hall_ids = sorted({r.hall_id for r in rows})
    return {
        "cases": found,
        "halls": registry,
        "names": {k: v.name for k, v in registry.items()},
        "staff": await hall_setups.staff_names(conn, hall_ids),
    }


def record(
    row: Any, op: str, ctx: dict[str, Any], book: MappingBook, config: FeedConfig
) -> dict[str, Any]:
    """The platform record of one correlation version (JSON-ready)."""
    case = ctx["cases"].get(row.case_nos[0]) if row.case_nos else None
    base = export_row(
        evaluation_id=f"{row.gateway_id}-{row.seq}",
        key=row.key,
        evaluated_at=row.evaluated_at,
        hall=row.hall_id,
        hall_name=display_name(ctx["names"], row.hall_id),
        window=str(row.window),
        staff=row.staff,
        staff_name=hall_setups.name_of(ctx["staff"], row.hall_id, row.staff),
        case_no=case.case_no if case is not None else None,
        department=case.department if case is not None else None,
        book=book,
    ).model_dump(mode="json")
    hall = ctx["halls"].get(row.hall_id)
    doc: dict[str, Any] = {
        "op": op,
        "record_id": f"{row.gateway_id}-{row.seq}",
        "version": row.version,
        "supersedes": row.supersedes,
        **base,
        "source": f"hallwatch/{row.gateway_id}/{row.seq}",
        "case_nos": list(row.case_nos),
        "item_code": case.item_code if case is not None else None,
        "item_name": case.item_name if case is not None else None,
        "item_version": None,  # 事项版本: the approval system's feed does not carry it yet
        "region_code": hall.region_code if hall is not None else None,
    }
    if config.include_applicant and case is not None:
        doc["applicant"] = case.applicant_masked
    return doc


async def scan(
    engine: AsyncEngine,
    book: MappingBook,
    config: FeedConfig,
    since: dt.datetime | None = None,
    now: dt.datetime | None = None,
) -> int:
    """Enqueue a record for every current version computed since ``since`` (None: all) that
    was not fed yet; the number enqueued."""
    if config.channel is None:
        return 0
    channel = Channel(config.channel)
    now = now or utc_now()
    r, h = correlation_results, correlation_heads
    enqueued = 0
    after: tuple[str, int] = ("", -1)
    while True:
        query = (
            select(r)
            .select_from(
                h.join(
                    r,
                    and_(
                        r.c.gateway_id == h.c.gateway_id,
                        r.c.seq == h.c.seq,
                        r.c.version == h.c.version,
                    ),
                )
            )
            .where(tuple_(h.c.gateway_id, h.c.seq) > after)
            .order_by(h.c.gateway_id, h.c.seq)
            .limit(CHUNK)
        )
        if since is not None:
            query = query.where(r.c.computed_at >= since)
        async with engine.begin() as conn:
            rows = (await conn.execute(query)).all()
            if not rows:
                break
            enqueued += await _feed_chunk(conn, rows, channel, book, config, now)
        after = (rows[-1].gateway_id, rows[-1].seq)
    async with engine.begin() as conn:
        return enqueued + await _withdraw_excluded(conn, channel, book, config)


async def _excluded(conn: AsyncConnection, keys: Sequence[tuple[str, int]]) -> set[Any]:
    """Which of ``keys`` (gateway, seq) an upheld appeal took out."""
    o = followups.c
    query = select(o.gateway_id, o.seq).where(
        o.excluded.is_(True), tuple_(o.gateway_id, o.seq).in_(keys)
    )
    return {(x.gateway_id, x.seq) for x in await conn.execute(query)}


async def _withdraw_excluded(
    conn: AsyncConnection, channel: Channel, book: MappingBook, config: FeedConfig
) -> int:
    """Withdraw every current version fed live whose evaluation an upheld appeal took out."""
    r, h, f, o = correlation_results, correlation_heads, haocha_feed, followups
    same = and_(r.c.gateway_id == h.c.gateway_id, r.c.seq == h.c.seq, r.c.version == h.c.version)
    query = (
        select(r)
        .select_from(
            o.join(h, and_(h.c.gateway_id == o.c.gateway_id, h.c.seq == o.c.seq))
            .join(r, same)
            .join(
                f,
                and_(
                    f.c.gateway_id == h.c.gateway_id,
                    f.c.seq == h.c.seq,
                    f.c.version == h.c.version,
                ),
            )
        )
        .where(o.c.excluded.is_(True), f.c.op != "withdraw")
        .order_by(h.c.gateway_id, h.c.seq)
    )
    rows = (await conn.execute(query)).all()
    if not rows:
        return 0
    ctx = await _context(conn, rows)
    for row in rows:
        doc = record(row, "withdraw", ctx, book, config) | {"withdraw_reason": "申诉核减"}
        message = await enqueue(
            conn,
            channel=channel,
            key=feed_key(row.gateway_id, row.seq, row.version) + ":appeal",
            kind=KIND,
            recipient="platform",
            payload=doc,
        )
        await conn.execute(
            update(f)
            .where(
                f.c.gateway_id == row.gateway_id,
                f.c.seq == row.seq,
                f.c.version == row.version,
            )
            .values(op="withdraw", level=None, outbox_id=message)
        )
    return len(rows)


async def _feed_chunk(
    conn: AsyncConnection,
    rows: Sequence[Any],
    channel: Channel,
    book: MappingBook,
    config: FeedConfig,
    now: dt.datetime,
) -> int:
    f = haocha_feed.c
    excluded = await _excluded(conn, [(r.gateway_id, r.seq) for r in rows])
    fed: dict[tuple[str, int], list[tuple[int, str]]] = {}
    for x in await conn.execute(
        select(f.gateway_id, f.seq, f.version, f.op).where(
            tuple_(f.gateway_id, f.seq).in_([(r.gateway_id, r.seq) for r in rows])
        )
    ):
        fed.setdefault((x.gateway_id, x.seq), []).append((x.version, x.op))
    todo = []
    for row in rows:
        history = sorted(fed.get((row.gateway_id, row.seq), []))
        if any(v == row.version for v, _ in history):
            continue
        counted = row.counted and (row.gateway_id, row.seq) not in excluded
        op = operation(counted, history[-1][1] if history else None)
        if op is not None:
            todo.append((row, op))
    if not todo:
        return 0
    ctx = await _context(conn, [row for row, _ in todo])
    for row, op in todo:
        doc = record(row, op, ctx, book, config)
        message = await enqueue(
            conn,
            channel=channel,
            key=feed_key(row.gateway_id, row.seq, row.version),
            kind=KIND,
            recipient="platform",
            payload=doc,
        )
        await conn.execute(
            insert_ignore(conn.dialect, haocha_feed).values(
                gateway_id=row.gateway_id,
                seq=row.seq,
                version=row.version,
                hall_id=row.hall_id,
                op=op,
                mapping_version=doc["mapping_version"],
                level=None if op == "withdraw" else doc["level"],
                outbox_id=message,
                enqueued_at=now,
            )
        )
    return len(todo)


async def run_forever(engine: AsyncEngine, book: MappingBook, config: FeedConfig) -> None:
    since: dt.datetime | None = None  # the first pass reads every current version
    while True:
        started = utc_now()
        try:
            count = await scan(engine, book, config, since)
            since = started - SINCE_SLACK
            if count:
                log.info("haocha feed: %d records enqueued", count)
        except Exception:
            log.exception("haocha feed: scan failed; trying again")
        await asyncio.sleep(config.every_s)


__all__ = ["feed_key", "operation", "record", "run_forever", "scan"]
