"""How the aggregators share the province broker's partitions, and what each reports of itself.

Every aggregator announces itself once a second on the fanout exchange ``hw.aggregators`` (a
heartbeat: its id, the partitions it consumes, what it holds delivered and not acknowledged, its
last commit) and hears the others' on an exclusive queue of its own. The live aggregators are
those heard within ``LIVE_FOR_S``. Each partition belongs to one of them by rendezvous hashing
(the highest hash of partition and aggregator id), so every aggregator computes the same owner
from the same set, a newcomer takes ~1/N of the partitions and a departed one's partitions are
spread over the survivors, the others staying where they are.

An aggregator consumes only the partitions it owns; when the set changes it cancels its
consumer on the partitions it no longer owns (what it holds is still committed and acknowledged)
and subscribes to those it gained. Two aggregators that briefly disagree both subscribe to a
partition: single active consumer lets one of them read it, the other waits behind it.

No database table is needed: the heartbeats live in the broker, which is what the aggregators
already share, and ``hallwatch-central broker partitions`` reads them the same way.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import socket
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractExchange, AbstractIncomingMessage

MEMBERS_EXCHANGE = "hw.aggregators"  # fanout: every aggregator's heartbeat to every listener
BEAT_S = 1.0
LIVE_FOR_S = 3.5  # three missed heartbeats and a half: gone (failover within ~5 s)


def owner(partition: int, members: Iterable[str]) -> str:
    """The aggregator that owns ``partition`` among ``members`` (rendezvous hashing)."""
    return max(members, key=lambda member: _weight(partition, member))


def share(partitions: int, me: str, members: Iterable[str]) -> frozenset[int]:
    """The partitions ``me`` owns; all of them while it hears nobody else."""
    everyone = set(members) | {me}
    return frozenset(p for p in range(partitions) if owner(p, everyone) == me)


def _weight(partition: int, member: str) -> bytes:
    return hashlib.sha256(f"{partition}/{member}".encode()).digest()


def new_identity() -> str:
    """An aggregator's id for one run of the process: host, pid and a random part."""
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


@dataclass(frozen=True, slots=True)
class Heartbeat:
    """What one aggregator says of itself once a second."""

    aggregator: str
    partitions: tuple[int, ...]  # consumed now (active unless another one briefly is too)
    unacked: dict[int, int]  # per partition: delivered, not yet committed and acknowledged
    last_commit: datetime | None  # the last message committed (or quarantined) and acked
    committed: int  # messages committed since the process started

    def to_bytes(self) -> bytes:
        return json.dumps(
            {
                "aggregator": self.aggregator,
                "partitions": list(self.partitions),
                "unacked": {str(k): v for k, v in self.unacked.items()},
                "last_commit": self.last_commit.isoformat() if self.last_commit else None,
                "committed": self.committed,
            }
        ).encode()

    @classmethod
    def from_bytes(cls, body: bytes) -> Heartbeat | None:
        """``None`` for anything that is not a heartbeat (the exchange is ours, but be safe)."""
        try:
            data = json.loads(body)
            last = data["last_commit"]
            return cls(
                aggregator=str(data["aggregator"]),
                partitions=tuple(int(p) for p in data["partitions"]),
                unacked={int(k): int(v) for k, v in data["unacked"].items()},
                last_commit=datetime.fromisoformat(last) if last else None,
                committed=int(data["committed"]),
            )
        except (ValueError, KeyError, TypeError, AttributeError):
            return None


@dataclass
class Members:
    """The aggregators heard recently (monotonic clock), this one included."""

    me: str
    heard: dict[str, float] = field(default_factory=dict)
    latest: dict[str, Heartbeat] = field(default_factory=dict)

    def hear(self, beat: Heartbeat, now: float | None = None) -> None:
        self.heard[beat.aggregator] = time.monotonic() if now is None else now
        self.latest[beat.aggregator] = beat

    def live(self, now: float | None = None) -> frozenset[str]:
        at = time.monotonic() if now is None else now
        return frozenset({self.me} | {m for m, t in self.heard.items() if at - t <= LIVE_FOR_S})


async def listen(
    channel: AbstractChannel, heard: Callable[[Heartbeat], None], listener: str
) -> AbstractExchange:
    """Bind an exclusive queue to the heartbeat exchange and call ``heard`` for each beat; the
    exchange, to publish on. The queue is named (``hw.aggregators.<listener>``): central's
    broker user may only use ``hw.`` names, not the broker's generated ones."""
    exchange = await channel.declare_exchange(
        MEMBERS_EXCHANGE, aio_pika.ExchangeType.FANOUT, durable=True
    )
    queue = await channel.declare_queue(
        f"{MEMBERS_EXCHANGE}.{listener}",
        exclusive=True,
        auto_delete=True,
        arguments={"x-message-ttl": int(LIVE_FOR_S * 1000)},
    )
    await queue.bind(exchange)

    async def on_beat(message: AbstractIncomingMessage) -> None:
        beat = Heartbeat.from_bytes(message.body)
        if beat is not None:
            heard(beat)

    await queue.consume(on_beat, no_ack=True)
    return exchange


async def announce(exchange: AbstractExchange, beat: Heartbeat) -> None:
    await exchange.publish(aio_pika.Message(beat.to_bytes()), routing_key="")


async def heartbeats(channel: AbstractChannel, listen_s: float) -> list[Heartbeat]:
    """The latest heartbeat of every aggregator heard within ``listen_s`` (for the CLI)."""
    members = Members(me="")
    await listen(channel, members.hear, f"report-{uuid.uuid4().hex[:8]}")
    await asyncio.sleep(listen_s)
    return sorted(members.latest.values(), key=lambda beat: beat.aggregator)


def describe(beat: Heartbeat, now: datetime) -> str:
    """One aggregator's lag on one line: what it consumes, holds and last committed."""
    held = sum(beat.unacked.values())
    per = " ".join(f"{p}:{n}" for p, n in sorted(beat.unacked.items()) if n)
    since = (
        f"{(now - beat.last_commit).total_seconds():.1f} s ago"
        if beat.last_commit is not None
        else "never"
    )
    active = ",".join(str(p) for p in beat.partitions) or "none"
    return (
        f"{beat.aggregator}  partitions {active}  unacked {held}"
        + (f" ({per})" if per else "")
        + f"  last commit {since}  committed {beat.committed}"
    )
