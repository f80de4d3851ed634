"""Samples from stored events: what each event kind adds to a hall's metrics, and the only
tags that may leave the process."""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from hallkit.queuestate import PRESENT, QueueReducer, QueueRules, Waiting
from protocols.devices import KEY_LABELS
from protocols.events import KINDS

log = logging.getLogger(__name__)


# metric name → what it is. The Grafana dashboards may query only these (a test checks).
METRICS: dict[str, str] = {
    "hallwatch_queue_waiting": "people waiting for a service (排队人数), from TK, kept between",
    "hallwatch_queue_waiting_total": "people waiting in the whole hall (HB heartbeat)",
    "hallwatch_queue_tickets": "1 per ticket issued (取号)",
    "hallwatch_queue_no_show": "1 per ticket given up after calls (弃号)",
    "hallwatch_wait_seconds": "ticket issued (or transferred) → called, seconds (等候时长)",
    "hallwatch_window_present": "staff at the window 1 / away 0 (在岗), source queue|camera",
    "hallwatch_waiting_area_people": "people counted in a waiting area by a camera",
    "hallwatch_evaluation_count": "1 per evaluation key press, by key (not RETRANSMIT)",
    "hallwatch_invitation_sent": "1 per evaluation invitation the evaluator accepted",
    "hallwatch_invitation_timeout": "1 per invitation closed with no key pressed",
    "hallwatch_evaluator_online": "evaluator answers its polls 1 / offline 0",
    "hallwatch_evaluator_stuck_key": "a key is stuck down 1 / 0",
    "hallwatch_evaluator_display_failed": "display failure 1 / 0",
    "hallwatch_evaluator_keys_disabled": "keys disabled 1 / 0",
    "hallwatch_evaluator_faults": "1 per hardware fault frame",
    "hallwatch_camera_online": "camera streaming 1 / offline or stalled 0",
    "hallwatch_gateway_online": "gateway connected to the broker 1 / 0 (sampled)",
    "hallwatch_gateway_backlog": "events journaled on the gateway, not yet acknowledged (sampled)",
    "hallwatch_gateway_last_batch_age_seconds": "seconds since central stored a batch (sampled)",
}


ALLOWED_TAGS = frozenset(
    {"hall", "gateway", "window", "service", "camera", "key", "label", "status", "source"}
)


MAX_WAIT_S = 12 * 3600  # a ticket number waiting longer is yesterday's number reused
MAX_PENDING_TICKETS = 20_000
_STAMPS_PER_SERIES = 64


@dataclass(frozen=True, slots=True)
class Sample:
    """One value of one metric at one instant (ms since the epoch, UTC)."""

    measurement: str
    field: str
    tags: tuple[tuple[str, str], ...]
    value: float
    ms: int

    @property
    def metric(self) -> str:
        return f"{self.measurement}_{self.field}"


@dataclass(frozen=True, slots=True)
class StoredEvent:
    """What the sink needs of a row of ``events``; ``at`` is the time central trusts."""

    gateway: str
    seq: int
    hall: str
    kind: str
    at: datetime
    mono_ns: int
    boot: str
    body: dict[str, Any]


@dataclass(frozen=True, slots=True)
class _Stamp:
    """When a gateway journaled an event: its monotonic clock within a boot, and the time
    central trusts."""

    boot: str
    mono_ns: int
    at: datetime


# a ticket waits until called (CL) or given up (NS); a heartbeat does not forget tickets
QUEUE_RULES = QueueRules(kept=MAX_PENDING_TICKETS)


@dataclass(slots=True)
class _GatewayQueue:
    state: QueueReducer[_Stamp] = field(default_factory=lambda: QueueReducer(QUEUE_RULES))
    waiting: dict[str, int] = field(default_factory=dict)  # the machine's count per service


def _ms(at: datetime) -> int:
    return int(at.timestamp() * 1000)


class Deriver:
    """Turns one gateway's events, in seq order, into samples. Keeps the little state that
    needs: tickets still waiting (for 等候时长) and the waiting count per service."""

    def __init__(self) -> None:
        self._queues: dict[str, _GatewayQueue] = {}
        self._stamps: dict[tuple[str, tuple[tuple[str, str], ...]], OrderedDict[int, None]] = {}

    def forget(self, gateway: str) -> None:
        self._queues.pop(gateway, None)

    def samples(self, ev: StoredEvent) -> list[Sample]:
        out: list[Sample] = []
        handler = _HANDLERS.get(ev.kind)
        if handler is not None:
            try:  # decoded with its protocol model first: the handlers read a checked body
                KINDS[ev.kind].model_validate(ev.body)
            except ValidationError:
                log.warning(
                    "timeseries: event %s:%d (%s) does not fit its model, skipped",
                    ev.gateway,
                    ev.seq,
                    ev.kind,
                )
                return []
            handler(self, ev, out)
        return [self._unique(s) for s in out]

    def _unique(self, s: Sample) -> Sample:
        """Two points of one series in the same millisecond would overwrite each other in
        InfluxDB (and under VictoriaMetrics dedup): move the later one on by a millisecond."""
        seen = self._stamps.setdefault((s.metric, s.tags), OrderedDict())
        ms = s.ms
        while ms in seen:
            ms += 1
        seen[ms] = None
        if len(seen) > _STAMPS_PER_SERIES:
            seen.popitem(last=False)
        return s if ms == s.ms else Sample(s.measurement, s.field, s.tags, s.value, ms)

    # -- per kind ----------------------------------------------------------------------------

    def _queue(self, ev: StoredEvent, out: list[Sample]) -> None:
        b = ev.body
        q = self._queues.setdefault(ev.gateway, _GatewayQueue())
        kind, ticket, window = b.get("type"), b.get("ticket"), b.get("window")
        service = b.get("service")

        def emit(measurement: str, name: str, value: float, **tags: object) -> None:
            out.append(_sample(ev, measurement, name, value, **tags))

        step = q.state.apply(b, _Stamp(ev.boot, ev.mono_ns, ev.at))
        if kind == "TK" and ticket and service:
            emit("hallwatch_queue", "tickets", 1, service=service)
            if b.get("waiting") is not None:
                q.waiting[service] = int(b["waiting"])
                emit("hallwatch_queue", "waiting", q.waiting[service], service=service)
        elif kind == "TR" and ticket:
            self._dequeue(q, step.left, emit)
            to = b.get("to_service")
            if to and to in q.waiting:
                q.waiting[to] += 1
                emit("hallwatch_queue", "waiting", q.waiting[to], service=to)
        elif kind in ("CL", "NS") and ticket:
            waited = step.left
            self._dequeue(q, waited, emit)
            if kind == "NS":
                emit("hallwatch_queue", "no_show", 1, window=window)
            elif waited is not None:
                seconds = _elapsed(waited.since, ev)
                if seconds is not None and 0 <= seconds <= MAX_WAIT_S:
                    emit(
                        "hallwatch_wait",
                        "seconds",
                        round(seconds, 3),
                        service=waited.service,
                        window=window,
                    )
        elif kind == "HB" and b.get("waiting") is not None:
            emit("hallwatch_queue", "waiting_total", int(b["waiting"]))
        elif kind in ("LI", "RS", "LO", "PS") and window is not None:
            emit(
                "hallwatch_window",
                "present",
                1 if q.state.window(window).presence == PRESENT else 0,
                window=window,
                source="queue",
            )

    @staticmethod
    def _dequeue(q: _GatewayQueue, left: Waiting[_Stamp] | None, emit: Any) -> None:
        if left is not None and left.service in q.waiting:
            service = left.service
            q.waiting[service] = max(0, q.waiting[service] - 1)
            emit("hallwatch_queue", "waiting", q.waiting[service], service=service)

    def _key(self, ev: StoredEvent, out: list[Sample]) -> None:
        b = ev.body
        marks = b.get("marks") or []
        if "RETRANSMIT" in marks:
            return  # the device's repeat of an evaluation already journaled
        key = int(b["key"])
        status = next((m.lower() for m in marks), "ok")
        out.append(
            _sample(
                ev,
                "hallwatch_evaluation",
                "count",
                1,
                window=b.get("window"),
                key=key,
                label=KEY_LABELS.get(key, str(key)),
                status=status,
            )
        )

    def _invite(self, ev: StoredEvent, out: list[Sample]) -> None:
        if ev.body.get("status") == "ok":
            out.append(_sample(ev, "hallwatch_invitation", "sent", 1, window=ev.body.get("window")))

    def _invite_timeout(self, ev: StoredEvent, out: list[Sample]) -> None:
        if "RETRANSMIT" not in (ev.body.get("marks") or []):
            out.append(
                _sample(ev, "hallwatch_invitation", "timeout", 1, window=ev.body.get("window"))
            )

    def _health(self, ev: StoredEvent, out: list[Sample]) -> None:
        b = ev.body
        for name in ("online", "stuck_key", "display_failed", "keys_disabled"):
            out.append(
                _sample(
                    ev, "hallwatch_evaluator", name, 1 if b.get(name) else 0, window=b.get("window")
                )
            )

    def _fault(self, ev: StoredEvent, out: list[Sample]) -> None:
        out.append(_sample(ev, "hallwatch_evaluator", "faults", 1, window=ev.body.get("window")))

    def _camera_health(self, ev: StoredEvent, out: list[Sample]) -> None:
        state = ev.body.get("state")
        out.append(
            _sample(
                ev,
                "hallwatch_camera",
                "online",
                1 if state == "online" else 0,
                camera=ev.body.get("camera"),
            )
        )
        # streaming but unable to judge (frozen, too dark, flicker, no reference): a
        # different fault from a camera that is down, with a different remedy
        out.append(
            _sample(
                ev,
                "hallwatch_camera",
                "blind",
                0 if state in ("online", "offline", "stalled") else 1,
                camera=ev.body.get("camera"),
            )
        )

    def _camera_presence(self, ev: StoredEvent, out: list[Sample]) -> None:
        out.append(
            _sample(
                ev,
                "hallwatch_window",
                "present",
                1 if ev.body.get("staff") == "present" else 0,
                window=ev.body.get("window"),
                source="camera",
            )
        )

    def _camera_waiting(self, ev: StoredEvent, out: list[Sample]) -> None:
        out.append(
            _sample(
                ev,
                "hallwatch_waiting_area",
                "people",
                int(ev.body["count"]),
                camera=ev.body.get("camera"),
            )
        )


_HANDLERS = {
    "queue.event": Deriver._queue,
    "evaluator.key": Deriver._key,
    "evaluator.invite": Deriver._invite,
    "evaluator.invite_timeout": Deriver._invite_timeout,
    "evaluator.health": Deriver._health,
    "evaluator.fault": Deriver._fault,
    "camera.health": Deriver._camera_health,
    "camera.presence": Deriver._camera_presence,
    "camera.waiting": Deriver._camera_waiting,
}


def _elapsed(start: _Stamp, ev: StoredEvent) -> float | None:
    """Seconds between two events of one gateway: its monotonic clock within one boot (immune
    to clock steps), else the times central trusts."""
    if start.boot == ev.boot:
        return (ev.mono_ns - start.mono_ns) / 1e9
    return (ev.at - start.at).total_seconds()


def _sample(ev: StoredEvent, measurement: str, name: str, value: float, **tags: object) -> Sample:
    return make_sample(
        measurement, name, value, _ms(ev.at), hall=ev.hall, gateway=ev.gateway, **tags
    )


def make_sample(measurement: str, name: str, value: float, ms: int, **tags: object) -> Sample:
    present = {k: str(v) for k, v in tags.items() if v is not None and v != ""}
    stray = set(present) - ALLOWED_TAGS
    if stray:  # a programming error: never let it reach the store
        raise ValueError(f"tag(s) {sorted(stray)} may not go to the time-series store")
    return Sample(measurement, name, tuple(sorted(present.items())), float(value), ms)


def gateway_samples(rows: Iterable[Any], now: datetime, ms: int) -> list[Sample]:
    """Sampled gauges of every registered, unrevoked gateway (from ``gateways``)."""
    out: list[Sample] = []
    for row in rows:
        if row.revoked_at is not None:
            continue
        tags = {"hall": row.hall_id, "gateway": row.gateway_id}
        out.append(make_sample("hallwatch_gateway", "online", 1 if row.online else 0, ms, **tags))
        journal = (row.state or {}).get("journal") or {}
        if journal.get("backlog") is not None:
            out.append(make_sample("hallwatch_gateway", "backlog", journal["backlog"], ms, **tags))
        if row.last_batch_at is not None:
            age = max(0.0, (now - row.last_batch_at).total_seconds())
            out.append(
                make_sample(
                    "hallwatch_gateway", "last_batch_age_seconds", round(age, 3), ms, **tags
                )
            )
    return out
