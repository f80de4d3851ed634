"""The 大屏's figures from the store, aggregated in SQL for every hall at once: the wall's cache
(``central.api.wall``) reads them for all halls and narrows to each scope in memory.

The indicators keep their one definition: 满意率 is counted evaluations with keys 1–2 over
counted evaluations (``SATISFIED_KEYS``, current correlation results, as
``central.rules.indicators``); 按时办结率 is the ladder's 按时办结 over its 按时办结 + 超时办结
steps by the business day of completion (``central.rules.timelimit``: on or before the
deadline day), both summed per day and hall here instead of loaded row by row.
"""

from __future__ import annotations

import datetime as dt
import re
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, case, func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from central.reporting import registry_cache
from central.reporting.halls import DEFAULT_OPENING, stored_setups
from central.reporting.registry import HallEntry
from central.reporting.wall import KeyCounts, is_open
from central.rules.indicators import OpeningPeriod, Ratio
from central.rules.scale import BAD_REVIEW_KEYS, SATISFIED_KEYS
from central.rules.timelimit import LadderStage
from central.rules.workdays import CalendarError, WorkCalendar, business_date
from central.store.schema import cases, events, gateways
from central.store.schema_cases import case_ladder, case_steps
from central.store.schema_correlation import correlation_heads, correlation_results

_SATISFIED = sorted(int(k) for k in SATISFIED_KEYS)
_BAD = sorted(int(k) for k in BAD_REVIEW_KEYS)
_DONE = (LadderStage.DONE_ON_TIME.value, LadderStage.DONE_LATE.value)
_PERIOD = re.compile(r"([0-2][0-9]):([0-5][0-9])-([0-2][0-9]):([0-5][0-9])")


async def gateway_counts(conn: AsyncConnection) -> dict[str, tuple[int, int]]:
    """hall → (gateways registered and not revoked, of them online)."""
    query = (
        select(
            gateways.c.hall_id,
            func.count(),
            func.sum(case((gateways.c.online.is_(True), 1), else_=0)),
        )
        .where(gateways.c.revoked_at.is_(None))
        .group_by(gateways.c.hall_id)
    )
    return {hall: (int(n), int(up or 0)) for hall, n, up in await conn.execute(query)}


async def open_stages(
    conn: AsyncConnection, hall: str | None = None, by: Any = None
) -> dict[Any, dict[str, int]]:
    """Open cases by ladder stage, per hall (or per ``by`` column within ``hall``)."""
    group = cases.c.hall_id if by is None else by
    query = (
        select(group, case_ladder.c.stage, func.count())
        .join(case_ladder, case_ladder.c.case_no == cases.c.case_no)
        .where(case_ladder.c.settled.is_(False), case_ladder.c.stage.is_not(None))
        .group_by(group, case_ladder.c.stage)
    )
    if hall is not None:
        query = query.where(cases.c.hall_id == hall)
    out: defaultdict[Any, dict[str, int]] = defaultdict(dict)
    for key, stage, n in await conn.execute(query):
        out[key][stage] = int(n)
    return dict(out)


def _key_sums() -> tuple[Any, Any, Any]:
    r = correlation_results
    return (
        func.count(),
        func.sum(case((r.c.key.in_(_SATISFIED), 1), else_=0)),
        func.sum(case((r.c.key.in_(_BAD), 1), else_=0)),
    )


def _current() -> Any:
    r, h = correlation_results, correlation_heads
    return h.join(
        r, and_(r.c.gateway_id == h.c.gateway_id, r.c.seq == h.c.seq, r.c.version == h.c.version)
    )


def _counts(row: Any) -> KeyCounts:
    return KeyCounts(int(row[-3]), int(row[-2] or 0), int(row[-1] or 0))


async def keys_by_day(
    conn: AsyncConnection, first: dt.date, last: dt.date
) -> dict[tuple[str, dt.date], KeyCounts]:
    """(hall, business day) → counted evaluations, 满意, 差评."""
    h, r = correlation_heads, correlation_results
    query = (
        select(h.c.hall_id, h.c.business_day, *_key_sums())
        .select_from(_current())
        .where(h.c.business_day >= first, h.c.business_day <= last, r.c.counted.is_(True))
        .group_by(h.c.hall_id, h.c.business_day)
    )
    return {(row[0], row[1]): _counts(row) for row in await conn.execute(query)}


async def keys_by_window(
    conn: AsyncConnection, first: dt.date, last: dt.date, hall: str | None = None
) -> dict[tuple[str, int], KeyCounts]:
    """(hall, window) → counted evaluations, 满意, 差评 over the days."""
    h, r = correlation_heads, correlation_results
    query = (
        select(r.c.hall_id, r.c.window, *_key_sums())
        .select_from(_current())
        .where(h.c.business_day >= first, h.c.business_day <= last, r.c.counted.is_(True))
        .group_by(r.c.hall_id, r.c.window)
    )
    if hall is not None:
        query = query.where(h.c.hall_id == hall)
    return {(row[0], int(row[1])): _counts(row) for row in await conn.execute(query)}


async def window_staff(conn: AsyncConnection, hall: str, day: dt.date) -> dict[int, str]:
    """window → the staff number of its latest current evaluation of the day."""
    h, r = correlation_heads, correlation_results
    query = (
        select(r.c.window, r.c.staff)
        .select_from(_current())
        .where(h.c.hall_id == hall, h.c.business_day == day, r.c.staff.is_not(None))
        .order_by(r.c.evaluated_at)
    )
    return {int(w): s for w, s in await conn.execute(query)}


async def ontime_by(
    conn: AsyncConnection, first: dt.date, last: dt.date, *, by: Any, hall: str | None = None
) -> dict[tuple[Any, Any], Ratio]:
    """(hall, ``by``) → 按时办结 / (按时 + 超时办结) of the cases completed on those days;
    ``by`` is ``case_steps.c.on_date`` (per day) or ``cases.c.department``."""
    s = case_steps
    on_time = func.sum(case((s.c.stage == LadderStage.DONE_ON_TIME.value, 1), else_=0))
    query = (
        select(cases.c.hall_id, by, on_time, func.count())
        .select_from(s.join(cases, cases.c.case_no == s.c.case_no))
        .where(s.c.on_date >= first, s.c.on_date <= last, s.c.stage.in_(_DONE))
        .group_by(cases.c.hall_id, by)
    )
    if hall is not None:
        query = query.where(cases.c.hall_id == hall)
    rows = await conn.execute(query)
    return {(row[0], row[1]): Ratio(int(row[2] or 0), int(row[3])) for row in rows}


@dataclass(frozen=True, slots=True)
class KeyPress:
    gateway: str
    seq: int
    hall: str
    window: int
    key: int
    at: dt.datetime
    received_at: dt.datetime


async def key_presses(
    conn: AsyncConnection, since_utc: dt.datetime, received_after: dt.datetime | None
) -> list[KeyPress]:
    """Stored ``evaluator.key`` events pressed since ``since_utc`` and received after
    ``received_after``: the ticker's bad reviews before correlation has seen them."""
    e = events
    query = select(e.c.gateway_id, e.c.seq, e.c.hall_id, e.c.utc, e.c.received_at, e.c.body).where(
        e.c.kind == "evaluator.key", e.c.utc >= since_utc
    )
    if received_after is not None:
        query = query.where(e.c.received_at > received_after)
    out = []
    for row in await conn.execute(query.order_by(e.c.received_at, e.c.gateway_id, e.c.seq)):
        body = row.body if isinstance(row.body, Mapping) else {}
        key, window = body.get("key"), body.get("window")
        if isinstance(key, int) and isinstance(window, int):
            out.append(
                KeyPress(
                    row.gateway_id, row.seq, row.hall_id, window, key, row.utc, row.received_at
                )
            )
    return out


def parse_opening(text: str) -> tuple[OpeningPeriod, ...]:
    """The registry's 办公时间 (``09:00-12:00,13:00-17:00``); empty if none given."""
    periods = []
    for m in _PERIOD.finditer(text):
        a, b = dt.time(int(m[1]), int(m[2])), dt.time(int(m[3]), int(m[4]))
        if a < b:
            periods.append(OpeningPeriod(start=a, end=b))
    return tuple(periods)


async def opening_hours(
    conn: AsyncConnection, registry: Mapping[str, HallEntry], halls: set[str]
) -> dict[str, tuple[OpeningPeriod, ...]]:
    """Each hall's opening hours: its stored setup's, else the registry's 办公时间, else the
    usual hours every hall gets (``central.reporting.halls``)."""
    setups = await stored_setups(conn)
    out = {}
    for hall in halls:
        if hall in setups:
            out[hall] = tuple(setups[hall].opening)
            continue
        entry = registry.get(hall)
        out[hall] = (parse_opening(entry.opening_hours) if entry else ()) or DEFAULT_OPENING
    return out


async def open_now(
    conn: AsyncConnection, halls: set[str], calendar: WorkCalendar, now: dt.datetime
) -> dict[str, bool]:
    """Each hall: within its opening hours on a working day (a year the calendar does not know
    counts Monday to Friday: the state still shows)."""
    today = business_date(now)
    try:
        workday = calendar.is_workday(today)
    except CalendarError:
        workday = today.weekday() < 5
    entries = (await registry_cache.snapshot(conn)).entries
    hours = await opening_hours(conn, entries, halls)
    return {hall: is_open(hours[hall], now, workday) for hall in halls}
