"""抽查 in the database: draw a month once, list its tasks within the caller's reach, record
call-backs, and read the findings.

Drawing a month that already has a sample returns that sample unchanged (no second draw, no
duplicate task), whatever seed is given the second time: the sample of record is the first.
Only a month that has ended (Beijing) can be drawn, so that its finished cases are all in.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, and_, false, func, insert, select, true
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from central.audits import sample as sampling
from central.audits.callback import CallbackIn, discrepancies
from central.audits.config import AuditConfig
from central.rules.indicators import CaseStatus
from central.rules.workdays import business_date, day_start
from central.security.access import Area, Reach, reach
from central.security.tokens import Principal
from central.store.schema import cases
from central.store.schema_audits import audit_callbacks, audit_samples, audit_tasks
from central.store.schema_correlation import (
    correlation_case_links,
    correlation_heads,
    correlation_results,
)


class AuditError(Exception):
    """Refused; ``status`` is the HTTP status the API answers with."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def month_span(month: str) -> tuple[dt.date, dt.date]:
    """'2026-11' → (2026-11-01, 2026-12-01): the month's first day and the next month's."""
    year, number = (int(p) for p in month.split("-"))
    return dt.date(year, number, 1), dt.date(year + number // 12, number % 12 + 1, 1)


@dataclass(frozen=True, slots=True)
class Sample:
    month: str
    seed: str
    departments: dict[str, dict[str, Any]]  # department → population, size, count, percent
    drawn_at: dt.datetime
    drawn_by: str
    created: bool  # False: the month had been drawn before, this is that sample


CHUNK = 5000  # finished cases read at a time while drawing


def _finished(month: str) -> ColumnElement[bool]:
    """The cases completed in the month (Beijing)."""
    first, following = month_span(month)
    return and_(
        cases.c.status == CaseStatus.COMPLETED.value,
        cases.c.completed_at >= day_start(first),
        cases.c.completed_at < day_start(following),
    )


async def _draw(
    conn: AsyncConnection, month: str, seed: str, config: AuditConfig
) -> tuple[dict[str, int], dict[str, list[Any]]]:
    """Each department's finished count and its picked rows, in draw order. The cases are
    counted first (a percentage needs the count), then read in chunks, keeping only each
    department's pick so far: memory follows the sample, not the month (a province's month
    is millions of cases)."""
    counted = await conn.execute(
        select(cases.c.department, func.count().label("n"))
        .where(_finished(month))
        .group_by(cases.c.department)
    )
    population = {r.department: int(r.n) for r in counted}
    size = {d: config.size_for(d).of(n) for d, n in population.items()}
    picked: dict[str, list[Any]] = {d: [] for d in population}
    query = select(cases.c.case_no, cases.c.department, cases.c.hall_id, cases.c.revision).where(
        _finished(month)
    )
    result = await conn.stream(query.execution_options(yield_per=CHUNK))
    async for chunk in result.partitions(CHUNK):
        by_department: dict[str, list[Any]] = {}
        for row in chunk:
            by_department.setdefault(row.department, []).append(row)
        for department, rows in by_department.items():
            if department not in size:  # finished since it was counted: next month's draw
                continue
            picked[department] = sampling.pick(
                seed, [*picked[department], *rows], size[department], lambda r: str(r.case_no)
            )
    return population, picked


def _sample_of(row: Any, created: bool) -> Sample:
    return Sample(row.month, row.seed, row.departments, row.drawn_at, row.drawn_by, created)


async def sample_of(conn: AsyncConnection, month: str) -> Sample | None:
    row = (await conn.execute(select(audit_samples).where(audit_samples.c.month == month))).first()
    return None if row is None else _sample_of(row, False)


async def draw_month(
    engine: AsyncEngine,
    month: str,
    config: AuditConfig,
    *,
    seed: str | None,
    by: str,
    now: dt.datetime,
) -> Sample:
    """The month's sample: drawn now, or the one drawn before."""
    _, following = month_span(month)
    async with engine.connect() as conn:
        drawn = await sample_of(conn, month)
    if drawn is not None:
        return drawn
    if business_date(now) < following:
        raise AuditError(422, "该月尚未结束，不能抽查 / only a month that has ended can be drawn")
    seed = sampling.check_seed(seed) if seed is not None else sampling.new_seed()
    try:
        async with engine.begin() as conn:
            population, picked = await _draw(conn, month, seed, config)
            departments = {
                d: {
                    "population": n,
                    "size": len(picked[d]),
                    **config.size_for(d).model_dump(),
                }
                for d, n in sorted(population.items())
            }
            await conn.execute(
                insert(audit_samples).values(
                    month=month, seed=seed, departments=departments, drawn_at=now, drawn_by=by
                )
            )
            tasks = [
                {
                    "month": month,
                    "case_no": row.case_no,
                    "department": d,
                    "hall_id": row.hall_id,
                    "position": i,
                    "case_revision": row.revision,
                }
                for d, rows in sorted(picked.items())
                for i, row in enumerate(rows)
            ]
            if tasks:
                await conn.execute(insert(audit_tasks), tasks)
    except IntegrityError:  # drawn by someone else at the same moment: theirs stands
        async with engine.connect() as conn:
            drawn = await sample_of(conn, month)
        if drawn is None:
            raise
        return drawn
    return Sample(month, seed, departments, now, by, True)


# ------------------------------------------------------------------------------------ reads


def task_scope(who: Principal, area: Area = Area.AUDITS) -> ColumnElement[bool]:
    """The ``audit_tasks`` rows ``who`` may see in ``area``."""
    found = reach(who, area)
    if found is Reach.EVERY_HALL:
        return true()
    if found is Reach.OWN_DEPARTMENT:
        return audit_tasks.c.department == who.department
    if found is Reach.OWN_HALL:
        return audit_tasks.c.hall_id.in_(sorted(who.halls))
    return false()


def _latest_callbacks() -> Any:
    latest = (
        select(func.max(audit_callbacks.c.id).label("id"))
        .group_by(audit_callbacks.c.task_id)
        .subquery()
    )
    return select(audit_callbacks).join(latest, latest.c.id == audit_callbacks.c.id).subquery("cb")


def _task_query(who: Principal, area: Area) -> Any:
    cb = _latest_callbacks()
    return (
        select(
            audit_tasks,
            cases.c.item_name,
            cases.c.window,
            cases.c.staff,
            cases.c.accepted_at,
            cases.c.completed_at,
            cb.c.id.label("cb_id"),
            cb.c.reached.label("cb_reached"),
            cb.c.discrepancies.label("cb_discrepancies"),
            cb.c.entered_at.label("cb_entered_at"),
        )
        .join(cases, cases.c.case_no == audit_tasks.c.case_no)
        .outerjoin(cb, cb.c.task_id == audit_tasks.c.id)
        .where(task_scope(who, area))
    )


async def tasks(
    conn: AsyncConnection,
    who: Principal,
    month: str,
    *,
    department: str | None = None,
    area: Area = Area.AUDITS,
) -> list[Any]:
    query = _task_query(who, area).where(audit_tasks.c.month == month)
    if department is not None:
        query = query.where(audit_tasks.c.department == department)
    query = query.order_by(audit_tasks.c.department, audit_tasks.c.position)
    return list((await conn.execute(query)).all())


async def task(conn: AsyncConnection, who: Principal, task_id: int) -> Any | None:
    """The task if it exists and the caller may see it (None for both other cases)."""
    return (
        await conn.execute(_task_query(who, Area.AUDITS).where(audit_tasks.c.id == task_id))
    ).first()


async def callbacks(conn: AsyncConnection, task_id: int) -> list[Any]:
    query = (
        select(audit_callbacks)
        .where(audit_callbacks.c.task_id == task_id)
        .order_by(audit_callbacks.c.id)
    )
    return list((await conn.execute(query)).all())


async def case_evaluations(conn: AsyncConnection, case_no: str) -> list[Any]:
    """The current correlation results tied to the case, oldest first."""
    heads, results, links = correlation_heads, correlation_results, correlation_case_links
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
        .join(
            links,
            and_(
                links.c.gateway_id == results.c.gateway_id,
                links.c.seq == results.c.seq,
                links.c.version == results.c.version,
            ),
        )
        .where(links.c.case_no == case_no)
        .order_by(results.c.evaluated_at, results.c.gateway_id, results.c.seq)
    )
    return list((await conn.execute(query)).all())


# ------------------------------------------------------------------------------------ write


async def record_callback(
    engine: AsyncEngine, who: Principal, task_id: int, answer: CallbackIn, now: dt.datetime
) -> Any:
    """A new call-back record for the task (the caller must reach it in AUDIT_WORK)."""
    async with engine.begin() as conn:
        found = (
            await conn.execute(
                select(audit_tasks.c.case_no).where(
                    audit_tasks.c.id == task_id, task_scope(who, Area.AUDIT_WORK)
                )
            )
        ).first()
        if found is None:
            raise AuditError(404, "抽查任务不存在 / no such audit task")
        keys = [r.key for r in await case_evaluations(conn, found.case_no) if r.counted]
        values = {
            "task_id": task_id,
            "reached": answer.reached,
            "handled": answer.handled,
            "timing": answer.timing,
            "evaluation": answer.evaluation,
            "satisfied": answer.satisfied,
            "note": answer.note,
            "discrepancies": [str(d) for d in discrepancies(answer, keys)],
            "entered_by": who.label or who.role.value,
            "entered_at": now,
        }
        inserted = insert(audit_callbacks).values(**values).returning(*audit_callbacks.c)
        return (await conn.execute(inserted)).one()
