"""Chain heads: sealed into the database and a file outside it, read back, published and parsed."""

from __future__ import annotations

import datetime as dt
import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import and_, func, insert, select, text, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from central.records.ledger.chain import LOCK_KEY
from central.rules.workdays import business_date
from central.store.schema_tsledger import ledger_entries, ledger_seals


@dataclass(frozen=True, slots=True)
class Head:
    hall: str
    day: dt.date
    entries: int
    head: str

    def as_json(self) -> dict[str, Any]:
        return {
            "hall": self.hall,
            "day": self.day.isoformat(),
            "entries": self.entries,
            "head": self.head,
        }


async def seal_once(
    engine: AsyncEngine, now: dt.datetime | None = None, mirror: Path | None = None
) -> list[Head]:
    """Seal the head of every chain of today and yesterday that grew since its last seal: a
    row in ``ledger_seals`` and, when ``mirror`` is given, a line appended to that file (the
    format of ``ledger head``, which ``verify-ledger --heads`` reads). Earlier days' chains
    cannot grow any more; their last seal is final."""
    now = now or dt.datetime.now(dt.UTC)
    since = business_date(now) - dt.timedelta(days=1)
    e, s = ledger_entries, ledger_seals
    async with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            if not (
                await conn.execute(text("SELECT pg_try_advisory_xact_lock(:k)"), {"k": LOCK_KEY})
            ).scalar():
                return []  # another aggregator process is at the ledger
        else:  # SQLite's write lock first, as in append_once
            await conn.execute(
                update(ledger_seals).where(text("1 = 0")).values(entries=ledger_seals.c.entries)
            )
        lengths = (
            select(e.c.hall_id, e.c.day, func.max(e.c.position).label("n"))
            .where(e.c.day >= since)
            .group_by(e.c.hall_id, e.c.day)
            .subquery()
        )
        sealed = (
            select(s.c.hall_id, s.c.day, func.max(s.c.entries).label("n"))
            .where(s.c.day >= since)
            .group_by(s.c.hall_id, s.c.day)
            .subquery()
        )
        rows = (
            await conn.execute(
                select(e.c.hall_id, e.c.day, e.c.position, e.c.chain_hash)
                .join(
                    lengths,
                    and_(
                        lengths.c.hall_id == e.c.hall_id,
                        lengths.c.day == e.c.day,
                        lengths.c.n == e.c.position,
                    ),
                )
                .outerjoin(sealed, and_(sealed.c.hall_id == e.c.hall_id, sealed.c.day == e.c.day))
                .where(func.coalesce(sealed.c.n, 0) < e.c.position)
                .order_by(e.c.day, e.c.hall_id)
            )
        ).all()
        new = [Head(r.hall_id, r.day, r.position, r.chain_hash) for r in rows]
        if new:
            await conn.execute(
                insert(s),
                [
                    {
                        "hall_id": h.hall,
                        "day": h.day,
                        "entries": h.entries,
                        "head": h.head,
                        "sealed_at": now,
                    }
                    for h in new
                ],
            )
    if new and mirror is not None:
        _append_lines(
            mirror,
            [
                json.dumps({**h.as_json(), "sealed_at": now.isoformat()}, ensure_ascii=False)
                for h in new
            ],
        )
    return new


def _append_lines(path: Path, lines: Sequence[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    with os.fdopen(fd, "a", encoding="utf-8") as out:
        out.write("".join(f"{line}\n" for line in lines))
        out.flush()
        os.fsync(out.fileno())


async def sealed_heads(
    conn: AsyncConnection, hall: str | None = None, day: dt.date | None = None
) -> list[Head]:
    query = select(ledger_seals).order_by(
        ledger_seals.c.day, ledger_seals.c.hall_id, ledger_seals.c.entries
    )
    if hall is not None:
        query = query.where(ledger_seals.c.hall_id == hall)
    if day is not None:
        query = query.where(ledger_seals.c.day == day)
    return [Head(r.hall_id, r.day, r.entries, r.head) for r in await conn.execute(query)]


async def heads(engine: AsyncEngine, day: dt.date, hall: str | None = None) -> list[Head]:
    """Each hall's chain head for a business day (final once the day is over)."""
    last = (
        select(ledger_entries.c.hall_id, func.max(ledger_entries.c.position).label("n"))
        .where(ledger_entries.c.day == day)
        .group_by(ledger_entries.c.hall_id)
    )
    if hall is not None:
        last = last.where(ledger_entries.c.hall_id == hall)
    sub = last.subquery()
    query = (
        select(ledger_entries.c.hall_id, ledger_entries.c.position, ledger_entries.c.chain_hash)
        .join(
            sub,
            and_(sub.c.hall_id == ledger_entries.c.hall_id, sub.c.n == ledger_entries.c.position),
        )
        .where(ledger_entries.c.day == day)
        .order_by(ledger_entries.c.hall_id)
    )
    async with engine.connect() as conn:
        rows = (await conn.execute(query)).all()
    return [Head(r.hall_id, day, r.position, r.chain_hash) for r in rows]


def parse_heads(lines: Iterable[str]) -> list[Head]:
    """Heads as ``ledger head`` prints them (one JSON object a line)."""
    out = []
    for line in lines:
        if line.strip():
            doc = json.loads(line)
            out.append(
                Head(
                    str(doc["hall"]),
                    dt.date.fromisoformat(doc["day"]),
                    int(doc["entries"]),
                    str(doc["head"]),
                )
            )
    return out
