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
say nothing about the data (the database unreachable or locked) leave a group unacknowledged, to
be sent again by the gateway.

Sequence truth: a seq that arrives again with other content than the stored one is refused,
quarantined and raised as an alarm on the gateway (``gateway_alarms``); a batch that would move a
gateway's sequence more than ``MAX_SEQ_ADVANCE`` past what is committed is refused. Journals carry
an epoch (a lineage id made with the journal): a new epoch whose numbering collides with what
central holds is refused and told to renumber above it (``Ack.rebase_to``), so nothing of a
replaced journal is taken for the old one's data and nothing of it is lost.

Quarantine is bounded per gateway: past the bound the oldest rows go first, counted as an alarm.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

import pydantic_core
from pydantic import ValidationError
from sqlalchemy import and_, delete, func, select, update
from sqlalchemy import exc as sa_exc
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from central.store.db import insert_ignore
from central.store.schema import (
    boot_clocks,
    events,
    gateway_alarms,
    gateways,
    lost_ranges,
    pending_ranges,
    quarantine,
)
from hallkit.clock import utc_now
from protocols import events as kinds
from protocols import topics
from protocols.envelope import (
    MAX_BODY_BYTES,
    MAX_EVENTS_PER_BATCH,
    MAX_PAYLOAD_BYTES,
    MAX_SEQ,
    MAX_SEQ_ADVANCE,
    EventBatch,
    EventRecord,
    GatewayState,
)

log = logging.getLogger(__name__)

REPLAY_REQUEST_INTERVAL_S = 2.0  # ask a gateway for the same gap at most this often
QUARANTINE_ROWS_PER_GATEWAY = 1000
QUARANTINE_BYTES_PER_GATEWAY = 8 * 1024 * 1024
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
# errors that say nothing about the data: the message is not quarantined but sent again later
_TRANSIENT = (
    sa_exc.OperationalError,
    sa_exc.InterfaceError,
    sa_exc.DisconnectionError,
    ConnectionError,
    TimeoutError,
)


@dataclass(frozen=True, slots=True)
class Incoming:
    topic: str
    payload: bytes
    received_at: datetime


@dataclass(frozen=True, slots=True)
class AckDecision:
    hall: str
    gateway: str
    committed_through: int
    replay_from: int | None
    epoch: str | None = None
    rebase_to: int | None = None


@dataclass(slots=True)
class IngestStats:
    batches: int = 0
    events_stored: int = 0
    duplicates: int = 0
    quarantined: int = 0
    gaps_seen: int = 0
    conflicts: int = 0
    refused: int = 0
    by_reason: dict[str, int] = field(default_factory=dict)

    def add(self, other: IngestStats) -> None:
        for name in (
            "batches",
            "events_stored",
            "duplicates",
            "quarantined",
            "gaps_seen",
            "conflicts",
            "refused",
        ):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        for key, n in other.by_reason.items():
            self.by_reason[key] = self.by_reason.get(key, 0) + n


class Rejected(Exception):
    """A message (or one event of it) that goes to quarantine, with the reason."""


class _Unregistered(Rejected):
    """From a gateway id central does not know: quarantined in the shared bucket."""


@dataclass(frozen=True, slots=True)
class _Poison:
    """An event of a readable batch that cannot be stored; quarantined whole, by its seq."""

    seq: int
    raw: bytes
    reason: str


_Item = EventRecord | _Poison


@dataclass(frozen=True, slots=True)
class _Batch:
    msg: Incoming
    hall: str
    gateway: str
    epoch: str | None
    lost_from: int | None
    items: tuple[_Item, ...]  # consecutive seqs

    @property
    def first_seq(self) -> int:
        return self.items[0].seq

    @property
    def last_seq(self) -> int:
        return self.items[-1].seq

    @property
    def start(self) -> int:
        return self.lost_from if self.lost_from is not None else self.first_seq

    def part(self, lo: int, hi: int) -> _Batch:
        return replace(self, items=self.items[lo:hi], lost_from=self.lost_from if lo == 0 else None)

    def poisoned(self, reason: str) -> _Batch:
        (item,) = self.items
        if isinstance(item, _Poison):
            return self
        return replace(self, items=(_Poison(item.seq, item.model_dump_json().encode(), reason),))


@dataclass(frozen=True, slots=True)
class _Reject:
    msg: Incoming
    reason: str
    gateway: str | None


_Unit = _Batch | _Reject


@dataclass(slots=True)
class _Progress:
    hall: str
    committed: int
    epoch: str | None
    gap: bool = False
    acked: bool = False  # a batch of the followed numbering was processed: acknowledge it
    speaks_epoch: bool = False  # the gateway sends epochs, so it understands them in acks
    seen_through: int = 0  # highest seq of this gateway's batches compared or stored here
    pending: bool | None = None  # has ranges stored beyond a gap (None: not looked up yet)


@dataclass(slots=True)
class _Txn:
    """What one transaction did; applied to the outcome only once it committed."""

    progress: dict[str, _Progress] = field(default_factory=dict)
    rebases: dict[tuple[str, str], tuple[str, int, int]] = field(default_factory=dict)
    boots: set[tuple[str, str]] = field(default_factory=set)
    quarantined: set[str | None] = field(default_factory=set)
    stats: IngestStats = field(default_factory=IngestStats)


@dataclass(slots=True)
class _Outcome:
    acks: dict[str, _Progress] = field(default_factory=dict)
    rebases: dict[tuple[str, str], tuple[str, int, int]] = field(default_factory=dict)

    def absorb(self, txn: _Txn) -> None:
        for gateway, state in txn.progress.items():
            if not state.acked:
                continue
            earlier = self.acks.get(gateway)
            if earlier is not None:
                state.gap = state.gap or earlier.gap
                state.speaks_epoch = state.speaks_epoch or earlier.speaks_epoch
                state.seen_through = max(state.seen_through, earlier.seen_through)
            self.acks[gateway] = state
        self.rebases.update(txn.rebases)


class Ingestor:
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

        Never raises for what a message contains: what cannot be stored is quarantined."""
        units = [self._read(msg) for msg in messages]
        batches = sorted(
            (u for u in units if isinstance(u, _Batch)), key=lambda b: (b.gateway, b.first_seq)
        )
        outcome = _Outcome()
        await self._commit_isolated(
            [*batches, *(u for u in units if isinstance(u, _Reject))], outcome
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

    async def _commit_isolated(self, units: list[_Unit], outcome: _Outcome) -> None:
        try:
            outcome.absorb(await self._commit(units))
        except _TRANSIENT as exc:
            log.error("ingest: %d messages not committed (%s); awaiting resend", len(units), exc)
        except Exception as exc:
            await self._isolate(units, exc, outcome)

    async def _isolate(self, units: list[_Unit], exc: Exception, outcome: _Outcome) -> None:
        """Split a failed transaction's work until the failing piece stands alone."""
        by_gateway = list(dict.fromkeys(u.gateway for u in units))
        if len(by_gateway) > 1:
            log.warning(
                "ingest: a group of %d messages failed (%s); committing each gateway apart",
                len(units),
                _failure(exc)[:200],
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
        if isinstance(unit, _Batch) and len(unit.items) > 1:
            half = len(unit.items) // 2
            await self._commit_isolated([unit.part(0, half)], outcome)
            await self._commit_isolated([unit.part(half, len(unit.items))], outcome)
            return
        if isinstance(unit, _Batch) and isinstance(unit.items[0], EventRecord):
            try:  # once more alone: a failure that does not repeat was not the event's fault
                outcome.absorb(await self._commit([unit]))
                return
            except Exception as again:
                if isinstance(again, _TRANSIENT):
                    log.error(
                        "ingest: seq %d of %s not committed (%s); awaiting resend",
                        unit.first_seq,
                        unit.gateway,
                        again,
                    )
                    return
                reason = f"store: {_failure(again)}"
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
            _printable(unit.msg.topic)[:200],
            _failure(exc)[:300],
        )

    async def _commit(self, units: list[_Unit]) -> _Txn:
        txn = _Txn()
        async with self.engine.begin() as conn:
            for unit in units:
                if isinstance(unit, _Reject):
                    await self._quarantine(conn, txn, unit.msg, unit.reason, unit.gateway)
                    continue
                try:
                    state = await self._progress(conn, txn, unit)
                except Rejected as exc:
                    owner = None if isinstance(exc, _Unregistered) else unit.gateway
                    await self._quarantine(conn, txn, unit.msg, str(exc), owner)
                    continue
                await self._store_batch(conn, txn, unit, state)
            for gateway, state in txn.progress.items():
                await conn.execute(
                    update(gateways)
                    .where(gateways.c.gateway_id == gateway)
                    .values(
                        committed_through=state.committed,
                        epoch=state.epoch,
                        last_batch_at=func.now(),
                    )
                )
            await self._bound_quarantine(conn, txn)
        self._known_boots |= txn.boots
        self.stats.add(txn.stats)
        return txn

    def _read(self, msg: Incoming) -> _Unit:
        try:
            return self._parse(msg)
        except Rejected as exc:
            return _Reject(msg, str(exc), _gateway_of(msg.topic))
        except Exception as exc:
            return _Reject(msg, f"unreadable: {_failure(exc)}", _gateway_of(msg.topic))

    def _parse(self, msg: Incoming) -> _Batch:
        if len(msg.payload) > self.max_payload:
            raise Rejected(f"payload of {len(msg.payload)} bytes exceeds {self.max_payload}")
        try:
            address = topics.parse(msg.topic)
        except topics.TopicError as exc:
            raise Rejected(f"topic: {exc}") from None
        if address.channel is not topics.Channel.EVENTS:
            raise Rejected(f"channel {address.channel} does not carry events")
        try:
            batch = EventBatch.model_validate_json(msg.payload)
        except ValidationError as exc:
            parsed = _salvage(msg, exc)
        else:
            parsed = _Batch(
                msg,
                batch.hall,
                batch.gateway,
                batch.epoch,
                batch.lost_from,
                tuple(_checked(event) for event in batch.events),
            )
        if (parsed.hall, parsed.gateway) != (address.hall, address.gateway):
            raise Rejected(
                f"envelope says {parsed.hall}/{parsed.gateway} but the topic says "
                f"{address.hall}/{address.gateway}"
            )
        return parsed

    async def _progress(self, conn: AsyncConnection, txn: _Txn, batch: _Batch) -> _Progress:
        state = txn.progress.get(batch.gateway)
        if state is None:
            query = select(
                gateways.c.hall_id,
                gateways.c.committed_through,
                gateways.c.revoked_at,
                gateways.c.epoch,
            ).where(gateways.c.gateway_id == batch.gateway)
            if conn.dialect.name == "postgresql":
                query = query.with_for_update()  # several aggregators may share the stream
            row = (await conn.execute(query)).first()
            if row is None:
                raise _Unregistered(f"unknown gateway {batch.gateway!r} (not registered)")
            if row.revoked_at is not None:
                raise Rejected(f"gateway {batch.gateway!r} was revoked")
            state = _Progress(row.hall_id, row.committed_through, row.epoch)
        if state.hall != batch.hall:
            raise Rejected(
                f"gateway {batch.gateway!r} belongs to hall {state.hall!r}, not {batch.hall!r}"
            )
        txn.progress[batch.gateway] = state
        return state

    async def _store_batch(
        self, conn: AsyncConnection, txn: _Txn, batch: _Batch, state: _Progress
    ) -> None:
        txn.stats.batches += 1
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
        if batch.first_seq <= state.committed or await self._beyond_gap(conn, batch, state):
            held, index = await self._compare(conn, batch)
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
            state.committed = await self._merge_pending(conn, batch.gateway, last)
            state.pending = None if state.pending else state.pending
        else:
            txn.stats.gaps_seen += 1
            state.gap = state.pending = True
            await conn.execute(
                insert_ignore(conn, pending_ranges),
                [{"gateway_id": batch.gateway, "first_seq": batch.start, "last_seq": last}],
            )

    async def _store_fresh(
        self, conn: AsyncConnection, txn: _Txn, batch: _Batch, fresh: list[_Item]
    ) -> None:
        rows: list[dict[str, Any]] = []
        poisons = [item for item in fresh if isinstance(item, _Poison)]
        if poisons:
            await self._quarantine_events(conn, txn, batch, poisons)
        for item in fresh:
            if isinstance(item, _Poison):
                continue
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
                    "body": item.body,
                    "received_at": batch.msg.received_at,
                    "digest": _digest(item),
                }
            )
            boot = (batch.gateway, item.boot)
            if item.synced and boot not in self._known_boots and boot not in txn.boots:
                await self._record_boot_clock(conn, txn, batch.gateway, item)
        if rows:
            await conn.execute(insert_ignore(conn, events), rows)
            txn.stats.events_stored += len(rows)

    async def _enter_epoch(
        self, conn: AsyncConnection, txn: _Txn, batch: _Batch, state: _Progress
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

    async def _beyond_gap(self, conn: AsyncConnection, batch: _Batch, state: _Progress) -> bool:
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

    async def _compare(self, conn: AsyncConnection, batch: _Batch) -> tuple[set[int], int | None]:
        """The batch's seqs central holds (stored or quarantined), and the index of the first
        event held with other content, if any."""
        stored = dict(
            (
                await conn.execute(
                    select(events.c.seq, events.c.digest).where(
                        and_(
                            events.c.gateway_id == batch.gateway,
                            events.c.seq >= batch.first_seq,
                            events.c.seq <= batch.last_seq,
                        )
                    )
                )
            ).all()
        )
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
        conflict = None
        for index, item in enumerate(batch.items):
            if item.seq in stored:
                held = stored[item.seq]  # None: stored before digests, cannot compare
                same = held is None or (
                    isinstance(item, EventRecord)
                    and (held == _digest(item) or await _same_as_stored(conn, batch.gateway, item))
                )
            elif item.seq in kept:
                raw = item.raw if isinstance(item, _Poison) else item.model_dump_json().encode()
                same = _quarantine_digest(batch.msg.topic, raw) in kept[item.seq]
            else:
                continue
            if not same:
                conflict = index
                break
        return set(stored) | set(kept), conflict

    async def _conflict(
        self, conn: AsyncConnection, txn: _Txn, batch: _Batch, state: _Progress, index: int
    ) -> tuple[_Item, ...]:
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
        txn: _Txn,
        batch: _Batch,
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

    async def _merge_pending(self, conn: AsyncConnection, gateway: str, committed: int) -> int:
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

    async def _record_boot_clock(
        self, conn: AsyncConnection, txn: _Txn, gateway: str, event: EventRecord
    ) -> None:
        offset_us = int(event.utc.timestamp() * 1_000_000) - event.mono_ns // 1000
        await conn.execute(
            insert_ignore(conn, boot_clocks),
            [
                {
                    "gateway_id": gateway,
                    "boot": event.boot,
                    "offset_us": offset_us,
                    "from_seq": event.seq,
                }
            ],
        )
        txn.boots.add((gateway, event.boot))

    def _decision(self, gateway: str, state: _Progress) -> AckDecision:
        replay_from = None
        if state.gap:
            now = time.monotonic()
            last = self._last_replay.get(gateway)
            want = state.committed + 1
            if last is None or last[0] != want or now - last[1] >= REPLAY_REQUEST_INTERVAL_S:
                replay_from = want
                self._last_replay[gateway] = (want, now)
        if not state.speaks_epoch:  # an older gateway: it raises its floor past our ack
            return AckDecision(state.hall, gateway, state.committed, replay_from)
        # Never acknowledge what this gateway did not send: a restored journal's own events
        # below our committed seq must be compared first, not trimmed on our word.
        through = min(state.committed, state.seen_through)
        return AckDecision(state.hall, gateway, through, replay_from, epoch=state.epoch)

    # -- state (birth, periodic, Last Will) ------------------------------------------------

    async def ingest_state(self, msg: Incoming) -> GatewayState | None:
        try:
            return await self._store_state(msg)
        except Rejected as exc:
            await self.quarantine_alone(msg, str(exc))
        except Exception as exc:
            if isinstance(exc, _TRANSIENT):
                raise
            await self.quarantine_alone(msg, f"store: {_failure(exc)}")
        return None

    async def _store_state(self, msg: Incoming) -> GatewayState:
        try:
            address = topics.parse(msg.topic)
            state = GatewayState.model_validate_json(msg.payload)
        except topics.TopicError as exc:
            raise Rejected(f"topic: {exc}") from None
        except ValidationError as exc:
            raise Rejected(_describe(exc)) from None
        async with self.engine.begin() as conn:
            row = (
                await conn.execute(
                    select(gateways.c.hall_id).where(gateways.c.gateway_id == address.gateway)
                )
            ).first()
            if (
                row is None
                or row.hall_id != address.hall
                or (state.hall, state.gateway) != (address.hall, address.gateway)
            ):
                raise Rejected("state from an unregistered gateway or for another hall")
            await conn.execute(
                update(gateways)
                .where(gateways.c.gateway_id == address.gateway)
                .values(
                    online=state.online,
                    state=state.model_dump(mode="json"),
                    state_at=msg.received_at,
                )
            )
        return state

    # -- quarantine and alarms -------------------------------------------------------------

    async def quarantine_alone(self, msg: Incoming, reason: str) -> None:
        """Quarantine one message in its own transaction; a failure is logged, not raised."""
        txn = _Txn()
        try:
            async with self.engine.begin() as conn:
                await self._quarantine(conn, txn, msg, reason, _gateway_of(msg.topic))
                await self._bound_quarantine(conn, txn)
        except Exception as exc:
            log.error(
                "ingest: cannot quarantine a message on %s: %s",
                _printable(msg.topic)[:200],
                _failure(exc)[:300],
            )
            return
        self.stats.add(txn.stats)

    async def _quarantine(
        self,
        conn: AsyncConnection,
        txn: _Txn,
        msg: Incoming,
        reason: str,
        gateway: str | None,
        seq: int | None = None,
        payload: bytes | None = None,
    ) -> None:
        log.warning(
            "quarantined message on %s: %s", _printable(msg.topic)[:200], _printable(reason)[:500]
        )
        await conn.execute(
            insert_ignore(conn, quarantine),
            [self._quarantine_row(txn, msg, reason, gateway, seq, payload)],
        )

    async def _quarantine_events(
        self, conn: AsyncConnection, txn: _Txn, batch: _Batch, poisons: list[_Poison]
    ) -> None:
        """A batch's unstorable events in one statement (a batch may hold a thousand)."""
        log.warning(
            "quarantined %d events of %s, seq %d–%d; the first: %s",
            len(poisons),
            batch.gateway,
            poisons[0].seq,
            poisons[-1].seq,
            _printable(poisons[0].reason)[:500],
        )
        await conn.execute(
            insert_ignore(conn, quarantine),
            [
                self._quarantine_row(txn, batch.msg, p.reason, batch.gateway, p.seq, p.raw)
                for p in poisons
            ],
        )

    def _quarantine_row(
        self,
        txn: _Txn,
        msg: Incoming,
        reason: str,
        gateway: str | None,
        seq: int | None,
        payload: bytes | None,
    ) -> dict[str, Any]:
        body = msg.payload if payload is None else payload
        reason = _printable(reason)
        txn.stats.quarantined += 1
        key = reason.split(":")[0][:60]
        txn.stats.by_reason[key] = txn.stats.by_reason.get(key, 0) + 1
        txn.quarantined.add(gateway)
        return {
            "received_at": msg.received_at,
            "topic": _printable(msg.topic)[:1000],
            "gateway_id": gateway,
            "seq": seq,
            "reason": reason[:2000],
            "digest": _quarantine_digest(msg.topic, body),
            "payload": body[: self.max_payload],
            "payload_size": len(body),
        }

    async def _bound_quarantine(self, conn: AsyncConnection, txn: _Txn) -> None:
        """Keep each gateway's quarantine under its bound, dropping the oldest rows first."""
        for gateway in txn.quarantined:
            mine = (
                quarantine.c.gateway_id.is_(None)
                if gateway is None
                else quarantine.c.gateway_id == gateway
            )
            count, size = (
                await conn.execute(
                    select(
                        func.count(), func.coalesce(func.sum(func.length(quarantine.c.payload)), 0)
                    ).where(mine)
                )
            ).one()
            excess_rows, excess_bytes = count - self.quarantine_rows, size - self.quarantine_bytes
            if excess_rows <= 0 and excess_bytes <= 0:
                continue
            cut, dropped = None, 0
            for row_id, length in (
                await conn.execute(
                    select(quarantine.c.id, func.length(quarantine.c.payload))
                    .where(mine)
                    .order_by(quarantine.c.id)
                )
            ).all():
                if excess_rows <= 0 and excess_bytes <= 0:
                    break
                cut, dropped = row_id, dropped + 1
                excess_rows, excess_bytes = excess_rows - 1, excess_bytes - length
            await conn.execute(delete(quarantine).where(and_(mine, quarantine.c.id <= cut)))
            detail = (
                f"quarantine over its bound ({self.quarantine_rows} rows, "
                f"{self.quarantine_bytes} bytes): the {dropped} oldest dropped"
            )
            log.error("gateway %s: %s", gateway, detail)
            if gateway is not None:
                await self._alarm(conn, gateway, "quarantine_dropped", detail, dropped)

    async def alarm_drops(self, dropped: dict[str, tuple[int, int]]) -> None:
        """Raise ``flood_dropped`` on each registered gateway (by "hall/gateway") whose
        messages were dropped unread: (over its rate budget, over its share of slots)."""
        by_id = {
            sender.partition("/")[2]: (sender.partition("/")[0], n) for sender, n in dropped.items()
        }
        async with self.engine.begin() as conn:
            known = (
                await conn.execute(
                    select(gateways.c.gateway_id, gateways.c.hall_id).where(
                        gateways.c.gateway_id.in_(list(by_id))
                    )
                )
            ).all()
            for gateway, hall in known:
                sent_hall, (throttled, shed) = by_id[gateway]
                if sent_hall != hall:
                    continue  # a topic naming another hall: refused by ingest anyway
                await self._alarm(
                    conn,
                    gateway,
                    "flood_dropped",
                    f"{throttled} messages over its rate budget and {shed} over its share of "
                    "receive slots dropped unread lately; the gateway sends them again",
                    throttled + shed,
                )

    async def _alarm(
        self, conn: AsyncConnection, gateway: str, kind: str, detail: str, count: int = 1
    ) -> None:
        now = utc_now()
        detail = _printable(detail)[:2000]
        await conn.execute(
            insert_ignore(conn, gateway_alarms),
            [
                {
                    "gateway_id": gateway,
                    "kind": kind,
                    "count": 0,
                    "first_at": now,
                    "last_at": now,
                    "detail": detail,
                }
            ],
        )
        await conn.execute(
            update(gateway_alarms)
            .where(and_(gateway_alarms.c.gateway_id == gateway, gateway_alarms.c.kind == kind))
            .values(count=gateway_alarms.c.count + count, last_at=now, detail=detail)
        )


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


def _salvage(msg: Incoming, error: ValidationError) -> _Batch:
    """A batch that failed validation as a whole: if its envelope is sound and its seqs
    readable, keep the good events and quarantine the others by seq, so the gateway's stream
    goes on; otherwise the whole message is refused with the first error."""
    first_error = Rejected(_describe(error))
    try:
        doc = json.loads(msg.payload)
    except (ValueError, RecursionError):
        raise first_error from None
    raw_events = doc.get("events") if isinstance(doc, dict) else None
    if not isinstance(raw_events, list) or not 1 <= len(raw_events) <= MAX_EVENTS_PER_BATCH:
        raise first_error
    seqs = [raw.get("seq") if isinstance(raw, dict) else None for raw in raw_events]
    first = seqs[0]
    if (
        type(first) is not int
        or not 1 <= first <= MAX_SEQ - len(seqs)
        or seqs != list(range(first, first + len(seqs)))
    ):
        raise first_error
    header = {key: value for key, value in doc.items() if key != "events"}
    probe = json.dumps({**header, "events": [_template_event(first, msg.received_at)]})
    try:
        envelope = EventBatch.model_validate_json(probe)
    except ValidationError as exc:
        raise Rejected(_describe(exc)) from None
    items: list[_Item] = []
    for seq, raw in zip(seqs, raw_events, strict=True):
        text = _raw_json(raw)
        try:
            items.append(_checked(EventRecord.model_validate_json(text)))
        except ValidationError as exc:
            items.append(_Poison(seq, text.encode(), f"event: {_describe(exc)}"))
        except Exception as exc:
            items.append(_Poison(seq, text.encode(), f"event: {_failure(exc)}"))
    return _Batch(
        msg, envelope.hall, envelope.gateway, envelope.epoch, envelope.lost_from, tuple(items)
    )


def _template_event(seq: int, received_at: datetime) -> dict[str, Any]:
    """A valid event with the batch's first seq: lets the envelope be checked on its own."""
    return {
        "seq": seq,
        "utc": received_at.isoformat().replace("+00:00", "Z"),
        "mono_ns": 0,
        "boot": "0" * 8,
        "synced": False,
        "kind": "gen.sample",
        "body": {"n": 0, "run": ""},
    }


def _raw_json(raw: object) -> str:
    return json.dumps(raw, ensure_ascii=True, separators=(",", ":"))


def _checked(event: EventRecord) -> _Item:
    """The event, or its quarantine form when its body does not fit its kind."""
    try:
        _check_body(event.kind, event.body)
    except Rejected as exc:
        return _Poison(event.seq, event.model_dump_json().encode(), str(exc))
    except Exception as exc:
        return _Poison(event.seq, _raw_or_empty(event), f"body of {event.kind}: {_failure(exc)}")
    return event


def _raw_or_empty(event: EventRecord) -> bytes:
    try:
        return event.model_dump_json().encode()
    except Exception:
        return b""


def _check_body(kind: str, body: dict[str, Any]) -> None:
    if len(str(body)) > MAX_BODY_BYTES * 2:  # cheap bound before the exact one
        raise Rejected(f"body of {kind} is too large")
    try:
        kinds.validate_body(kind, body)
    except kinds.UnknownKind as exc:
        raise Rejected(str(exc)) from None
    except ValidationError as exc:
        raise Rejected(f"body of {kind}: {_describe(exc)}") from None


async def _same_as_stored(conn: AsyncConnection, gateway: str, event: EventRecord) -> bool:
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


def _quarantine_digest(topic_name: str, body: bytes) -> str:
    """Quarantine rows are unique on this: the same refusal twice is kept once."""
    return hashlib.sha256(topic_name.encode("utf-8", "replace") + b"\0" + body).hexdigest()


def _digest(event: EventRecord) -> str:
    """SHA-256 of an event's content as sent (a journal resends the very same document)."""
    doc = [
        event.seq,
        event.utc.isoformat(),
        event.mono_ns,
        event.boot,
        event.synced,
        event.kind,
        event.body,
    ]
    return hashlib.sha256(pydantic_core.to_json(doc)).hexdigest()


def _describe(exc: ValidationError) -> str:
    errors = exc.errors()
    first = errors[0]
    loc = ".".join(str(p) for p in first["loc"])
    if first["loc"] == ("v",):
        return f"schema: unsupported protocol version {first.get('input')!r}"
    more = f" (+{len(errors) - 1} more)" if len(errors) > 1 else ""
    return f"schema: {loc or 'payload'}: {first['msg']}{more}"


def _failure(exc: BaseException) -> str:
    text = str(exc).split("\n[SQL:")[0]  # SQLAlchemy appends the statement and parameters
    return f"{type(exc).__name__}: {text}"[:1000]


def _printable(text: str) -> str:
    """Text safe for every store and log line: control characters (NUL first) escaped."""
    text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


def _gateway_of(topic_name: str) -> str | None:
    parts = topic_name.split("/")
    return _printable(parts[3])[:64] if len(parts) == 5 else None
