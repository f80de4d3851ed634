"""Anomaly cases (异常线索) in the store: opened once per fingerprint, decided by supervisors.

Opening is idempotent: a case whose fingerprint is already stored is skipped, whatever its
status, so re-running the detector over the same facts opens nothing new and a dismissed case
never comes back for them. Decisions are records (``anomaly_decisions``): each is a new row
numbered by ``generation``; changing one's mind names the decision it replaces, so a decision
taken on a stale page is refused rather than overriding a colleague's newer one.
"""

from __future__ import annotations

import datetime as dt
import math
import sys
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import Any

from sqlalchemy import Select, and_, func, insert, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from central.gaming.model import Anomaly
from central.security.tokens import Principal
from central.store.schema_gaming import anomaly_cases, anomaly_decisions

cases_t, decisions_t = anomaly_cases, anomaly_decisions
STALE = "该线索已被他人处理，请刷新后再试 / the case was decided meanwhile; reload and retry"


class Status(StrEnum):
    OPEN = "open"  # 待核实
    CONFIRMED = "confirmed"  # 属实
    DISMISSED = "dismissed"  # 不属实


class Verdict(StrEnum):
    CONFIRMED = "confirmed"
    DISMISSED = "dismissed"


class DecisionRefused(Exception):
    """Refused; ``status`` is the HTTP status the API answers with."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True, slots=True)
class NewCase:
    """One anomaly the detector found, as plain values for the store."""

    fingerprint: str
    pattern: str
    hall_id: str
    window: int | None
    staff: str | None
    period_start: dt.date
    period_end: dt.date
    period_kind: str  # day | week
    p_value: float | None
    effect: float
    effect_name: str
    method: str
    summary: str
    evidence: dict[str, Any]


async def open_cases(conn: AsyncConnection, found: Iterable[NewCase], now: dt.datetime) -> int:
    """Store the cases not stored yet (by fingerprint); how many were opened."""
    rows = {c.fingerprint: {**asdict(c), "opened_at": now} for c in found}
    if not rows:
        return 0
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    opened = 0
    for row in rows.values():  # one by one: rowcount per row is what every driver reports
        stmt = (
            dialect.insert(cases_t)
            .values(row)
            .on_conflict_do_nothing(index_elements=[cases_t.c.fingerprint])
        )
        opened += (await conn.execute(stmt)).rowcount or 0
    return opened


def _latest() -> Any:
    """Each case's latest decision (highest generation) as a subquery."""
    top = (
        select(decisions_t.c.case_id, func.max(decisions_t.c.generation).label("generation"))
        .group_by(decisions_t.c.case_id)
        .subquery()
    )
    return (
        select(decisions_t)
        .join(
            top,
            and_(
                top.c.case_id == decisions_t.c.case_id,
                top.c.generation == decisions_t.c.generation,
            ),
        )
        .subquery()
    )


def with_status() -> Select[Any]:
    """Every case with its status and latest decision (None while open)."""
    latest = _latest()
    status = func.coalesce(latest.c.decision, Status.OPEN.value).label("status")
    return select(
        cases_t,
        status,
        latest.c.id.label("decision_id"),
        latest.c.note.label("decision_note"),
        latest.c.decided_by,
        latest.c.decided_at,
    ).outerjoin(latest, latest.c.case_id == cases_t.c.id)


async def decisions(conn: AsyncConnection, case_id: int) -> list[Any]:
    """Every decision on the case, oldest first."""
    query = select(decisions_t).where(decisions_t.c.case_id == case_id)
    return list((await conn.execute(query.order_by(decisions_t.c.generation))).all())


async def decide(
    engine: AsyncEngine,
    who: Principal,
    case_id: int,
    verdict: Verdict,
    note: str,
    *,
    supersedes: int | None,
    visible: Any,
) -> Any:
    """Append a decision; ``supersedes`` must name the case's current one (None for the first).
    ``visible(conn, case_id)`` says whether the caller may see the case (else 404)."""
    async with engine.begin() as conn:
        if not await visible(conn, case_id):
            raise DecisionRefused(404, "异常线索不存在 / no such anomaly case")
        history = await decisions(conn, case_id)
        latest = history[-1] if history else None
        if supersedes != (None if latest is None else latest.id):
            raise DecisionRefused(
                409,
                STALE,
            )
        try:
            result = await conn.execute(
                insert(decisions_t)
                .values(
                    case_id=case_id,
                    generation=1 if latest is None else latest.generation + 1,
                    decision=verdict.value,
                    note=note,
                    decided_by=who.label or who.role.value,
                    decider_role=who.role.value,
                    decided_at=dt.datetime.now(dt.UTC),
                )
                .returning(decisions_t)
            )
            return result.one()
        except IntegrityError:
            raise DecisionRefused(
                409,
                STALE,
            ) from None


__all__ = [
    "DecisionRefused",
    "NewCase",
    "Status",
    "Verdict",
    "decide",
    "decisions",
    "from_anomaly",
    "open_cases",
    "storable",
    "with_status",
]


def from_anomaly(a: Anomaly) -> NewCase:
    """The detector's anomaly as a row (its evidence as stored JSON)."""
    return NewCase(
        fingerprint=a.fingerprint,
        pattern=a.pattern.value,
        hall_id=a.hall_id,
        window=a.window,
        staff=a.staff,
        period_start=a.period.start,
        period_end=a.period.end,
        period_kind=a.period.kind,
        p_value=storable(a.p_value),
        effect=_finite(a.effect),
        effect_name=a.effect_name,
        method=a.method,
        summary=a.summary,
        evidence=storable({**a.evidence, "q_value": a.q_value}),
    )


def _finite(effect: float) -> float:
    """An infinite effect (nothing in the comparison group) as the largest float: JSON has no
    infinity, and the column no null."""
    if math.isnan(effect):
        return 0.0
    return effect if math.isfinite(effect) else math.copysign(sys.float_info.max, effect)


def storable(value: Any) -> Any:
    """JSON PostgreSQL's jsonb takes: an infinite or undefined figure (an odds ratio over a
    zero count) becomes null instead of refusing the whole batch's cases."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): storable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [storable(v) for v in value]
    return value
