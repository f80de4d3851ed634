# Long module: one group's transaction (lock, compare, store, quarantine, refuse, merge the
# gaps) and the split that isolates a poisoned event share the Txn being built; the reading,
# the numbering, the quarantine and the outcome already live in modules of their own.
"""Ingest: validate, store each event exactly once, and decide what to acknowledge.

One database transaction holds a group of messages: the events, the quarantined parts and each
gateway's new ``committed_through``. Only after it commits does central acknowledge, so an ack
always means "on disk here". A redelivered batch changes nothing (events are keyed by
(gateway, seq) and inserted with ON CONFLICT DO NOTHING) but is acknowledged again, because the
gateway may have missed the first ack.

Isolation: a message that cannot be committed, for any reason (its schema, a value the database
cannot hold, a nesting too deep for the parser, any database error), never holds up the others.
When a group's transaction fails it is split, by gateway, then in halves, down to one event; the
event that still fails alone is quarantined with its raw JSON and the reason, and its seq counts
as consumed. Acknowledging past it is safe because the quarantine row holds the whole event:
nothing is lost, and the gateway's stream does not stop on one poisoned event. Only errors that
say nothing about the data (the database unreachable or locked) leave a group unacknowledged: the
aggregator tries the whole group again after a pause (``StoreUnavailable``), and a part of a split
group waits for the gateway to send it again. A transaction that lost to a concurrent one (a
deadlock, a lock wait past ``lock_timeout``: the live and drain paths, or two aggregators, may
hold one gateway's batches at once) is run again at once a few times, then counts as the
database unavailable; it never quarantines anything.

Sequence truth: a seq that arrives again with other content than the stored one is refused,
quarantined and raised as an alarm on the gateway (``gateway_alarms``); a batch that would move a
gateway's sequence more than ``MAX_SEQ_ADVANCE`` past what is committed is refused. Journals carry
an epoch (a lineage id made with the journal): a new epoch whose numbering collides with what
central holds is refused and told to renumber above it (``Ack.rebase_to``), so nothing of a
replaced journal is taken for the old one's data and nothing of it is lost.

Quarantine is bounded per gateway: past the bound the oldest rows go first, counted as an alarm.

Reading and validating a message is ``central.spine.reading``; each gateway's numbering in the
store (committed sequence, epoch, ranges beyond a gap) ``central.spine.sequences``; quarantine
and alarms ``central.spine.quarantine``; what a transaction did and the acknowledgements it
yields ``central.spine.outcome``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from typing import Any

import pydantic_core
from sqlalchemy import bindparam, func, update
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from central.spine.outcome import AckDecision, IngestStats, Outcome, Progress, Txn
from central.spine.reading import (
    Batch,
    Incoming,
    Item,
    Poison,
    Reject,
    Rejected,
    StoreUnavailable,
    Unit,
    Unregistered,
    contended,
    event_digest,
    failure,
    printable,
    read_message,
    transient,
    unreachable,
)
from central.spine.sequences import (
    beyond_gap,
    compare_with_stored,
    high_water,
    lock_gateways,
    merge_pending,
    progress_of,
    read_held,
    record_boot_clock,
)
from central.spine.states import StateWriting
from central.store.db import JsonText, copy_fresh, insert_ignore
from central.store.schema import (
    boot_clocks,
    events,
    gateways,
    lost_ranges,
    pending_ranges,
)
from protocols.envelope import (
    MAX_PAYLOAD_BYTES,
    MAX_SEQ_ADVANCE,
    EventRecord,
)

log = logging.getLogger(__name__)

REPLAY_REQUEST_INTERVAL_S = 2.0  # ask a gateway for the same gap at most this often
QUARANTINE_ROWS_PER_GATEWAY = 1000
QUARANTINE_BYTES_PER_GATEWAY = 8 * 1024 * 1024
CONTENDED_ATTEMPTS = 3  # a transaction that lost to another: run again at once this often
CONTENDED_PAUSE_S = 0.05  # times the attempt: the winner commits meanwhile


class Ingestor(StateWriting):
    def __init__(
        self,
        engine: AsyncEngine,
        *,
        max_payload: int = MAX_PAYLOAD_BYTES,
        quarantine_rows: int = QUARANTINE_ROWS_PER_GATEWAY,
        quarantine_bytes: int = QUARANTINE_BYTES_PER_GATEWAY,
    ) -> None:
        self.engine = engine
        self.max_payload = max_payload
        self.quarantine_rows = quarantine_rows
        self.quarantine_bytes = quarantine_bytes
        self.stats = IngestStats()
        self._known_boots: set[tuple[str, str]] = set()
        self._last_replay: dict[str, tuple[int, float]] = {}

    # -- events ----------------------------------------------------------------------------

    async def ingest(self, messages: Sequence[Incoming]) -> list[AckDecision]:
        """Store a group of event messages; return the acks to publish.

        Never raises for what a message contains: what cannot be stored is quarantined. When
        the database cannot be reached for the group's transaction, raises StoreUnavailable
        (nothing stored)."""
        return await self.store([self.read(msg) for msg in messages])

    def read(self, message: Incoming) -> Unit:
        """Read and validate one message (no I/O: the aggregator reads the next group while
        the current one commits)."""
        return read_message(message, self.max_payload)

    async def store(self, units: Sequence[Unit]) -> list[AckDecision]:
        """Store a group of messages read by ``read``: as ``ingest`` does."""
        batches = sorted(
            (u for u in units if isinstance(u, Batch)), key=lambda b: (b.gateway, b.first_seq)
        )
        outcome = Outcome()
        await self._commit_isolated(
            [*batches, *(u for u in units if isinstance(u, Reject))], outcome, whole=True
        )
        # a rebase order carries its own committed_through for that epoch
        decisions = [
            self._decision(gateway, state)
            for gateway, state in outcome.acks.items()
            if (gateway, state.epoch) not in outcome.rebases
        ]
        decisions += [
            AckDecision(hall, gateway, held, None, epoch=epoch, rebase_to=to)
            for (gateway, epoch), (hall, held, to) in outcome.rebases.items()
        ]
        return decisions

    async def _commit_isolated(
        self, units: list[Unit], outcome: Outcome, *, whole: bool = False
    ) -> None:
        """``whole``: the group's own transaction; when the database cannot be reached for it,
        StoreUnavailable says so (nothing stored, the caller tries the group again)."""
        try:
            outcome.absorb(await self._commit(units))
        except Exception as exc:
            if whole and (unreachable(exc) or contended(exc)):
                raise StoreUnavailable(failure(exc)[:300]) from exc
            if transient(exc):
                log.error(
                    "ingest: %d messages not committed (%s); awaiting resend", len(units), exc
                )
                return
            await self._isolate(units, exc, outcome)

    async def _isolate(self, units: list[Unit], exc: Exception, outcome: Outcome) -> None:
        """Split a failed transaction's work until the failing piece stands alone."""
        by_gateway = list(dict.fromkeys(u.gateway for u in units))
        if len(by_gateway) > 1:
            log.warning(
                "ingest: a group of %d messages failed (%s); committing each gateway apart",
                len(units),
                failure(exc)[:200],
            )
            for gateway in by_gateway:
                await self._commit_isolated([u for u in units if u.gateway == gateway], outcome)
            return
        if len(units) > 1:
            half = len(units) // 2
            await self._commit_isolated(units[:half], outcome)
            await self._commit_isolated(units[half:], outcome)
            return
        (unit,) = units
        if isinstance(unit, Batch) and len(unit.items) > 1:
            half = len(unit.items) // 2
            await self._commit_isolated([unit.part(0, half)], outcome)
            await self._commit_isolated([unit.part(half, len(unit.items))], outcome)
            return
        if isinstance(unit, Batch) and isinstance(unit.items[0], EventRecord):
            try:  # once more alone: a failure that does not repeat was not the event's fault
                outcome.absorb(await self._commit([unit]))
                return
            except Exception as again:
                if transient(again):
                    log.error(
                        "ingest: seq %d of %s not committed (%s); awaiting resend",
                        unit.first_seq,
                        unit.gateway,
                        again,
                    )
                    return
                reason = f"store: {failure(again)}"
            log.warning(
                "ingest: %s seq %d cannot be stored, quarantined: %s",
                unit.gateway,
                unit.first_seq,
                reason[:300],
            )
            await self._commit_isolated([unit.poisoned(reason)], outcome)
            return
        # not even its quarantine row can be written: nothing is acknowledged for it
        log.error(
            "ingest: cannot store nor quarantine a message on %s: %s",
            printable(unit.msg.topic)[:200],
            failure(exc)[:300],
        )

    async def _commit(self, units: list[Unit]) -> Txn:
        """One transaction for the group, its round trips counted per group, not per message:
        the gateways' rows read and locked in one statement (with which of them hold ranges
        beyond a gap), the events of all batches inserted together, every gateway's new
        ``committed_through`` in one UPDATE run.

        On PostgreSQL the events go in by ``COPY``: every row gathered is known not to be
        stored (beyond the committed seq under the gateway's row lock with no range beyond a
        gap, or compared with what the store holds). Should a row be there all the same, the
        COPY fails on the key and the group runs again with ``INSERT … ON CONFLICT DO
        NOTHING``, as SQLite always does."""
        for attempt in range(1, CONTENDED_ATTEMPTS + 1):
            try:
                return await self._commit_copy_or_insert(units)
            except DBAPIError as exc:
                if attempt == CONTENDED_ATTEMPTS or not contended(exc):
                    raise
                log.info("ingest: a transaction lost to another (%s); again", failure(exc)[:200])
                await asyncio.sleep(CONTENDED_PAUSE_S * attempt)
        raise AssertionError("unreachable")

    async def _commit_copy_or_insert(self, units: list[Unit]) -> Txn:
        copy = self.engine.dialect.name == "postgresql"
        try:
            return await self._commit_once(units, copy=copy)
        except IntegrityError as exc:
            if not copy:
                raise
            log.warning("ingest: COPY of a group met a stored row (%s); inserting instead", exc)
            return await self._commit_once(units, copy=False)

    async def _commit_once(self, units: list[Unit], *, copy: bool) -> Txn:
        txn = Txn(copy=copy)
        async with self.engine.begin() as conn:
            batches = [u for u in units if isinstance(u, Batch)]
            await lock_gateways(conn, txn, {b.gateway for b in batches})
            await read_held(conn, txn, batches)
            started: set[str | None] = set()
            for unit in units:
                if unit.gateway is not None and unit.gateway in started:
                    txn.held.pop(unit.gateway, None)  # later batches read what earlier wrote
                started.add(unit.gateway)
                if isinstance(unit, Reject):
                    await self._quarantine(conn, txn, unit.msg, unit.reason, unit.gateway)
                    continue
                try:
                    state = await progress_of(conn, txn, unit)
                except Rejected as exc:
                    owner = None if isinstance(exc, Unregistered) else unit.gateway
                    await self._quarantine(conn, txn, unit.msg, str(exc), owner)
                    continue
                await self._store_batch(conn, txn, unit, state)
                # a group's batches are CPU here (rows, digests): other transactions on this
                # event loop (the live path's) take their turns between them
                await asyncio.sleep(0)
            await _insert_events(conn, txn)
            if txn.progress:
                await conn.execute(
                    update(gateways)
                    .where(gateways.c.gateway_id == bindparam("target"))
                    .values(
                        committed_through=bindparam("committed"),
                        epoch=bindparam("new_epoch"),
                        last_batch_at=func.now(),
                    ),
                    [
                        {"target": gateway, "committed": state.committed, "new_epoch": state.epoch}
                        for gateway, state in txn.progress.items()
                    ],
                )
            await self._bound_quarantine(conn, txn)
        self._known_boots |= txn.boots
        self.stats.add(txn.stats)
        return txn

    async def _store_batch(
        self, conn: AsyncConnection, txn: Txn, batch: Batch, state: Progress
    ) -> None:
        txn.stats.batches += 1
        if batch.epoch is not None and batch.epoch != state.epoch:
            await _insert_events(conn, txn)  # what follows reads the stored events
        if (
            batch.epoch is not None
            and batch.epoch != state.epoch
            and not await self._enter_epoch(conn, txn, batch, state)
        ):
            return
        if batch.first_seq - state.committed - 1 > MAX_SEQ_ADVANCE:
            await self._refuse(
                conn,
                txn,
                batch,
                "seq_jump",
                (
                    f"seq {batch.first_seq} is more than {MAX_SEQ_ADVANCE} beyond the committed "
                    f"{state.committed}: no journal holds that many events; refused"
                ),
            )
            return
        state.acked = True
        state.speaks_epoch = state.speaks_epoch or batch.epoch is not None
        items = batch.items
        held: set[int] = set()  # seqs central already answers for, stored or quarantined
        if batch.first_seq <= state.committed or await beyond_gap(conn, batch, state):
            read_before = txn.held.pop(batch.gateway, None)  # this gateway's first batch
            if read_before is None:
                await _insert_events(conn, txn)  # earlier batches of this group count as stored
            held, index = await compare_with_stored(conn, batch, read_before)
            if index is not None:
                items = await self._conflict(conn, txn, batch, state, index)
        if items:
            state.seen_through = max(state.seen_through, items[-1].seq)
        # below committed too: an event of a range reported lost that turns up is kept
        fresh = [item for item in items if item.seq not in held]
        txn.stats.duplicates += len(items) - len(fresh)
        if batch.lost_from is not None and batch.first_seq - 1 > state.committed:
            lost_first = max(batch.lost_from, state.committed + 1)
            log.error(
                "gateway %s reports events %d–%d lost before acknowledgement",
                batch.gateway,
                lost_first,
                batch.first_seq - 1,
            )
            await conn.execute(
                insert_ignore(conn, lost_ranges),
                [
                    {
                        "gateway_id": batch.gateway,
                        "first_seq": lost_first,
                        "last_seq": batch.first_seq - 1,
                        "reported_at": batch.msg.received_at,
                    }
                ],
            )
        if fresh:
            await self._store_fresh(conn, txn, batch, fresh)
        last = items[-1].seq if items else 0
        if last <= state.committed:
            return
        if batch.start <= state.committed + 1:
            if state.pending is False:  # nothing beyond a gap to merge: no round trip
                state.committed = last
            else:
                state.committed = await merge_pending(conn, batch.gateway, last)
                state.pending = None
        else:
            txn.stats.gaps_seen += 1
            state.gap = state.pending = True
            await conn.execute(
                insert_ignore(conn, pending_ranges),
                [{"gateway_id": batch.gateway, "first_seq": batch.start, "last_seq": last}],
            )

    async def _store_fresh(
        self, conn: AsyncConnection, txn: Txn, batch: Batch, fresh: list[Item]
    ) -> None:
        rows: list[dict[str, Any]] = []
        poisons = [item for item in fresh if isinstance(item, Poison)]
        if poisons:
            await self._quarantine_events(conn, txn, batch, poisons)
        for item in fresh:
            if isinstance(item, Poison):
                continue
            body_json = pydantic_core.to_json(item.body)  # once, for the digest and a COPY
            rows.append(
                {
                    "gateway_id": batch.gateway,
                    "seq": item.seq,
                    "hall_id": batch.hall,
                    "kind": item.kind,
                    "utc": item.utc,
                    "mono_ns": item.mono_ns,
                    "boot": item.boot,
                    "synced": item.synced,
                    "body": JsonText(body_json.decode()) if txn.copy else item.body,
                    "received_at": batch.msg.received_at,
                    "digest": event_digest(item, body_json),
                }
            )
            boot = (batch.gateway, item.boot)
            if item.synced and boot not in self._known_boots and boot not in txn.boots:
                record_boot_clock(txn, batch.gateway, item)
        if rows:
            txn.rows += rows  # inserted with the other batches' (_insert_events)
            txn.stats.events_stored += len(rows)

    async def _enter_epoch(
        self, conn: AsyncConnection, txn: Txn, batch: Batch, state: Progress
    ) -> bool:
        """A batch numbered by another journal than the one central follows. Take it as the
        new lineage when its numbering starts above everything held; else refuse it."""
        previous = state.epoch
        if previous is None:  # the first epoch seen: a new gateway, or one just upgraded
            state.epoch = batch.epoch
            return True
        high = await high_water(conn, batch.gateway)
        start = batch.start
        if start <= high or batch.first_seq - high - 1 > MAX_SEQ_ADVANCE:
            await self._refuse(
                conn,
                txn,
                batch,
                "journal_epoch",
                (
                    f"journal epoch {batch.epoch} (after {previous}) numbers from {start}, but "
                    f"central holds this gateway's seqs through {high}: refused; the gateway is "
                    f"asked to renumber from {high + 1}"
                ),
                rebase=(0, high + 1),
            )
            return False
        await self._alarm(
            conn,
            batch.gateway,
            "journal_epoch",
            f"new journal epoch {batch.epoch} follows {previous} from seq {start}",
        )
        log.warning(
            "gateway %s: new journal epoch %s follows %s from seq %d",
            batch.gateway,
            batch.epoch,
            previous,
            start,
        )
        state.epoch = batch.epoch
        return True

    async def _conflict(
        self, conn: AsyncConnection, txn: Txn, batch: Batch, state: Progress, index: int
    ) -> tuple[Item, ...]:
        """A seq arrived again with other content. Returns the items still to process."""
        seq = batch.items[index].seq
        txn.stats.conflicts += 1
        reason = f"seq {seq} arrived again with other content than the stored event"
        if batch.epoch is None:  # a gateway without epochs cannot renumber: keep it here
            await self._quarantine(conn, txn, batch.msg, reason + "; kept only here", batch.gateway)
            await self._alarm(conn, batch.gateway, "seq_conflict", reason)
            return batch.items
        # what central compared and found equal: the gateway keeps nothing above it
        held = seq - 1 if index > 0 else min(state.seen_through, state.committed)
        await self._refuse(
            conn,
            txn,
            batch,
            "seq_conflict",
            reason + (f"; refused from {seq}, the gateway is asked to renumber"),
            rebase=(held, await high_water(conn, batch.gateway) + 1),
        )
        return batch.items[:index]

    async def _refuse(
        self,
        conn: AsyncConnection,
        txn: Txn,
        batch: Batch,
        alarm: str,
        reason: str,
        rebase: tuple[int, int] | None = None,
    ) -> None:
        """Keep the whole message in quarantine, raise the alarm, and, when the gateway can
        renumber, tell it where its numbering may continue."""
        txn.stats.refused += 1
        await self._quarantine(conn, txn, batch.msg, reason, batch.gateway)
        await self._alarm(conn, batch.gateway, alarm, reason)
        if rebase is not None and batch.epoch is not None:
            hall = txn.progress[batch.gateway].hall
            txn.rebases[(batch.gateway, batch.epoch)] = (hall, *rebase)

    def _decision(self, gateway: str, state: Progress) -> AckDecision:
        replay_from = None
        if state.gap:
            now = time.monotonic()
            last = self._last_replay.get(gateway)
            want = state.committed + 1
            if last is None or last[0] != want or now - last[1] >= REPLAY_REQUEST_INTERVAL_S:
                replay_from = want
                self._last_replay[gateway] = (want, now)
        if not state.speaks_epoch:  # an older gateway: it raises its floor past our ack
            return AckDecision(
                state.hall, gateway, state.committed, replay_from, stored_through=state.committed
            )
        # Never acknowledge what this gateway did not send: a restored journal's own events
        # below our committed seq must be compared first, not trimmed on our word.
        through = min(state.committed, state.seen_through)
        return AckDecision(
            state.hall,
            gateway,
            through,
            replay_from,
            epoch=state.epoch,
            stored_through=state.committed,
        )


async def _insert_events(conn: AsyncConnection, txn: Txn) -> None:
    """The events (and new boots' clocks) gathered so far, one statement each (run in pages
    by the driver; the events by ``COPY`` when the transaction may)."""
    if txn.rows:
        rows, txn.rows = txn.rows, []
        if txn.copy:
            await copy_fresh(conn, events, rows)
        else:
            await conn.execute(insert_ignore(conn, events), rows)
    if txn.boot_rows:
        boots, txn.boot_rows = txn.boot_rows, []
        await conn.execute(insert_ignore(conn, boot_clocks), boots)
