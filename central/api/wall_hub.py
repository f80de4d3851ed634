"""The 大屏's one producer: every hall's figures read from the store on a few clocks, shared by
every screen, snapshot request and live stream of this process (never one computation per
request), and the ticker's ring of recent ticks.

Nothing runs on its own: whoever reads (a request, a stream's loop) calls ``refresh``, which
does the work that is due under one lock, so 50 screens cost one reading per period. Clocks:
key presses and gateways every second (a bad review reaches the ticker within a few seconds
of being stored, before correlation), lights, cards and today's evaluations every 30 s (the
ladder and correlation jobs move them every few minutes), 30-day trends and 红黑榜 every
5 minutes, in the background once the first reading exists.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import itertools
import json
import secrets
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, replace

from sqlalchemy.ext.asyncio import AsyncEngine

from central.reporting import registry_cache, wall_store
from central.reporting.history import arrived_as_history
from central.reporting.wall import (
    TREND_DAYS,
    HallLive,
    KeyCounts,
    Tick,
    WallFigures,
    bad_review_tick,
    changes,
    days_back,
    snapshot,
)
from central.rules.scale import BAD_REVIEW_KEYS
from central.rules.workdays import WorkCalendar, business_date
from central.security import screens
from central.security.tokens import digest
from central.store.schema import cases
from central.store.schema_cases import case_steps
from hallkit.clock import utc_now

PRESSES_S = 2.0  # a bad review on the ticker within a few seconds of being stored
GATEWAYS_S = 5.0
SCREENS_S = 5.0  # a revoked screen's stream ends within this
CASES_S = 30.0
TRENDS_S = 300.0
TICKS_KEPT = 1000
NEW_PRESS = dt.timedelta(minutes=10)  # older presses arriving late (a backlog) are not news
RECEIPT_SLACK = dt.timedelta(seconds=30)  # batches committing out of order
SEEN_KEPT = 20_000

Scope = frozenset[str] | None


@dataclass(frozen=True, slots=True)
class Snapshot:
    version: str
    body: bytes  # the JSON, encoded once for every screen


class WallHub:
    def __init__(self, engine: AsyncEngine, calendar: WorkCalendar) -> None:
        self.engine, self.calendar = engine, calendar
        self.epoch = secrets.token_hex(4)  # a cursor from another process or run is stale
        self.figures = WallFigures(today=business_date(utc_now()))
        self.stamp = 0  # bumped whenever the figures change (not for ticks: no new snapshot)
        self._ticks: deque[tuple[int, Tick]] = deque(maxlen=TICKS_KEPT)
        self._next_tick = 1
        self._lock = asyncio.Lock()
        self._due = {"presses": 0.0, "gateways": 0.0, "screens": 0.0, "cases": 0.0, "trends": 0.0}
        # the screens with a stream open (their cookie's hash → a count), checked in one query
        self._watched: dict[str, int] = {}
        self._alive: set[str] = set()
        self._loaded = False
        self._trends_task: asyncio.Task[None] | None = None
        self._received: dt.datetime | None = None
        self._seen: dict[tuple[str, int], None] = {}
        self._snapshots: dict[tuple[Scope, str], tuple[int, Snapshot]] = {}
        self._changed = asyncio.Event()
        # the drill-down's answers per hall (central.api.wall), one computation at a time
        self.details: dict[str, tuple[float, dict[str, object]]] = {}
        self.detail_lock = asyncio.Lock()

    # ------------------------------------------------------------------ reading the store

    async def refresh(self) -> None:
        """Do what is due; cheap when nothing is."""
        now = time.monotonic()
        if all(now < due for due in self._due.values()):
            return
        async with self._lock:
            now = time.monotonic()
            before = (self.stamp, self._next_tick)
            if now >= self._due["cases"]:
                await self._read_cases()
                self._due["cases"] = now + CASES_S
            if now >= self._due["gateways"]:
                await self._read_gateways()
                self._due["gateways"] = now + GATEWAYS_S
            if now >= self._due["presses"]:
                await self._read_presses()
                self._due["presses"] = now + PRESSES_S
            if now >= self._due["screens"]:
                if self._watched:
                    self._alive = await screens.enrolled(self.engine, set(self._watched))
                self._due["screens"] = now + SCREENS_S
            if now >= self._due["trends"]:
                self._due["trends"] = now + TRENDS_S
                if not self._loaded:
                    await self._read_trends()
                    self._loaded = True
                elif self._trends_task is None or self._trends_task.done():
                    self._trends_task = asyncio.create_task(self._read_trends())
            if (self.stamp, self._next_tick) != before:
                self._wake()

    def _wake(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    async def wait(self, timeout: float) -> None:
        """Until the figures or the ticker change, or ``timeout``."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._changed.wait(), timeout)

    async def _read_cases(self) -> None:
        now = utc_now()
        today = business_date(now)
        async with self.engine.connect() as conn:
            reg = (await registry_cache.snapshot(conn)).entries
            stages = await wall_store.open_stages(conn)
            keys = await wall_store.keys_by_day(conn, today, today)
            gateways = await wall_store.gateway_counts(conn)
            halls = set(reg) | set(stages) | set(gateways) | {h for h, _ in keys}
            opened = await wall_store.open_now(conn, halls, self.calendar, now)
        live = {}
        for hall in halls:
            n, up = gateways.get(hall, (0, 0))
            live[hall] = HallLive(
                stages=stages.get(hall, {}),
                gateways=n,
                online=up,
                today=keys.get((hall, today), KeyCounts()),
                open_now=opened[hall],
            )
        self._publish(replace(self.figures, today=today, live=live, registry=dict(reg)), now)

    # ------------------------------------------------------------------ screens' streams

    def watch(self, cookie: str) -> str:
        """A stream of a screen opens: its cookie is checked with the others every few s."""
        key = digest(cookie)
        self._watched[key] = self._watched.get(key, 0) + 1
        self._alive.add(key)  # the request was just let in
        return key

    def unwatch(self, key: str) -> None:
        left = self._watched.pop(key, 1) - 1
        if left > 0:
            self._watched[key] = left

    def next_reading_s(self) -> float:
        """Seconds until key presses are due: a stream waking then reads them for everyone."""
        return max(0.05, self._due["presses"] - time.monotonic())

    def alive(self, key: str) -> bool:
        return key in self._alive

    async def _read_gateways(self) -> None:
        now = utc_now()
        async with self.engine.connect() as conn:
            gateways = await wall_store.gateway_counts(conn)
        live = dict(self.figures.live)
        for hall, (n, up) in gateways.items():
            old = live.get(hall, HallLive())
            if (old.gateways, old.online) != (n, up):
                live[hall] = replace(old, gateways=n, online=up)
        if live != self.figures.live:
            self._publish(replace(self.figures, live=live), now)

    async def _read_presses(self) -> None:
        now = utc_now()
        async with self.engine.connect() as conn:
            since = self._received - RECEIPT_SLACK if self._received else None
            presses = await wall_store.key_presses(conn, now - NEW_PRESS, since)
        first_reading = self._received is None  # the last minutes' presses, then new ones
        for press in presses:
            self._received = max(self._received or press.received_at, press.received_at)
            if (press.gateway, press.seq) in self._seen:
                continue
            self._seen[(press.gateway, press.seq)] = None
            if press.key in BAD_REVIEW_KEYS:
                name = self.figures.name(press.hall)
                history = arrived_as_history(press.at, press.received_at)
                self._add(
                    bad_review_tick(
                        press.hall, name, press.window, press.key, press.at, history=history
                    )
                )
        if first_reading and self._received is None:
            self._received = now - RECEIPT_SLACK
        while len(self._seen) > SEEN_KEPT:
            del self._seen[next(iter(self._seen))]

    async def _read_trends(self) -> None:
        today = business_date(utc_now())
        first = days_back(today, TREND_DAYS)[0]
        async with self.engine.connect() as conn:
            day_keys = await wall_store.keys_by_day(conn, first, today)
            day_ontime = await wall_store.ontime_by(conn, first, today, by=case_steps.c.on_date)
            window_keys = await wall_store.keys_by_window(conn, first, today)
            departments = await wall_store.ontime_by(conn, first, today, by=cases.c.department)
        self.figures = replace(
            self.figures,
            day_keys=day_keys,
            day_ontime=day_ontime,
            window_keys=window_keys,
            department_ontime=departments,
        )
        self.stamp += 1
        self._wake()

    def _publish(self, figures: WallFigures, now: dt.datetime) -> None:
        if self.figures.live and figures.live is not self.figures.live:
            names = {h: figures.name(h) for h in figures.live}
            for tick in changes(self.figures.live, figures.live, names, now):
                self._add(tick)
        old = self.figures
        self.figures = figures
        if (figures.today, figures.live, figures.registry) != (old.today, old.live, old.registry):
            self.stamp += 1  # a new snapshot (encoded once per scope) only when it differs

    def _add(self, tick: Tick) -> None:
        self._ticks.append((self._next_tick, tick))
        self._next_tick += 1

    # ------------------------------------------------------------------ what readers get

    def snapshot(self, scope: Scope, label: str) -> Snapshot:
        """The scope's snapshot as of the last reading (built once per change and scope)."""
        key = (scope, label)
        cached = self._snapshots.get(key)
        if cached is not None and cached[0] == self.stamp:
            return cached[1]
        doc = snapshot(self.figures, scope, label, utc_now())
        built = Snapshot(doc["version"], json.dumps(doc, ensure_ascii=False).encode())
        if len(self._snapshots) > 256:
            self._snapshots.clear()
        self._snapshots[key] = (self.stamp, built)
        return built

    def cursor(self) -> str:
        return f"{self.epoch}-{self._next_tick - 1}"

    def ticks_after(
        self, cursor: str | None, scope: Scope, limit: int
    ) -> tuple[list[dict[str, object]], str]:
        """Ticks after ``cursor`` within ``scope``, oldest first, and the next cursor; a cursor
        of another run (or none) gets the latest ``limit``."""
        after = _after(cursor, self.epoch)
        # ids are consecutive: start right after the cursor instead of reading the whole ring
        skip = 0 if after is None or not self._ticks else max(0, after - self._ticks[0][0] + 1)
        found = [
            (n, t)
            for n, t in itertools.islice(self._ticks, skip, None)
            if scope is None or t.hall_id in scope
        ]
        found = found[-limit:] if after is None else found[:limit]
        last = found[-1][0] if found and after is not None else self._next_tick - 1
        names: Mapping[str, str] = {t.hall_id: self.figures.name(t.hall_id) for _, t in found}
        items = [t.doc(f"{self.epoch}-{n}", names[t.hall_id]) for n, t in found]
        return items, f"{self.epoch}-{last}"


def _after(cursor: str | None, epoch: str) -> int | None:
    if not cursor:
        return None
    head, _, number = cursor.rpartition("-")
    if head != epoch or not number.isdigit():
        return None
    return int(number)
