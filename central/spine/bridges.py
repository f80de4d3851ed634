"""Tier bridges' links as central hears them: a county or city Mosquitto bridged up to this
broker publishes a retained ``hw/bridge/NAME/state`` notification ("1" when its link comes up,
"0" as its will when the link drops; deploy/mosquitto/bridge-upstream.conf.in). Without it, a
county whose link is down just falls silent on central's pages, which a supervisor cannot tell
from halls that are idle.

Every aggregator subscribes (not shared: retained messages are not delivered to shared
subscriptions) and keeps one row per bridge in ``bridge_links``: its state and when central
first heard it (``changed_at``). Writing the same state again changes only ``heard_at``, so
several aggregators, a retained message delivered again on reconnect, or a redelivery from the
cluster's queues are harmless. A link down for longer than ``bridges.down_grace_s`` is an alarm
(``/api/v1/bridges``, ``/healthz``, ``hallwatch-central bridge list``); the grace hides the
bridge's own restarts (its back-off starts at 5 s).
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import case, select
from sqlalchemy.ext.asyncio import AsyncEngine

from central.security.broker_acl import BRIDGE_STATE
from central.spine.reading import Incoming, Rejected
from central.store.db import dialect_insert
from central.store.schema import bridge_links
from hallkit.clock import utc_now
from protocols.topics import TopicError, check_id

STATES = BRIDGE_STATE.format(name="+")  # what central subscribes to
# the same on the cluster (RabbitMQ's MQTT plugin: ``/`` → ``.``), bound into its intake; every
# declaration is idempotent, as each aggregator declares the intake on every connection
INTAKE_KEY = STATES.replace("/", ".").replace("+", "*")
DEFAULT_GRACE_S = 60.0
_PREFIX, _SUFFIX = BRIDGE_STATE.split("{name}")
_grace: weakref.WeakKeyDictionary[AsyncEngine, float] = weakref.WeakKeyDictionary()


def bind(engine: AsyncEngine, down_grace_s: float) -> None:
    """The configured grace, for whatever reads links through this engine (API, healthz)."""
    _grace[engine] = down_grace_s


def grace_of(engine: AsyncEngine) -> float:
    return _grace.get(engine, DEFAULT_GRACE_S)


def is_bridge_topic(topic_name: str) -> bool:
    return topic_name.startswith(_PREFIX) and topic_name.endswith(_SUFFIX)


def read_notification(msg: Incoming) -> tuple[str, bool]:
    """(bridge, up) of a notification; anything else is Rejected (and quarantined)."""
    name = msg.topic[len(_PREFIX) : len(msg.topic) - len(_SUFFIX)]
    try:
        check_id(name, "bridge")
    except TopicError as exc:
        raise Rejected(f"bridge notification: {exc}") from None
    payload = msg.payload.strip()
    if payload not in (b"0", b"1"):
        raise Rejected(f"bridge notification: payload must be 0 or 1, not {payload[:20]!r}")
    return name, payload == b"1"


async def record(engine: AsyncEngine, msg: Incoming) -> tuple[str, bool]:
    """Store one notification; ``changed_at`` moves only when the state does."""
    name, up = read_notification(msg)
    at = msg.received_at
    stmt = dialect_insert(engine, bridge_links).values(
        bridge=name, up=up, changed_at=at, heard_at=at
    )
    stmt = stmt.on_conflict_do_update(
        index_elements=["bridge"],
        set_={
            "up": stmt.excluded.up,
            "changed_at": case(
                (bridge_links.c.up == stmt.excluded.up, bridge_links.c.changed_at),
                else_=stmt.excluded.changed_at,
            ),
            "heard_at": stmt.excluded.heard_at,
        },
    )
    async with engine.begin() as conn:
        await conn.execute(stmt)
    return name, up


@dataclass(frozen=True, slots=True)
class Link:
    bridge: str
    up: bool
    changed_at: datetime  # since when in this state (as central heard it)
    heard_at: datetime
    alarm: bool  # down for longer than the grace

    @property
    def label(self) -> str:
        return "上联 正常" if self.up else "上联 中断"

    def describe(self, now: datetime) -> str:
        """``上联 中断 since 2026-12-07 10:02:13 UTC (5 min)``: for the CLI and /healthz."""
        minutes = int((now - self.changed_at).total_seconds() // 60)
        since = self.changed_at.strftime("%Y-%m-%d %H:%M:%S UTC")
        return f"{self.label} since {since} ({minutes} min)"


async def links(engine: AsyncEngine, now: datetime | None = None) -> list[Link]:
    """Every bridge central has heard of, by name."""
    now = now or utc_now()
    grace = timedelta(seconds=grace_of(engine))
    async with engine.connect() as conn:
        rows = (await conn.execute(select(bridge_links).order_by(bridge_links.c.bridge))).all()
    return [
        Link(r.bridge, r.up, r.changed_at, r.heard_at, not r.up and now - r.changed_at > grace)
        for r in rows
    ]
