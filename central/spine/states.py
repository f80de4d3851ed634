"""Gateway state messages (birth, every ``state_interval_s``, Last Will) kept in memory and
written together: the Ingestor's ``StateWriting`` (one transaction for many gateways) and the
``StateBook`` that keeps the latest of each until the next flush.

Two thousand gateways send their state every ten seconds: two hundred messages a second, each
its own transaction awaited in turn, was most of what one aggregator could do. Only the latest
state of a gateway matters, so each one received replaces the one waiting for that gateway, and
every ``FLUSH_INTERVAL_S`` all waiting states are written in one transaction
(``Ingestor.ingest_states``: one lookup, one UPDATE run). Whatever reads a gateway's state (the
API, the hall pages, ``/healthz``, lag) sees it within about a second.

A state lost in a crash before its flush costs nothing: the gateway sends a new one within its
interval, and the broker keeps the last one retained.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any

from pydantic import ValidationError
from sqlalchemy import bindparam, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from central.spine.quarantine import Quarantining
from central.spine.reading import Incoming, Rejected, describe, failure, transient
from central.store.schema import gateways
from protocols import topics
from protocols.envelope import GatewayState

log = logging.getLogger(__name__)

FLUSH_INTERVAL_S = 0.5
MAX_WAITING = 50_000  # distinct senders waiting; beyond it the intake waits for a flush


class StateWriting(Quarantining):
    """The Ingestor's state methods (a mixin, like its quarantine)."""

    async def ingest_state(self, msg: Incoming) -> GatewayState | None:
        """One state message stored now (see ``ingest_states``)."""
        (stored,) = await self.ingest_states([msg])
        return stored

    async def ingest_states(self, messages: Sequence[Incoming]) -> list[GatewayState | None]:
        """Store the state messages of several gateways in one transaction: one lookup of
        their registrations, one UPDATE run for all (``central.spine.states`` keeps the latest
        per gateway and calls this about twice a second). What is refused is quarantined;
        when the shared transaction fails, each message is stored alone, so one gateway's
        state the store cannot hold never costs another's. Transient errors raise."""
        read: list[tuple[Incoming, GatewayState] | None] = []
        for msg in messages:
            try:
                read.append((msg, _read_state(msg)))
            except Rejected as exc:
                await self.quarantine_alone(msg, str(exc))
                read.append(None)
        valid = [r for r in read if r is not None]
        if not valid:
            return [None] * len(messages)
        stored: dict[Incoming, GatewayState] = {}
        try:
            async with self.engine.begin() as conn:
                refused = await self._store_states(conn, valid)
        except Exception as exc:
            if transient(exc):
                raise
            if len(valid) == 1:
                await self.quarantine_alone(valid[0][0], f"store: {failure(exc)}")
            else:
                for msg, _ in valid:
                    alone = await self.ingest_state(msg)
                    if alone is not None:
                        stored[msg] = alone
        else:
            for msg, reason in refused.items():
                await self.quarantine_alone(msg, reason)
            stored = {msg: state for msg, state in valid if msg not in refused}
        return [None if r is None else stored.get(r[0]) for r in read]  # in the order given

    async def _store_states(
        self, conn: AsyncConnection, valid: list[tuple[Incoming, GatewayState]]
    ) -> dict[Incoming, str]:
        """The update of every registered sender; returns the refused messages and why."""
        senders = {state.gateway for _, state in valid}
        found = await conn.execute(
            select(gateways.c.gateway_id, gateways.c.hall_id).where(
                gateways.c.gateway_id.in_(senders)
            )
        )
        halls = {row.gateway_id: row.hall_id for row in found}
        refused: dict[Incoming, str] = {}
        rows: list[dict[str, Any]] = []
        for msg, state in valid:
            if halls.get(state.gateway) != state.hall:
                refused[msg] = "state from an unregistered gateway or for another hall"
                continue
            rows.append(
                {
                    "target": state.gateway,
                    "online": state.online,
                    "state": state.model_dump(mode="json"),
                    "state_at": msg.received_at,
                }
            )
        if rows:
            await conn.execute(
                update(gateways)
                .where(gateways.c.gateway_id == bindparam("target"))
                .values(
                    online=bindparam("online"),
                    state=bindparam("state"),
                    state_at=bindparam("state_at"),
                ),
                rows,
            )
        return refused


class StateBook:
    """The latest state message of each gateway, until the next flush."""

    def __init__(self, ingestor: StateWriting, interval_s: float = FLUSH_INTERVAL_S) -> None:
        self.ingestor = ingestor
        self.interval_s = interval_s
        self._waiting: dict[str, Incoming] = {}  # by topic: one gateway's state channel
        self._room = asyncio.Event()
        self._room.set()
        self.flushed = 0  # state messages written
        self.replaced = 0  # superseded before a flush: never written

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    async def offer(self, msg: Incoming) -> None:
        """Keep ``msg`` as its gateway's latest state; waits only when the book is full."""
        while len(self._waiting) >= MAX_WAITING and msg.topic not in self._waiting:
            self._room.clear()
            await self._room.wait()
        if self._waiting.pop(msg.topic, None) is not None:
            self.replaced += 1
        self._waiting[msg.topic] = msg  # last in arrival order: the latest of that gateway

    async def flush(self) -> int:
        """Write everything waiting in one go; on a transient failure the states are kept for
        the next try unless a newer one arrived meanwhile."""
        if not self._waiting:
            return 0
        batch, self._waiting = self._waiting, {}
        try:
            await self.ingestor.ingest_states(list(batch.values()))
        except Exception:
            for topic, msg in batch.items():
                self._waiting.setdefault(topic, msg)
            raise
        finally:
            self._room.set()
        self.flushed += len(batch)
        return len(batch)

    async def run_forever(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            try:
                await self.flush()
            except Exception:
                log.exception("ingest: %d gateway states not written; trying again", self.waiting)


def _read_state(msg: Incoming) -> GatewayState:
    """A state message read and checked against its topic; Rejected says why not."""
    try:
        address = topics.parse(msg.topic)
        state = GatewayState.model_validate_json(msg.payload)
    except topics.TopicError as exc:
        raise Rejected(f"topic: {exc}") from None
    except ValidationError as exc:
        raise Rejected(describe(exc)) from None
    if (state.hall, state.gateway) != (address.hall, address.gateway):
        raise Rejected("state from an unregistered gateway or for another hall")
    return state
