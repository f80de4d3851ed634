"""Remote commands, central's side: queue, sign and publish, record the gateways' results.

``queue_command`` (the API and the CLI call it) validates the command, takes the gateway's next
version from ``command_counters`` in the same transaction and records the command unsigned.
``run_forever`` (one per aggregator process; on PostgreSQL only the holder of an advisory lock
publishes) signs queued commands with central's Ed25519 key, publishes them QoS 1 on the
gateway's ``cmd`` topic in version order, and marks each sent once the broker has it. A gateway
refuses a version at or below one it accepted, so publishing out of order would lose the lower
one: per gateway, nothing is published past a command that could not be sent.

``record_result`` stores what a gateway answered on ``result``; a redelivered answer is stored
once (keyed by its digest).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from pydantic import ValidationError
from sqlalchemy import and_, func, insert, select, text, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from central.gateways.command_signing import DEFAULT_TTL, CommandSigner
from central.spine.reading import Incoming
from central.store.db import insert_ignore
from central.store.schema import gateways
from central.store.schema_ops import command_counters, command_results, gateway_commands
from hallkit.clock import utc_now
from protocols import topics
from protocols.commands import (
    MAX_COMMAND_BYTES,
    MAX_COMMAND_TTL,
    Command,
    CommandName,
    CommandResult,
)
from protocols.envelope import encode

log = logging.getLogger(__name__)

POLL_INTERVAL_S = 0.5  # how soon a queued command leaves; the API answers before that
PUBLISH_TIMEOUT_S = 10.0  # no PUBACK by then: try again (the gateway refuses a duplicate)
# Any constant that no other part of central uses as its advisory lock key.
ADVISORY_LOCK_KEY = 0x48570001


class CommandError(ValueError):
    """A command that cannot be queued (unknown or revoked gateway, invalid args)."""


@dataclass(frozen=True, slots=True)
class QueuedCommand:
    id: str
    gateway: str
    hall: str
    version: int
    name: str
    args: dict[str, Any]
    issued_at: datetime
    expires_at: datetime


async def next_version(conn: AsyncConnection, gateway: str) -> int:
    """Take the gateway's next command version (call inside the transaction that uses it)."""
    await conn.execute(
        insert_ignore(conn, command_counters), [{"gateway_id": gateway, "last_version": 0}]
    )
    query = select(command_counters.c.last_version).where(command_counters.c.gateway_id == gateway)
    if conn.dialect.name == "postgresql":
        query = query.with_for_update()
    version = int((await conn.execute(query)).scalar_one()) + 1
    await conn.execute(
        update(command_counters)
        .where(command_counters.c.gateway_id == gateway)
        .values(last_version=version)
    )
    return version


async def last_version(engine: AsyncEngine, gateway: str) -> int:
    """The highest version ever issued to this gateway id (0 if none): a bundle's floor."""
    async with engine.connect() as conn:
        value = (
            await conn.execute(
                select(command_counters.c.last_version).where(
                    command_counters.c.gateway_id == gateway
                )
            )
        ).scalar()
    return int(value or 0)


async def queue_command(
    engine: AsyncEngine,
    gateway: str,
    name: CommandName,
    args: Mapping[str, Any],
    *,
    requested_by: str = "",
    ttl: timedelta = DEFAULT_TTL,
    now: datetime | None = None,
) -> QueuedCommand:
    """Validate and record a command for ``gateway``; an aggregator publishes it shortly."""
    if not timedelta(0) < ttl <= MAX_COMMAND_TTL:
        raise CommandError(f"ttl must be between 0 and {MAX_COMMAND_TTL}")
    issued = now or utc_now()
    async with engine.begin() as conn:
        row = (
            await conn.execute(
                select(gateways.c.hall_id, gateways.c.revoked_at).where(
                    gateways.c.gateway_id == gateway
                )
            )
        ).first()
        if row is None:
            raise CommandError(f"unknown gateway {gateway!r}")
        if row.revoked_at is not None:
            raise CommandError(f"gateway {gateway!r} is revoked")
        version = await next_version(conn, gateway)
        try:
            # The same model the gateway parses: what we queue is what it will accept.
            command = Command(
                id=_uuid(),
                hall=row.hall_id,
                gateway=gateway,
                version=version,
                issued_at=issued,
                expires_at=issued + ttl,
                name=name,
                args=dict(args),
            )
        except ValidationError as exc:
            raise CommandError(_describe(exc)) from None
        if len(encode(command)) + 100 > MAX_COMMAND_BYTES:  # + room for the signature
            raise CommandError(f"command is larger than {MAX_COMMAND_BYTES} bytes")
        await conn.execute(
            insert(gateway_commands).values(
                id=command.id,
                gateway_id=gateway,
                hall_id=row.hall_id,
                version=version,
                name=name,
                args=command.args,
                issued_at=command.issued_at,
                expires_at=command.expires_at,
                requested_by=requested_by[:200],
                publish_attempts=0,
            )
        )
    return QueuedCommand(
        command.id,
        gateway,
        row.hall_id,
        version,
        name,
        command.args,
        command.issued_at,
        command.expires_at,
    )


def _uuid() -> str:
    import uuid

    return str(uuid.uuid4())


def _describe(exc: ValidationError) -> str:
    first = exc.errors()[0]
    where = ".".join(str(p) for p in first["loc"])
    return f"{where + ': ' if where else ''}{first['msg']}"


# -- publishing ------------------------------------------------------------------------------

# publish(topic, payload) → something with is_published() (paho's MQTTMessageInfo)
Publisher = Callable[[str, bytes], Any]


class CommandPublisher:
    """Signs and publishes the outbox; one instance per aggregator process."""

    def __init__(
        self,
        engine: AsyncEngine,
        signer: CommandSigner,
        publish: Publisher,
        connected: Callable[[], bool],
    ) -> None:
        self.engine = engine
        self.signer = signer
        self._publish = publish
        self._connected = connected
        self.published = 0

    async def publish_queued(self) -> int:
        """One pass over the outbox; returns how many commands went out."""
        if not self._connected():
            return 0
        async with self.engine.connect() as conn:
            rows = (
                await conn.execute(
                    select(gateway_commands)
                    .where(gateway_commands.c.sent_at.is_(None))
                    .order_by(gateway_commands.c.gateway_id, gateway_commands.c.version)
                    .limit(500)
                )
            ).all()
        blocked: set[str] = set()
        sent = 0
        for row in rows:
            if row.gateway_id in blocked:
                continue
            if not await self._send(row):
                blocked.add(row.gateway_id)  # keep the order: nothing past a stuck version
                continue
            sent += 1
        return sent

    async def _send(self, row: Any) -> bool:
        command = self.signer.sign(
            Command(
                id=row.id,
                hall=row.hall_id,
                gateway=row.gateway_id,
                version=row.version,
                issued_at=row.issued_at,
                expires_at=row.expires_at,
                name=row.name,
                args=row.args,
            )
        )
        async with self.engine.begin() as conn:
            await conn.execute(
                update(gateway_commands)
                .where(gateway_commands.c.id == row.id)
                .values(publish_attempts=gateway_commands.c.publish_attempts + 1)
            )
        info = self._publish(
            topics.topic(row.hall_id, row.gateway_id, topics.Channel.CMD), encode(command)
        )
        deadline = asyncio.get_running_loop().time() + PUBLISH_TIMEOUT_S
        while not _published(info):
            if asyncio.get_running_loop().time() > deadline or not self._connected():
                log.warning(
                    "commands: no PUBACK for %s v%d to %s; will publish again",
                    row.name,
                    row.version,
                    row.gateway_id,
                )
                return False
            await asyncio.sleep(0.02)
        async with self.engine.begin() as conn:
            await conn.execute(
                update(gateway_commands)
                .where(gateway_commands.c.id == row.id)
                .values(sent_at=utc_now())
            )
        self.published += 1
        log.info(
            "commands: sent %s v%d to %s/%s", row.name, row.version, row.hall_id, row.gateway_id
        )
        return True


def _published(info: Any) -> bool:
    """PUBACK received; paho raises instead of answering False when the send itself failed."""
    try:
        return bool(info.is_published())
    except (RuntimeError, ValueError):
        return False


async def run_forever(
    engine: AsyncEngine,
    signer: CommandSigner,
    publish: Publisher,
    connected: Callable[[], bool],
    interval: float = POLL_INTERVAL_S,
) -> None:
    """The publishing job of an aggregator process (started in ``Aggregator.start``)."""
    publisher = CommandPublisher(engine, signer, publish, connected)
    if engine.dialect.name == "postgresql":
        await _as_leader(engine, lambda: _loop(publisher, interval))
    else:
        await _loop(publisher, interval)


async def _loop(publisher: CommandPublisher, interval: float) -> None:
    while True:
        try:
            await publisher.publish_queued()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("commands: publishing failed; retrying")
        await asyncio.sleep(interval)


async def _as_leader(engine: AsyncEngine, work: Callable[[], Awaitable[None]]) -> None:
    """Run ``work`` only while this process holds the advisory lock (several aggregators)."""
    while True:
        async with engine.connect() as conn:
            got = (
                await conn.execute(
                    text("SELECT pg_try_advisory_lock(:k)"), {"k": ADVISORY_LOCK_KEY}
                )
            ).scalar()
            await conn.commit()
            if got:
                try:
                    await work()
                finally:
                    with contextlib.suppress(Exception):
                        await conn.execute(
                            text("SELECT pg_advisory_unlock(:k)"), {"k": ADVISORY_LOCK_KEY}
                        )
        await asyncio.sleep(2.0)


# -- results ---------------------------------------------------------------------------------


async def record_result(engine: AsyncEngine, msg: Incoming) -> CommandResult | None:
    """Store a gateway's answer; None (and a warning) for anything that is not one."""
    try:
        address = topics.parse(msg.topic)
        if address.channel is not topics.Channel.RESULT:
            raise topics.TopicError(f"{msg.topic} is not a result topic")
        result = CommandResult.model_validate_json(msg.payload)
    except (topics.TopicError, ValidationError) as exc:
        log.warning(
            "commands: ignoring malformed result on %s: %s", msg.topic[:200], str(exc)[:300]
        )
        return None
    if (result.hall, result.gateway) != (address.hall, address.gateway):
        log.warning("commands: result on %s names %s/%s", msg.topic, result.hall, result.gateway)
        return None
    digest = hashlib.sha256(msg.topic.encode() + b"\0" + msg.payload).hexdigest()
    async with engine.begin() as conn:
        registered = (
            await conn.execute(
                select(gateways.c.hall_id).where(gateways.c.gateway_id == address.gateway)
            )
        ).scalar()
        if registered != address.hall:
            log.warning("commands: result from unregistered %s/%s", address.hall, address.gateway)
            return None
        await conn.execute(
            insert_ignore(conn, command_results),
            [
                {
                    "command_id": result.id,
                    "gateway_id": result.gateway,
                    "hall_id": result.hall,
                    "version": result.version,
                    "accepted": result.accepted,
                    "reason": result.reason,
                    "detail": result.detail,
                    "gateway_utc": result.utc,
                    "received_at": msg.received_at,
                    "digest": digest,
                }
            ],
        )
    log.info(
        "commands: %s/%s answered v%s: %s %s",
        result.hall,
        result.gateway,
        result.version,
        result.reason,
        result.detail[:200],
    )
    return result


# -- listing ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ResultRecord:
    accepted: bool
    reason: str
    detail: str
    gateway_utc: datetime
    received_at: datetime


@dataclass(frozen=True, slots=True)
class CommandRecord:
    id: str
    gateway: str
    hall: str
    version: int
    name: str
    args: dict[str, Any]
    issued_at: datetime
    expires_at: datetime
    requested_by: str
    sent_at: datetime | None
    publish_attempts: int
    results: list[ResultRecord]

    @property
    def status(self) -> str:
        """queued → sent → accepted | refused (the first answer decides)."""
        if self.results:
            return "accepted" if self.results[0].accepted else "refused"
        return "sent" if self.sent_at is not None else "queued"


async def list_commands(engine: AsyncEngine, gateway: str, limit: int = 100) -> list[CommandRecord]:
    """The gateway's newest commands first, each with its results in arrival order."""
    async with engine.connect() as conn:
        rows = (
            await conn.execute(
                select(gateway_commands)
                .where(gateway_commands.c.gateway_id == gateway)
                .order_by(gateway_commands.c.version.desc())
                .limit(limit)
            )
        ).all()
        ids = [r.id for r in rows]
        results: dict[str, list[ResultRecord]] = {i: [] for i in ids}
        if ids:
            for r in (
                await conn.execute(
                    select(command_results)
                    .where(
                        and_(
                            command_results.c.command_id.in_(ids),
                            command_results.c.gateway_id == gateway,
                        )
                    )
                    .order_by(command_results.c.id)
                )
            ).all():
                results[r.command_id].append(
                    ResultRecord(r.accepted, r.reason, r.detail, r.gateway_utc, r.received_at)
                )
    return [
        CommandRecord(
            r.id,
            r.gateway_id,
            r.hall_id,
            r.version,
            r.name,
            r.args,
            r.issued_at,
            r.expires_at,
            r.requested_by,
            r.sent_at,
            r.publish_attempts,
            results[r.id],
        )
        for r in rows
    ]


async def unmatched_results(
    engine: AsyncEngine, gateway: str, limit: int = 100
) -> list[ResultRecord]:
    """Answers to payloads that were not our commands (forgeries, garbage, foreign ids)."""
    ours = gateway_commands.c.id
    async with engine.connect() as conn:
        rows = (
            await conn.execute(
                select(command_results)
                .outerjoin(gateway_commands, ours == command_results.c.command_id)
                .where(and_(command_results.c.gateway_id == gateway, ours.is_(None)))
                .order_by(command_results.c.id.desc())
                .limit(limit)
            )
        ).all()
    return [
        ResultRecord(r.accepted, r.reason, r.detail, r.gateway_utc, r.received_at) for r in rows
    ]


async def count_results(engine: AsyncEngine, gateway: str) -> int:
    async with engine.connect() as conn:
        return int(
            (
                await conn.execute(
                    select(func.count())
                    .select_from(command_results)
                    .where(command_results.c.gateway_id == gateway)
                )
            ).scalar()
            or 0
        )
