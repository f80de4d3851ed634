"""What central holds of each gateway's numbering: its committed sequence and epoch, the
ranges stored beyond a gap, and how a redelivered batch compares with what is stored."""

from __future__ import annotations

from sqlalchemy import ColumnElement, and_, delete, func, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection

from central.spine.outcome import Held, Progress, Registered, Txn
from central.spine.reading import (
    Batch,
    Poison,
    Rejected,
    Unregistered,
    event_digest,
    quarantine_digest,
)
from central.store.schema import (
    events,
    gateways,
    pending_ranges,
    quarantine,
)
from protocols.envelope import (
    EventRecord,
)


async def lock_gateways(conn: AsyncConnection, txn: Txn, senders: set[str]) -> None:
    """Read (and on PostgreSQL lock, in one order, as several aggregators may share the
    stream) the rows of every gateway of a group, and which of them hold ranges beyond a gap:
    two statements for the whole group instead of two per gateway."""
    wanted = sorted(senders - txn.registered.keys())
    if not wanted:
        return
    query = (
        select(
            gateways.c.gateway_id,
            gateways.c.hall_id,
            gateways.c.committed_through,
            gateways.c.revoked_at,
            gateways.c.epoch,
        )
        .where(gateways.c.gateway_id.in_(wanted))
        .order_by(gateways.c.gateway_id)
    )
    if conn.dialect.name == "postgresql":
        query = query.with_for_update()
    rows = (await conn.execute(query)).all()
    beyond = set(
        (
            await conn.execute(
                select(pending_ranges.c.gateway_id)
                .where(pending_ranges.c.gateway_id.in_(wanted))
                .distinct()
            )
        )
        .scalars()
        .all()
    )
    txn.registered.update(dict.fromkeys(wanted))  # not registered, unless found below
    for row in rows:
        txn.registered[row.gateway_id] = Registered(
            row.hall_id,
            row.committed_through,
            row.revoked_at is not None,
            row.epoch,
            row.gateway_id in beyond,
        )


async def progress_of(conn: AsyncConnection, txn: Txn, batch: Batch) -> Progress:
    state = txn.progress.get(batch.gateway)
    if state is None:
        await lock_gateways(conn, txn, {batch.gateway})  # read already for the whole group
        row = txn.registered.get(batch.gateway)
        if row is None:
            raise Unregistered(f"unknown gateway {batch.gateway!r} (not registered)")
        if row.revoked:
            raise Rejected(f"gateway {batch.gateway!r} was revoked")
        state = Progress(row.hall, row.committed, row.epoch, pending=row.pending)
    if state.hall != batch.hall:
        raise Rejected(
            f"gateway {batch.gateway!r} belongs to hall {state.hall!r}, not {batch.hall!r}"
        )
    txn.progress[batch.gateway] = state
    return state


async def beyond_gap(conn: AsyncConnection, batch: Batch, state: Progress) -> bool:
    """May this batch overlap events stored beyond a gap?"""
    if batch.start > state.committed + 1:
        return True
    if state.pending is None:
        state.pending = (
            await conn.execute(
                select(pending_ranges.c.gateway_id)
                .where(pending_ranges.c.gateway_id == batch.gateway)
                .limit(1)
            )
        ).first() is not None
    return state.pending


async def read_held(conn: AsyncConnection, txn: Txn, batches: list[Batch]) -> None:
    """What the store holds under the first batch of each gateway in the group that may repeat
    it (a resend at or below the committed seq, or a batch beyond a gap), for all of them in
    two statements instead of two per batch: when gateways resend their windows, most batches
    of a group are such repeats. A later batch of the same gateway reads for itself (what this
    transaction wrote for it before counts)."""
    ranges: dict[str, tuple[int, int]] = {}
    for batch in batches:
        row = txn.registered.get(batch.gateway)
        if batch.gateway in ranges or row is None or row.revoked:
            ranges.setdefault(batch.gateway, (0, -1))  # not the first: read in turn
            continue
        if batch.first_seq <= row.committed or batch.start > row.committed + 1 or row.pending:
            ranges[batch.gateway] = (batch.first_seq, batch.last_seq)
        else:
            ranges[batch.gateway] = (0, -1)
    wanted = {gateway: span for gateway, span in ranges.items() if span[0] <= span[1]}
    if not wanted:
        return
    stored: dict[str, dict[int, str | None]] = {gateway: {} for gateway in wanted}
    kept: dict[str, dict[int, set[str]]] = {gateway: {} for gateway in wanted}
    for gateway, seq, digest in await conn.execute(
        select(events.c.gateway_id, events.c.seq, events.c.digest).where(
            _spans(events.c.gateway_id, events.c.seq, wanted)
        )
    ):
        stored[gateway][seq] = digest
    for gateway, seq, digest in await conn.execute(
        select(quarantine.c.gateway_id, quarantine.c.seq, quarantine.c.digest).where(
            _spans(quarantine.c.gateway_id, quarantine.c.seq, wanted)
        )
    ):
        kept[gateway].setdefault(seq, set()).add(digest)
    for gateway, (first, last) in wanted.items():
        txn.held[gateway] = Held(first, last, stored[gateway], kept[gateway])


def _spans(
    gateway_column: ColumnElement[str],
    seq_column: ColumnElement[int],
    spans: dict[str, tuple[int, int]],
) -> ColumnElement[bool]:
    return or_(
        *(
            and_(gateway_column == gateway, seq_column >= first, seq_column <= last)
            for gateway, (first, last) in spans.items()
        )
    )


async def compare_with_stored(
    conn: AsyncConnection, batch: Batch, held: Held | None = None
) -> tuple[set[int], int | None]:
    """The batch's seqs central holds (stored or quarantined), and the index of the first
    event held with other content, if any. ``held``: read beforehand (``read_held``)."""
    if held is not None and held.covers(batch.first_seq, batch.last_seq):
        span = range(batch.first_seq, batch.last_seq + 1)
        stored = {seq: held.stored[seq] for seq in span if seq in held.stored}
        kept = {seq: held.kept[seq] for seq in span if seq in held.kept}
    else:
        stored, kept = await _read_held_one(conn, batch)
    conflict = None
    for index, item in enumerate(batch.items):
        if item.seq in stored:
            digest = stored[item.seq]  # None: stored before digests, cannot compare
            same = digest is None or (
                isinstance(item, EventRecord)
                and (
                    digest == event_digest(item) or await same_as_stored(conn, batch.gateway, item)
                )
            )
        elif item.seq in kept:
            raw = item.raw if isinstance(item, Poison) else item.model_dump_json().encode()
            same = quarantine_digest(batch.msg.topic, raw) in kept[item.seq]
        else:
            continue
        if not same:
            conflict = index
            break
    return set(stored) | set(kept), conflict


async def _read_held_one(
    conn: AsyncConnection, batch: Batch
) -> tuple[dict[int, str | None], dict[int, set[str]]]:
    stored: dict[int, str | None] = {
        seq: digest
        for seq, digest in await conn.execute(
            select(events.c.seq, events.c.digest).where(
                and_(
                    events.c.gateway_id == batch.gateway,
                    events.c.seq >= batch.first_seq,
                    events.c.seq <= batch.last_seq,
                )
            )
        )
    }
    kept: dict[int, set[str]] = {}
    for seq, digest in (
        await conn.execute(
            select(quarantine.c.seq, quarantine.c.digest).where(
                and_(
                    quarantine.c.gateway_id == batch.gateway,
                    quarantine.c.seq >= batch.first_seq,
                    quarantine.c.seq <= batch.last_seq,
                )
            )
        )
    ).all():
        kept.setdefault(seq, set()).add(digest)
    return stored, kept


async def merge_pending(conn: AsyncConnection, gateway: str, committed: int) -> int:
    """Extend committed over ranges that arrived early; drop the ranges now covered."""
    while True:
        reach = (
            await conn.execute(
                select(func.max(pending_ranges.c.last_seq)).where(
                    and_(
                        pending_ranges.c.gateway_id == gateway,
                        pending_ranges.c.first_seq <= committed + 1,
                        pending_ranges.c.last_seq > committed,
                    )
                )
            )
        ).scalar()
        if reach is None:
            break
        committed = reach
    await conn.execute(
        delete(pending_ranges).where(
            and_(pending_ranges.c.gateway_id == gateway, pending_ranges.c.last_seq <= committed)
        )
    )
    return committed


def record_boot_clock(txn: Txn, gateway: str, event: EventRecord) -> None:
    """A boot's clock offset from its first synchronised event; inserted with the events."""
    offset_us = int(event.utc.timestamp() * 1_000_000) - event.mono_ns // 1000
    txn.boot_rows.append(
        {
            "gateway_id": gateway,
            "boot": event.boot,
            "offset_us": offset_us,
            "from_seq": event.seq,
        }
    )
    txn.boots.add((gateway, event.boot))


async def high_water(conn: AsyncConnection, gateway: str) -> int:
    """Everything central holds for this gateway id lies at or below this sequence number:
    committed, stored beyond a gap, or waiting in a pending range."""
    committed = (
        await conn.execute(
            select(gateways.c.committed_through).where(gateways.c.gateway_id == gateway)
        )
    ).scalar() or 0
    stored = (
        await conn.execute(select(func.max(events.c.seq)).where(events.c.gateway_id == gateway))
    ).scalar() or 0
    pending = (
        await conn.execute(
            select(func.max(pending_ranges.c.last_seq)).where(
                pending_ranges.c.gateway_id == gateway
            )
        )
    ).scalar() or 0
    return int(max(committed, stored, pending))


async def same_as_stored(conn: AsyncConnection, gateway: str, event: EventRecord) -> bool:
    """Compare field by field: a digest differs also when only key order or number spelling
    does, and such a false alarm would make a gateway renumber events central already has."""
    row = (
        await conn.execute(
            select(
                events.c.kind,
                events.c.utc,
                events.c.mono_ns,
                events.c.boot,
                events.c.synced,
                events.c.body,
            ).where(and_(events.c.gateway_id == gateway, events.c.seq == event.seq))
        )
    ).one()
    return tuple(row) == (
        event.kind,
        event.utc,
        event.mono_ns,
        event.boot,
        event.synced,
        event.body,
    )
