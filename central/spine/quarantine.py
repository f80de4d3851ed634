"""Quarantine and alarms: what cannot be stored is kept aside, bounded per gateway, and
raised as a gateway alarm."""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import and_, delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from central.spine.outcome import IngestStats, Txn
from central.spine.reading import (
    Batch,
    Incoming,
    Poison,
    failure,
    gateway_of,
    printable,
    quarantine_digest,
)
from central.store.db import insert_ignore
from central.store.schema import (
    gateway_alarms,
    gateways,
    quarantine,
)
from hallkit.clock import utc_now

log = logging.getLogger(__name__)


class Quarantining:
    """The Ingestor's quarantine and alarm methods (a mixin: they share its engine, limits
    and stats)."""

    engine: AsyncEngine
    stats: IngestStats
    max_payload: int
    quarantine_rows: int
    quarantine_bytes: int

    async def quarantine_alone(self, msg: Incoming, reason: str) -> None:
        """Quarantine one message in its own transaction; a failure is logged, not raised."""
        txn = Txn()
        try:
            async with self.engine.begin() as conn:
                await self._quarantine(conn, txn, msg, reason, gateway_of(msg.topic))
                await self._bound_quarantine(conn, txn)
        except Exception as exc:
            log.error(
                "ingest: cannot quarantine a message on %s: %s",
                printable(msg.topic)[:200],
                failure(exc)[:300],
            )
            return
        self.stats.add(txn.stats)

    async def _quarantine(
        self,
        conn: AsyncConnection,
        txn: Txn,
        msg: Incoming,
        reason: str,
        gateway: str | None,
        seq: int | None = None,
        payload: bytes | None = None,
    ) -> None:
        log.warning(
            "quarantined message on %s: %s", printable(msg.topic)[:200], printable(reason)[:500]
        )
        await conn.execute(
            insert_ignore(conn, quarantine),
            [self._quarantine_row(txn, msg, reason, gateway, seq, payload)],
        )

    async def _quarantine_events(
        self, conn: AsyncConnection, txn: Txn, batch: Batch, poisons: list[Poison]
    ) -> None:
        """A batch's unstorable events in one statement (a batch may hold a thousand)."""
        log.warning(
            "quarantined %d events of %s, seq %d–%d; the first: %s",
            len(poisons),
            batch.gateway,
            poisons[0].seq,
            poisons[-1].seq,
            printable(poisons[0].reason)[:500],
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
        txn: Txn,
        msg: Incoming,
        reason: str,
        gateway: str | None,
        seq: int | None,
        payload: bytes | None,
    ) -> dict[str, Any]:
        body = msg.payload if payload is None else payload
        reason = printable(reason)
        txn.stats.quarantined += 1
        key = reason.split(":")[0][:60]
        txn.stats.by_reason[key] = txn.stats.by_reason.get(key, 0) + 1
        txn.quarantined.add(gateway)
        return {
            "received_at": msg.received_at,
            "topic": printable(msg.topic)[:1000],
            "gateway_id": gateway,
            "seq": seq,
            "reason": reason[:2000],
            "digest": quarantine_digest(msg.topic, body),
            "payload": body[: self.max_payload],
            "payload_size": len(body),
        }

    async def _bound_quarantine(self, conn: AsyncConnection, txn: Txn) -> None:
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
        detail = printable(detail)[:2000]
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
