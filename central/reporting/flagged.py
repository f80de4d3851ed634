"""Flagged evaluations (可疑评价): what the review page lists and the overview counts.

An evaluation is flagged when its gateway marked it (NO_SESSION, UNKNOWN_SESSION,
SESSION_REPEAT) or correlation's current result carries a flag (ORPHAN, SELF_PRESS_SUSPECTED…).
Both sources are read for a date range and merged per evaluation, so a gateway's marks are
listed before correlation has run for the day. RETRANSMIT repeats are never listed: they are
not evaluations.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError
from sqlalchemy import String, and_, cast, or_, select, tuple_
from sqlalchemy.ext.asyncio import AsyncConnection

from central.reporting.registry import Halls, hall_clause
from central.reporting.reviews import GATEWAY_FLAGS, KEY_KIND, current_ids
from central.rules.workdays import business_date, day_start
from central.security.access import Area, may
from central.security.tokens import Principal, Role
from central.store.schema import cases, events
from central.store.schema_correlation import correlation_heads, correlation_results
from central.store.schema_dashboard import evaluation_reviews
from protocols.devices import EvaluatorKey

MAX_DAYS = 31  # one request reads at most a month of key presses


@dataclass
class Flagged:
    gateway: str
    seq: int
    hall: str
    window: int
    key: int
    at: dt.datetime
    day: dt.date
    marks: list[str] = field(default_factory=list)
    flags: list[str] = field(default_factory=list)  # correlation's
    version: int | None = None
    session_id: str | None = None
    ticket: str | None = None
    staff: str | None = None
    case_nos: list[str] = field(default_factory=list)
    confidence: float | None = None
    counted: bool | None = None
    basis: str | None = None
    citizen: str | None = None
    decisions: dict[str, str] = field(default_factory=dict)  # flag → current decision

    @property
    def all_flags(self) -> list[str]:
        return list(dict.fromkeys([*self.marks, *self.flags]))

    @property
    def open_flags(self) -> list[str]:
        return [f for f in self.all_flags if f not in self.decisions]


def _may_carry_gateway_flag() -> Any:
    """A cheap test in the database that passes every press whose marks hold a flag (and
    perhaps a few more): a day's presses are not each read into Python to find the few."""
    marks = events.c.body["marks"].as_string()
    return or_(*(marks.like(f"%{flag}%") for flag in sorted(GATEWAY_FLAGS)))


def _in_days(column: Any, first: dt.date, last: dt.date) -> Any:
    return and_(column >= day_start(first), column < day_start(last + dt.timedelta(days=1)))


async def find(
    conn: AsyncConnection, who: Principal, first: dt.date, last: dt.date, hall: str | None = None
) -> list[Flagged]:
    """Flagged evaluations evaluated in [first, last] (business dates) that the caller may
    see, oldest first, with the current decision on each flag."""
    if not may(who, Area.EVALUATIONS):
        return []
    scope: Halls = hall
    if who.role is Role.HALL_MANAGER:
        if hall is not None and hall not in who.halls:
            return []
        scope = who.halls if hall is None else hall
    found: dict[tuple[str, int], Flagged] = {}
    leader = who.role is Role.DEPARTMENT_LEADER
    if not leader:  # gateway marks carry no case: a leader sees correlated evaluations only
        query = select(
            events.c.gateway_id, events.c.seq, events.c.hall_id, events.c.utc, events.c.body
        ).where(events.c.kind == KEY_KIND, _in_days(events.c.utc, first, last))
        query = query.where(hall_clause(events.c.hall_id, scope), _may_carry_gateway_flag())
        for r in await conn.execute(query):
            try:
                key = EvaluatorKey.model_validate(r.body)
            except ValidationError:
                continue  # not an evaluation this version can read
            marks = list(key.marks)
            if "RETRANSMIT" in marks:
                continue
            wanted: list[str] = [m for m in marks if m in GATEWAY_FLAGS]
            if wanted:
                found[(r.gateway_id, r.seq)] = Flagged(
                    r.gateway_id,
                    r.seq,
                    r.hall_id,
                    key.window,
                    key.key,
                    r.utc,
                    business_date(r.utc),
                    marks=wanted,
                    # the invitation's service until correlation says more
                    ticket=key.invitation.ticket if key.invitation else None,
                    staff=key.invitation.staff if key.invitation else None,
                )
    await _add_correlation(conn, who, first, last, scope, found)
    await _add_decisions(conn, found)
    return sorted(found.values(), key=lambda f: (f.at, f.gateway, f.seq))


async def _add_correlation(
    conn: AsyncConnection,
    who: Principal,
    first: dt.date,
    last: dt.date,
    hall: Halls,
    found: dict[tuple[str, int], Flagged],
) -> None:
    results, heads = correlation_results, correlation_heads
    query = (
        select(results)
        .join(
            heads,
            and_(
                heads.c.gateway_id == results.c.gateway_id,
                heads.c.seq == results.c.seq,
                heads.c.version == results.c.version,
            ),
        )
        .where(results.c.business_day >= first, results.c.business_day <= last)
    )
    query = query.where(hall_clause(results.c.hall_id, hall))
    department_cases: set[str] | None = None
    if who.role is Role.DEPARTMENT_LEADER:
        department_cases = {
            r.case_no
            for r in await conn.execute(
                select(cases.c.case_no).where(cases.c.department == who.department)
            )
        }
    # the results with a flag, then those of presses the gateway flagged (most have neither)
    rows = list(await conn.execute(query.where(cast(results.c.flags, String) != "[]")))
    marked = [key for key in found if key not in {(r.gateway_id, r.seq) for r in rows}]
    for i in range(0, len(marked), 200):
        chunk = marked[i : i + 200]
        wanted = tuple_(results.c.gateway_id, results.c.seq).in_(chunk)
        rows += list(await conn.execute(query.where(wanted)))
    for r in rows:
        linked = [str(c) for c in r.case_nos or []]
        if department_cases is not None and not department_cases.intersection(linked):
            continue
        key = (r.gateway_id, r.seq)
        item = found.get(key)
        flags = [str(f) for f in r.flags or []]
        if item is None:
            if not flags:
                continue
            item = found[key] = Flagged(
                r.gateway_id, r.seq, r.hall_id, r.window, r.key, r.evaluated_at, r.business_day
            )
        item.flags, item.version, item.session_id = flags, r.version, r.session_id
        item.ticket, item.staff, item.case_nos = r.ticket, r.staff, linked
        item.confidence, item.counted, item.basis = r.confidence, r.counted, r.basis
        item.citizen, item.at, item.day = r.citizen, r.evaluated_at, r.business_day


async def _add_decisions(conn: AsyncConnection, found: dict[tuple[str, int], Flagged]) -> None:
    if not found:
        return
    keys = list(found)
    rows: list[Any] = []
    for i in range(0, len(keys), 200):
        gateways = {g for g, _ in keys[i : i + 200]}
        seqs = {s for _, s in keys[i : i + 200]}
        rows += (
            await conn.execute(
                select(evaluation_reviews).where(
                    evaluation_reviews.c.gateway_id.in_(gateways),
                    evaluation_reviews.c.seq.in_(seqs),
                )
            )
        ).all()
    current = current_ids(rows)
    for r in rows:
        item = found.get((r.gateway_id, r.seq))
        if item is not None and r.id in current:
            item.decisions[r.flag] = r.decision
