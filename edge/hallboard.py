"""The hall board (大厅实时看板): the live picture behind the gateway's hall page.

The picture has three parts: a tile per window (staff, presence, the ticket being served, the
evaluator's state, today's evaluations, the camera's view), the queue (waiting per service,
longest wait) and the gateway's health (uplink, backlog, clock, disk, devices).

What the gateway journals (queue-machine events, evaluation keys, camera presence) is projected
here: today's journal is replayed at start, so a kiosk shows the right picture after a power
cut, and from then on the board is the journal's subscriber: each event it commits reaches
``on_journaled``. What is only live state (a device answering polls, the uplink, the clock, the
disk) is read from its owner on every tick. Changes go to subscribers (the page's event
streams) as small updates; a subscriber too slow to keep up is dropped and told to reload.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol
from zoneinfo import ZoneInfo

from edge.hallboard_health import EvaluatorTable, evaluator_table, health_panel, utc_text
from edge.hallboard_stream import Subscription
from hallkit.clock import utc_now
from hallkit.queuestate import QueueReducer, QueueRules

if TYPE_CHECKING:
    from edge.app import Gateway
    from edge.clock import Clock
    from edge.committed import Committed
    from edge.devices.evaluators import EvaluatorSupervisor
    from edge.devices.queue_machine import QueueSupervisor
    from edge.journal import Journal
    from edge.uplink import Uplink
    from hallkit.supervise import Supervisor

log = logging.getLogger(__name__)

TICK_S = 1.0  # what no hook reports (uplink, clock, disk, a bus unplugged) is read this often
SUBSCRIBER_QUEUE = 256  # updates held for one stream; a page further behind is told to reload
WAITING_TICKETS_KEPT = 5000  # a county hall issues a few thousand tickets a day
# a ticket called, recalled or served has stopped waiting even if its CL was missed; a
# heartbeat saying nobody waits forgets the tickets issued before the board was listening
QUEUE_RULES = QueueRules(
    kept=WAITING_TICKETS_KEPT,
    wait_ends_on=frozenset({"CL", "RC", "NS", "ST"}),
    empty_heartbeat_forgets=True,
)
REPLAY_LIMIT = 200_000  # per kind; a day of a large hall is well below
KEYS = range(1, 7)

Message = dict[str, Any]


@dataclass
class WindowView:
    """One window (窗口) as the board sees it, besides what the queue machine says of it."""

    window: int
    keys: Counter[int] = field(default_factory=Counter)  # today's evaluations by key
    camera_staff: str | None = None  # present | away, from the window camera (在岗 / 离岗)
    camera_since: str | None = None
    camera_snapshot: str | None = None  # evidence path, relative to the evidence directory


class Sources(Protocol):
    """Where the board reads live state; the gateway itself is one (read on every tick, so
    supervisors rebuilt by a remote command are seen)."""

    @property
    def journal(self) -> Journal: ...
    @property
    def clock(self) -> Clock: ...
    @property
    def uplink(self) -> Uplink | None: ...
    @property
    def evaluators(self) -> Sequence[EvaluatorSupervisor]: ...
    @property
    def queue(self) -> QueueSupervisor | None: ...
    @property
    def supervisor(self) -> Supervisor | None: ...


@dataclass
class BoardSources:
    """Sources assembled by hand (tests, tools); any part but the journal may be absent."""

    journal: Journal
    clock: Clock
    uplink: Uplink | None = None
    evaluators: Sequence[EvaluatorSupervisor] = ()
    queue: QueueSupervisor | None = None
    supervisor: Supervisor | None = None


class HallBoard:
    def __init__(
        self,
        sources: Sources,
        *,
        hall: str,
        gateway: str,
        hall_name: str = "",
        timezone: str = "Asia/Shanghai",
        staff_names: dict[str, str] | None = None,
        data_dir: Path | None = None,
        evidence_dir: Path | None = None,
        now: Callable[[], datetime] | None = None,
    ) -> None:
        self.sources = sources
        self.hall, self.gateway, self.hall_name = hall, gateway, hall_name
        self.tz = ZoneInfo(timezone)
        self.staff_names = staff_names or {}
        self.data_dir = data_dir
        self.evidence_dir = evidence_dir
        self._now = now or utc_now
        self.windows: dict[int, WindowView] = {}
        # the queue machine's picture; stamps are UTC text (serving since, waiting since)
        self.queue_state: QueueReducer[str] = QueueReducer(QUEUE_RULES)
        for supervisor in sources.evaluators:
            for window in supervisor.windows():
                self._window(window)
        self.untracked: Counter[str] = Counter()  # waiting the machine reported, not seen issued
        self.service_names: dict[str, str] = {}
        self.cameras: dict[str, str] = {}  # camera → its health state (online, stalled, …)
        self.calibrations: dict[int, str] = {}  # window → evidence path of its last calibration
        self.camera_windows: set[int] = set()  # windows some camera watches
        # takes a window's empty references now (the gateway's, once its cameras run)
        self.calibrator: Callable[[int], Awaitable[str]] | None = None
        self.camera_waiting: int | None = None
        self.hook_errors = 0
        self._day = self._today()
        self._subscribers: set[Subscription] = set()
        self._published: dict[str, Any] = {}
        self._dirty = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._unsubscribe: Callable[[], None] | None = None  # from the journal, once started
        self._stopping = False

    @classmethod
    def for_gateway(cls, gateway: Gateway) -> HallBoard:
        """A board over a gateway's parts, hooked into its supervisors."""
        config = gateway.config
        board = cls(
            gateway,
            hall=config.hall,
            gateway=config.gateway,
            hall_name=config.http.hall_name,
            timezone=config.http.timezone,
            data_dir=config.data_dir,
            evidence_dir=config.cameras.evidence_dir if config.cameras is not None else None,
        )
        if config.cameras is not None:
            board.camera_windows = {w.window for c in config.cameras.cameras for w in c.windows}
            for window in board.camera_windows:
                board._window(window)
        board.devices_changed(config.staff_names)
        return board

    def devices_changed(self, staff_names: dict[str, str]) -> None:
        """The gateway (re)built its devices: a tile for every evaluator's window, the staff
        names of its configuration now."""
        self.staff_names = staff_names
        for supervisor in self.sources.evaluators:
            for window in supervisor.windows():
                self._window(window)
        self._dirty.set()

    # -- life cycle ------------------------------------------------------------------------

    async def start(self) -> None:
        """Replay today's journal, then keep the picture fresh. Call before the supervisors
        run, so no live event is counted twice."""
        await self.replay()
        self._unsubscribe = self.sources.journal.subscribe(self._on_committed)
        self._stopping = False
        self._published = self._parts()
        self._task = asyncio.create_task(self._run(), name="hall board")

    async def stop(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        if self._task is not None:
            # a flag, not only cancel(): on 3.11 a cancel that meets a wake-up can be lost
            self._stopping = True
            self._dirty.set()
            try:
                await asyncio.wait_for(asyncio.shield(self._task), 2)
            except TimeoutError:
                self._task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._task
            self._task = None
        for subscriber in list(self._subscribers):
            subscriber.offer(None)
        self._subscribers.clear()

    async def replay(self) -> int:
        """Project today's journaled events (queue, keys, camera presence), in journal order."""
        since = utc_text(datetime.combine(self._today(), time(0), self.tz))
        docs: list[dict[str, Any]] = []
        for kind in ("queue.event", "evaluator.key", "camera.presence"):
            docs += await self.sources.journal.recent(kind, since, limit=REPLAY_LIMIT)
        for doc in sorted(docs, key=lambda d: d["seq"]):
            self._apply(doc["kind"], doc["body"], doc["utc"])
        if docs:
            log.info("hall board: replayed %d of today's journaled events", len(docs))
        return len(docs)

    async def _run(self) -> None:
        while not self._stopping:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(TICK_S):
                    await self._dirty.wait()
            if self._stopping:
                return
            self._dirty.clear()
            try:
                self.publish_changes()
            except Exception:  # the page must never take the gateway down
                log.exception("hall board: refreshing the picture failed")

    # -- hooks -----------------------------------------------------------------------------

    def _on_committed(self, event: Committed) -> None:
        self.on_journaled(event.kind, event.body)

    def on_journaled(self, kind: str, body: dict[str, Any]) -> None:
        """An event just journaled (committed); cheap, never raises."""
        try:
            self._apply(kind, body, utc_text(self._now()))
        except Exception:
            self.hook_errors += 1
            log.exception("hall board: could not apply %s", kind)
        self._dirty.set()

    def changed(self) -> None:
        """Something the board reads live has changed: refresh now rather than on the tick."""
        self._dirty.set()

    # -- the projection --------------------------------------------------------------------

    def _today(self) -> date:
        return self._now().astimezone(self.tz).date()

    def _roll_day(self) -> None:
        today = self._today()
        if today == self._day:
            return
        self._day = today  # a new day: yesterday's counts and leftover tickets are not today's
        for view in self.windows.values():
            view.keys.clear()
        for state in self.queue_state.windows.values():
            state.called = None
        self.queue_state.forget_waiting()
        self.untracked.clear()

    def _window(self, number: int) -> WindowView:
        view = self.windows.get(number)
        if view is None:
            view = self.windows[number] = WindowView(number)
        return view

    def _apply(self, kind: str, body: dict[str, Any], utc: str) -> None:
        self._roll_day()
        if kind == "queue.event":
            self._apply_queue(body, utc)
        elif kind == "evaluator.key":
            key = body.get("key")
            if isinstance(key, int) and key in KEYS and "RETRANSMIT" not in body["marks"]:
                self._window(body["window"]).keys[key] += 1
        elif kind == "camera.presence":
            view = self._window(body["window"])
            view.camera_staff = body["staff"]
            view.camera_since = body.get("since")
            view.camera_snapshot = body.get("snapshot")
        elif kind == "camera.health":
            self.cameras[body["camera"]] = body["state"]
        elif kind == "camera.waiting":
            self.camera_waiting = body["count"]

    def _apply_queue(self, body: dict[str, Any], utc: str) -> None:
        if body.get("window") is not None:
            self._window(body["window"])
        self.queue_state.apply(body, utc)
        if body["type"] == "TK":
            service = body["service"]
            if body.get("service_name"):
                self.service_names[service] = body["service_name"]
            seen = sum(1 for t in self.queue_state.waiting.values() if t.service == service)
            # the machine counts waiting tickets it issued before we were listening
            self.untracked[service] = max(0, body["waiting"] - seen)
        elif body["type"] == "HB" and body.get("waiting") == 0:
            self.untracked.clear()

    # -- the picture -----------------------------------------------------------------------

    def picture(self) -> Message:
        """Everything the page shows, as JSON-ready data."""
        self._roll_day()
        return {
            "hall": {
                "id": self.hall,
                "name": self.hall_name,
                "gateway": self.gateway,
                "timezone": self.tz.key,
            },
            "server_time": utc_text(self._now()),
            **self._parts(),
        }

    def _parts(self) -> dict[str, Any]:
        evaluators = evaluator_table(self.sources.evaluators)
        tiles = [self._tile(n, evaluators) for n in sorted(self.windows)]
        return {"tiles": tiles, "queue": self._queue(), "health": self._health(evaluators)}

    def _health(self, evaluators: EvaluatorTable) -> Message:
        return health_panel(self.sources, evaluators, self.cameras, self.data_dir, self._now())

    def _tile(self, number: int, evaluators: dict[int, Any] | None = None) -> Message:
        view = self.windows[number]
        queue = self.queue_state.window(number)
        found = (
            evaluators if evaluators is not None else evaluator_table(self.sources.evaluators)
        ).get(number)
        problems: list[Message] = []
        if found is None:
            state, addr = "none", None
        else:
            status, connected, _ = found
            addr = status["addr"]
            if not connected:
                state = "offline"
                problems.append({"code": "evaluator_bus_down", "params": {}})
            elif status["online"] is False:
                state = "offline"
                problems.append({"code": "evaluator_offline", "params": {}})
            elif status["stuck_key"]:
                state = "stuck_key"
                problems.append({"code": "evaluator_stuck_key", "params": {}})
            elif status["display_failed"]:
                state = "display_failed"
                problems.append({"code": "evaluator_display_failed", "params": {}})
            elif status["invited"]:
                state = "invited"
            else:
                state = "online" if status["online"] else "unknown"
        camera = None
        if view.camera_staff is not None or number in self.camera_windows:
            camera = {
                "staff": view.camera_staff,
                "since": view.camera_since,
                "snapshot": view.camera_snapshot is not None,
                "calibration": number in self.calibrations,
            }
        return {
            "window": number,
            "staff": queue.staff,
            "staff_name": self.staff_names.get(queue.staff or "", None),
            "presence": queue.presence,
            "ticket": queue.ticket,
            "called": queue.called,
            "serving_since": queue.serving_since,
            "evaluator": {"state": state, "addr": addr},
            "keys": {str(k): view.keys.get(k, 0) for k in KEYS},
            "keys_total": sum(view.keys.values()),
            "camera": camera,
            "problems": problems,
        }

    def _queue(self) -> Message:
        services: dict[str | None, dict[str, Any]] = {}

        def entry(code: str | None) -> dict[str, Any]:
            return services.setdefault(
                code,
                {
                    "service": code,
                    "waiting": 0,
                    "oldest_since": None,
                    "name": self.service_names.get(code or ""),
                },
            )

        for ticket in self.queue_state.waiting.values():
            item = entry(ticket.service)
            item["waiting"] += 1
            if item["oldest_since"] is None or ticket.since < item["oldest_since"]:
                item["oldest_since"] = ticket.since
        for code, count in self.untracked.items():
            if count:
                entry(code)["waiting"] += count
                entry(code)["untracked"] = count
        rows = sorted(services.values(), key=lambda s: s["service"])
        oldest = min((s["oldest_since"] for s in rows if s["oldest_since"]), default=None)
        machine = None
        if self.sources.queue is not None:
            feed = self.sources.queue.feed
            machine = "connected" if feed is not None and feed.connected else "disconnected"
        return {
            "services": rows,
            "waiting_total": sum(s["waiting"] for s in rows),
            "oldest_since": oldest,
            "machine": machine,
            "camera_waiting": self.camera_waiting,
        }

    # -- changes ---------------------------------------------------------------------------

    def subscribe(self) -> Subscription:
        """A new reader; its first message is the whole picture (``type: snapshot``)."""
        subscriber = Subscription(
            self._subscribers, {"type": "snapshot", **self.picture()}, SUBSCRIBER_QUEUE
        )
        self._subscribers.add(subscriber)
        return subscriber

    @contextlib.contextmanager
    def subscription(self) -> Iterator[Subscription]:
        subscriber = self.subscribe()
        try:
            yield subscriber
        finally:
            subscriber.close()

    @property
    def subscribers(self) -> int:
        return len(self._subscribers)

    def publish_changes(self) -> Message | None:
        """Compare the picture with what was last published; send subscribers what changed."""
        self._roll_day()
        evaluators = evaluator_table(self.sources.evaluators)
        tiles = {n: self._tile(n, evaluators) for n in sorted(self.windows)}
        queue, health = self._queue(), self._health(evaluators)
        before = self._published
        old_tiles = {t["window"]: t for t in before.get("tiles", [])}
        update: Message = {"type": "update", "server_time": utc_text(self._now())}
        changed_tiles = [t for n, t in tiles.items() if old_tiles.get(n) != t]
        if changed_tiles:
            update["tiles"] = changed_tiles
        if queue != before.get("queue"):
            update["queue"] = queue
        if health != before.get("health"):
            update["health"] = health
        self._published = {"tiles": list(tiles.values()), "queue": queue, "health": health}
        if len(update) == 2:
            return None
        for subscriber in list(self._subscribers):
            if not subscriber.offer(update):
                log.warning(
                    "hall board: a page fell %d updates behind; told it to reload", SUBSCRIBER_QUEUE
                )
        return update

    def snapshot_file(self, window: int) -> Path | None:
        """The evidence snapshot of a window's latest camera presence decision, if it is a file
        inside the evidence directory."""
        view = self.windows.get(window)
        return None if view is None else self._evidence_file(view.camera_snapshot)

    def calibration_file(self, window: int) -> Path | None:
        """The frame a window's last calibration took its empty references from."""
        return self._evidence_file(self.calibrations.get(window))

    def _evidence_file(self, relative: str | None) -> Path | None:
        if relative is None or self.evidence_dir is None:
            return None
        root = self.evidence_dir.resolve()
        path = (root / relative).resolve()
        if not path.is_relative_to(root) or not path.is_file():
            return None
        return path

    def on_calibrated(self, window: int, snapshot: str | None) -> None:
        if snapshot is not None:
            self.calibrations[window] = snapshot
        self._dirty.set()

    async def calibrate(self, window: int) -> str:
        """A manager's calibration from the page: the same as the remote command."""
        if self.calibrator is None or window not in self.camera_windows:
            raise LookupError(f"no camera watches window {window}")
        return await self.calibrator(window)
