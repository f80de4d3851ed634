"""Ingest: validate, store each event exactly once, and decide what to acknowledge.

One database transaction holds a group of messages: the events, the quarantined parts and each
gateway's new ``committed_through``. Only after it commits does central acknowledge, so an ack
always means "on disk here". A redelivered batch changes nothing (events are keyed by
(gateway, seq) and inserted with ON CONFLICT DO NOTHING) but is acknowledged again, because the
gateway may have missed the first ack.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pydantic import ValidationError
from sqlalchemy import and_, delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from central.store.db import insert_ignore
from central.store.schema import (
    boot_clocks,
    events,
    gateways,
    lost_ranges,
    pending_ranges,
    quarantine,
)
from protocols import events as kinds
from protocols import topics
from protocols.envelope import MAX_BODY_BYTES, MAX_PAYLOAD_BYTES, EventBatch, GatewayState

log = logging.getLogger(__name__)

REPLAY_REQUEST_INTERVAL_S = 2.0  # ask a gateway for the same gap at most this often


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


@dataclass(slots=True)
class IngestStats:
    batches: int = 0
    events_stored: int = 0
    duplicates: int = 0
    quarantined: int = 0
    gaps_seen: int = 0
    by_reason: dict[str, int] = field(default_factory=dict)


class Rejected(Exception):
    """A message (or one event of it) that goes to quarantine, with the reason."""


@dataclass(slots=True)
class _Progress:
    hall: str
    committed: int
    gap: bool = False


class Ingestor:
    def __init__(self, engine: AsyncEngine, *, max_payload: int = MAX_PAYLOAD_BYTES) -> None:
        self.engine = engine
        self.max_payload = max_payload
        self.stats = IngestStats()
        self._known_boots: set[tuple[str, str]] = set()
        self._last_replay: dict[str, tuple[int, float]] = {}

    # -- events ----------------------------------------------------------------------------

    async def ingest(self, messages: Sequence[Incoming]) -> list[AckDecision]:
        """Store a group of event messages in one transaction; return the acks to publish."""
        checked: list[tuple[Incoming, EventBatch]] = []
        rejects: list[tuple[Incoming, str, str | None]] = []
        for msg in messages:
            try:
                checked.append((msg, self._parse(msg)))
            except Rejected as exc:
                rejects.append((msg, str(exc), _gateway_of(msg.topic)))
        checked.sort(key=lambda item: (item[1].gateway, item[1].first_seq))
        progress: dict[str, _Progress] = {}
        async with self.engine.begin() as conn:
            for msg, batch in checked:
                try:
                    state = await self._progress(conn, progress, batch)
                except Rejected as exc:
                    rejects.append((msg, str(exc), batch.gateway))
                    continue
                await self._store_batch(conn, msg, batch, state)
            for msg, reason, gateway in rejects:
                await self._quarantine(conn, msg, reason, gateway)
            for gateway, state in progress.items():
                await conn.execute(
                    update(gateways).where(gateways.c.gateway_id == gateway)
                    .values(committed_through=state.committed, last_batch_at=func.now()))
        return [self._decision(gateway, state) for gateway, state in progress.items()]

    def _parse(self, msg: Incoming) -> EventBatch:
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
            raise Rejected(_describe(exc)) from None
        if (batch.hall, batch.gateway) != (address.hall, address.gateway):
            raise Rejected(f"envelope says {batch.hall}/{batch.gateway} but the topic says "
                           f"{address.hall}/{address.gateway}")
        return batch

    async def _progress(
        self, conn: AsyncConnection, progress: dict[str, _Progress], batch: EventBatch
    ) -> _Progress:
        state = progress.get(batch.gateway)
        if state is None:
            query = select(gateways.c.hall_id, gateways.c.committed_through,
                           gateways.c.revoked_at).where(gateways.c.gateway_id == batch.gateway)
            if conn.dialect.name == "postgresql":
                query = query.with_for_update()  # several aggregators may share the stream
            row = (await conn.execute(query)).first()
            if row is None:
                raise Rejected(f"unknown gateway {batch.gateway!r} (not registered)")
            if row.revoked_at is not None:
                raise Rejected(f"gateway {batch.gateway!r} was revoked")
            state = _Progress(row.hall_id, row.committed_through)
        if state.hall != batch.hall:
            raise Rejected(f"gateway {batch.gateway!r} belongs to hall {state.hall!r}, "
                           f"not {batch.hall!r}")
        progress[batch.gateway] = state
        return state

    async def _store_batch(
        self, conn: AsyncConnection, msg: Incoming, batch: EventBatch, state: _Progress
    ) -> None:
        self.stats.batches += 1
        start = batch.lost_from if batch.lost_from is not None else batch.first_seq
        if batch.last_seq <= state.committed:
            self.stats.duplicates += len(batch.events)
            return
        if batch.lost_from is not None and batch.first_seq - 1 > state.committed:
            lost_first = max(batch.lost_from, state.committed + 1)
            log.error("gateway %s reports events %d–%d lost before acknowledgement",
                      batch.gateway, lost_first, batch.first_seq - 1)
            await conn.execute(insert_ignore(conn, lost_ranges), [{
                "gateway_id": batch.gateway, "first_seq": lost_first,
                "last_seq": batch.first_seq - 1, "reported_at": msg.received_at}])
        rows: list[dict[str, Any]] = []
        for event in batch.events:
            if event.seq <= state.committed:
                continue
            try:
                _check_body(event.kind, event.body)
            except Rejected as exc:
                await self._quarantine(conn, msg, str(exc), batch.gateway, event.seq,
                                       event.model_dump_json().encode())
                continue
            rows.append({
                "gateway_id": batch.gateway, "seq": event.seq, "hall_id": batch.hall,
                "kind": event.kind, "utc": event.utc, "mono_ns": event.mono_ns,
                "boot": event.boot, "synced": event.synced, "body": event.body,
                "received_at": msg.received_at,
            })
            if event.synced and (batch.gateway, event.boot) not in self._known_boots:
                await self._record_boot_clock(conn, batch.gateway, event)
        if rows:
            await conn.execute(insert_ignore(conn, events), rows)
            self.stats.events_stored += len(rows)
        if start <= state.committed + 1:
            state.committed = await self._merge_pending(conn, batch.gateway, batch.last_seq)
        else:
            self.stats.gaps_seen += 1
            state.gap = True
            await conn.execute(insert_ignore(conn, pending_ranges), [{
                "gateway_id": batch.gateway, "first_seq": start, "last_seq": batch.last_seq}])

    async def _merge_pending(self, conn: AsyncConnection, gateway: str, committed: int) -> int:
        """Extend committed over ranges that arrived early; drop the ranges now covered."""
        while True:
            reach = (await conn.execute(
                select(func.max(pending_ranges.c.last_seq)).where(and_(
                    pending_ranges.c.gateway_id == gateway,
                    pending_ranges.c.first_seq <= committed + 1,
                    pending_ranges.c.last_seq > committed)))).scalar()
            if reach is None:
                break
            committed = reach
        await conn.execute(delete(pending_ranges).where(and_(
            pending_ranges.c.gateway_id == gateway, pending_ranges.c.last_seq <= committed)))
        return committed

    async def _record_boot_clock(self, conn: AsyncConnection, gateway: str, event: Any) -> None:
        offset_us = int(event.utc.timestamp() * 1_000_000) - event.mono_ns // 1000
        await conn.execute(insert_ignore(conn, boot_clocks), [{
            "gateway_id": gateway, "boot": event.boot, "offset_us": offset_us,
            "from_seq": event.seq}])
        self._known_boots.add((gateway, event.boot))

    def _decision(self, gateway: str, state: _Progress) -> AckDecision:
        replay_from = None
        if state.gap:
            now = time.monotonic()
            last = self._last_replay.get(gateway)
            want = state.committed + 1
            if last is None or last[0] != want or now - last[1] >= REPLAY_REQUEST_INTERVAL_S:
                replay_from = want
                self._last_replay[gateway] = (want, now)
        return AckDecision(state.hall, gateway, state.committed, replay_from)

    # -- state (birth, periodic, Last Will) ------------------------------------------------

    async def ingest_state(self, msg: Incoming) -> GatewayState | None:
        try:
            address = topics.parse(msg.topic)
            state = GatewayState.model_validate_json(msg.payload)
        except (topics.TopicError, ValidationError) as exc:
            reason = _describe(exc) if isinstance(exc, ValidationError) else f"topic: {exc}"
            await self._quarantine_alone(msg, reason)
            return None
        async with self.engine.begin() as conn:
            row = (await conn.execute(select(gateways.c.hall_id).where(
                gateways.c.gateway_id == address.gateway))).first()
            if row is None or row.hall_id != address.hall or (state.hall, state.gateway) != (
                    address.hall, address.gateway):
                await self._quarantine(conn, msg, "state from an unregistered gateway or for "
                                       "another hall", address.gateway)
                return None
            await conn.execute(update(gateways).where(gateways.c.gateway_id == address.gateway)
                               .values(online=state.online, state=state.model_dump(mode="json"),
                                       state_at=msg.received_at))
        return state

    # -- quarantine ------------------------------------------------------------------------

    async def _quarantine_alone(self, msg: Incoming, reason: str) -> None:
        async with self.engine.begin() as conn:
            await self._quarantine(conn, msg, reason, _gateway_of(msg.topic))

    async def _quarantine(
        self,
        conn: AsyncConnection,
        msg: Incoming,
        reason: str,
        gateway: str | None,
        seq: int | None = None,
        payload: bytes | None = None,
    ) -> None:
        body = msg.payload if payload is None else payload
        digest = hashlib.sha256(msg.topic.encode() + b"\0" + body).hexdigest()
        self.stats.quarantined += 1
        key = reason.split(":")[0][:60]
        self.stats.by_reason[key] = self.stats.by_reason.get(key, 0) + 1
        log.warning("quarantined message on %s: %s", msg.topic[:200], reason)
        await conn.execute(insert_ignore(conn, quarantine), [{
            "received_at": msg.received_at, "topic": msg.topic[:1000], "gateway_id": gateway,
            "seq": seq, "reason": reason[:2000], "digest": digest,
            "payload": body[: self.max_payload], "payload_size": len(body)}])


def _check_body(kind: str, body: dict[str, Any]) -> None:
    if len(str(body)) > MAX_BODY_BYTES * 2:  # cheap bound before the exact one
        raise Rejected(f"body of {kind} is too large")
    try:
        kinds.validate_body(kind, body)
    except kinds.UnknownKind as exc:
        raise Rejected(str(exc)) from None
    except ValidationError as exc:
        raise Rejected(f"body of {kind}: {_describe(exc)}") from None


def _describe(exc: ValidationError) -> str:
    errors = exc.errors()
    first = errors[0]
    loc = ".".join(str(p) for p in first["loc"])
    if first["loc"] == ("v",):
        return f"schema: unsupported protocol version {first.get('input')!r}"
    more = f" (+{len(errors) - 1} more)" if len(errors) > 1 else ""
    return f"schema: {loc or 'payload'}: {first['msg']}{more}"


def _gateway_of(topic_name: str) -> str | None:
    parts = topic_name.split("/")
    return parts[3][:64] if len(parts) == 5 else None
