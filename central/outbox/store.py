"""The outbox table: enqueue (idempotent), claim with a lease, and record what a try did.

``enqueue`` is the one entry point for every producer (the 好差评 feed, ladder warnings, and
later work orders and complaints): call it inside the producer's own transaction, so a message
exists exactly when what caused it was committed. The same ``(channel, key)`` twice is one
message; the key goes to the receiver as ``Idempotency-Key`` so that a receiver whose answer
was lost recognises the repeat.

Claims follow the correlation work queue (``central.correlation.workqueue``): free rows are
taken with ``FOR UPDATE SKIP LOCKED`` on PostgreSQL, held under a lease measured on the
database's clock; a process killed mid-send holds its messages only until the lease ends, and
a finish only counts while the row is still the worker's.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from sqlalchemy import and_, delete, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from central.correlation.workqueue import db_now
from central.outbox.policy import scrub
from central.store.db import insert_ignore
from central.store.schema_outbox import outbox


class Channel(StrEnum):
    PLATFORM_HTTP = "platform_http"
    PLATFORM_FILE = "platform_file"
    SMS = "sms"
    EMAIL = "email"
    WEBHOOK = "webhook"


class Status(StrEnum):
    PENDING = "pending"
    SENDING = "sending"
    DELIVERED = "delivered"
    FAILED = "failed"
    HELD = "held"
    WAITING = "waiting"  # not due until an event releases it (an applicant's overdue apology)


class Audience(StrEnum):
    PLATFORM = "platform"
    STAFF = "staff"
    CITIZEN = "citizen"


@dataclass(frozen=True, slots=True)
class Message:
    id: int
    channel: str
    idem_key: str
    kind: str
    audience: str
    recipient: str
    payload: Any
    attempts: int  # including the one under way


async def enqueue(
    conn: AsyncConnection,
    *,
    channel: Channel,
    key: str,
    kind: str,
    recipient: str,
    payload: Any,
    audience: Audience = Audience.PLATFORM,
    not_before: dt.datetime | None = None,
    status: Status = Status.PENDING,
) -> int:
    """Add a message unless ``(channel, key)`` is there already; its id either way.

    ``recipient`` is a reference (``platform``, ``staff:000123``, ``leader:公安局``), never a
    phone number or address: those are looked up when the message is sent."""
    now = dt.datetime.now(dt.UTC)
    await conn.execute(
        insert_ignore(conn.dialect, outbox).values(
            channel=channel.value,
            idem_key=key,
            kind=kind,
            audience=audience.value,
            recipient=recipient,
            payload=payload,
            status=status.value,
            attempts=0,
            next_attempt_at=not_before or now,
            created_at=now,
        )
    )
    found = await conn.execute(
        select(outbox.c.id).where(outbox.c.channel == channel.value, outbox.c.idem_key == key)
    )
    return int(found.scalar_one())


def _free(now: dt.datetime) -> Any:
    c = outbox.c
    return or_(
        and_(c.status == Status.PENDING.value, c.next_attempt_at <= now),
        and_(c.status == Status.SENDING.value, c.lease_until < now),  # its sender died
    )


async def claim(conn: AsyncConnection, worker: str, limit: int, lease_s: float) -> list[Message]:
    """Up to ``limit`` due messages, oldest due first, now ``worker``'s for ``lease_s``; each
    claim counts as an attempt (a message that kills its sender still runs out of tries)."""
    now = await db_now(conn)
    c = outbox.c
    free = select(c.id).where(_free(now)).order_by(c.next_attempt_at, c.id).limit(limit)
    if conn.dialect.name == "postgresql":
        free = free.with_for_update(skip_locked=True)
    rows = (
        await conn.execute(
            update(outbox)
            .where(c.id.in_(free))
            .values(
                status=Status.SENDING.value,
                claimed_by=worker,
                lease_until=now + dt.timedelta(seconds=lease_s),
                attempts=c.attempts + 1,
            )
            .returning(
                c.id, c.channel, c.idem_key, c.kind, c.audience, c.recipient, c.payload, c.attempts
            )
        )
    ).all()
    return sorted((Message(*r) for r in rows), key=lambda m: m.id)


async def _finish(conn: AsyncConnection, worker: str, message_id: int, **values: Any) -> bool:
    c = outbox.c
    done = await conn.execute(
        update(outbox)
        .where(c.id == message_id, c.claimed_by == worker, c.status == Status.SENDING.value)
        .values(claimed_by=None, lease_until=None, **values)
    )
    return bool(done.rowcount)


def _payload(payload: Any) -> dict[str, Any]:
    return {} if payload is None else {"payload": payload}


async def delivered(
    conn: AsyncConnection, worker: str, message_id: int, at: dt.datetime, payload: Any = None
) -> bool:
    """``payload``: replaces the stored one (a phone number erased once sent)."""
    return await _finish(
        conn,
        worker,
        message_id,
        status=Status.DELIVERED.value,
        delivered_at=at,
        last_error=None,
        **_payload(payload),
    )


async def retry(
    conn: AsyncConnection, worker: str, message_id: int, at: dt.datetime, error: str
) -> bool:
    return await _finish(
        conn,
        worker,
        message_id,
        status=Status.PENDING.value,
        next_attempt_at=at,
        last_error=scrub(error),
    )


async def postpone(
    conn: AsyncConnection, worker: str, message_id: int, at: dt.datetime, why: str
) -> bool:
    """Not tried (quiet hours, a channel not configured): the claim gives its attempt back."""
    return await _finish(
        conn,
        worker,
        message_id,
        status=Status.PENDING.value,
        next_attempt_at=at,
        attempts=outbox.c.attempts - 1,
        last_error=scrub(why),
    )


async def fail(
    conn: AsyncConnection, worker: str, message_id: int, error: str, payload: Any = None
) -> bool:
    return await _finish(
        conn,
        worker,
        message_id,
        status=Status.FAILED.value,
        last_error=scrub(error),
        **_payload(payload),
    )


async def hold(conn: AsyncConnection, worker: str, message_id: int, why: str) -> bool:
    return await _finish(
        conn,
        worker,
        message_id,
        status=Status.HELD.value,
        attempts=outbox.c.attempts - 1,
        last_error=scrub(why),
    )


async def sent_since(
    conn: AsyncConnection, channel: str, recipient: str, since: dt.datetime
) -> int:
    """Messages delivered to ``recipient`` on ``channel`` since ``since`` (the rate limit)."""
    c = outbox.c
    found = await conn.execute(
        select(func.count()).where(
            c.recipient == recipient, c.channel == channel, c.delivered_at >= since
        )
    )
    return int(found.scalar_one())


async def counts(conn: AsyncConnection, kind: str | None = None) -> dict[str, int]:
    """Messages by status (every status named, zero included)."""
    query = select(outbox.c.status, func.count()).group_by(outbox.c.status)
    if kind is not None:
        query = query.where(outbox.c.kind == kind)
    found = {s.value: 0 for s in Status}
    for status, n in await conn.execute(query):
        found[status] = int(n)
    return found


async def by_channel(conn: AsyncConnection) -> dict[str, dict[str, int]]:
    """Messages by channel, then status (every status named, zero included)."""
    c = outbox.c
    found: dict[str, dict[str, int]] = {}
    query = select(c.channel, c.status, func.count()).group_by(c.channel, c.status)
    for channel, status, n in await conn.execute(query):
        found.setdefault(channel, {s.value: 0 for s in Status})[status] = int(n)
    return found


UNSENT = (Status.PENDING.value, Status.HELD.value, Status.WAITING.value)


async def withdraw(conn: AsyncConnection, channel: Channel, key: str) -> int:
    """Delete the message ``key`` if it has not gone out (nor is going out now), with whatever
    personal data its payload holds; the number deleted."""
    c = outbox.c
    done = await conn.execute(
        delete(outbox).where(c.channel == channel.value, c.idem_key == key, c.status.in_(UNSENT))
    )
    return int(done.rowcount)


async def release(conn: AsyncConnection, ids: list[int], now: dt.datetime) -> int:
    """Held or failed messages sent again from now, their attempts counted afresh (an operator
    lifted a rate limit or fixed a receiver); the number released."""
    c = outbox.c
    done = await conn.execute(
        update(outbox)
        .where(c.id.in_(ids), c.status.in_([Status.HELD.value, Status.FAILED.value]))
        .values(status=Status.PENDING.value, attempts=0, next_attempt_at=now, last_error=None)
    )
    return int(done.rowcount)


__all__ = [
    "Audience",
    "Channel",
    "Message",
    "Status",
    "by_channel",
    "claim",
    "counts",
    "delivered",
    "enqueue",
    "fail",
    "hold",
    "postpone",
    "release",
    "retry",
    "sent_since",
    "withdraw",
]
