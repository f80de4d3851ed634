"""异常线索 API: the anomaly cases gaming detection opened, with their evidence, and the
supervisors' decisions on them (confirmed / dismissed with a note; each a new record).

Scope follows the access table's ``anomalies`` row: supervisors every hall, a hall manager
the hall and the halls below it; a case outside it answers 404 like one that does not exist.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Mapping
from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Path, Query, status
from pydantic import BaseModel, Field
from sqlalchemy import Select
from sqlalchemy.ext.asyncio import AsyncConnection

from central.api.deps import AnomalyReader, Engine, ReviewDecider, hall_in_reach
from central.api.evidence import image_url
from central.api.overview import FIRST_DAY, LAST_DAY
from central.gaming import casebook, presses
from central.gaming.casebook import DecisionRefused, Status, Verdict
from central.reporting.registry import HALL_NAME_DOC, display_name
from central.reporting.registry_cache import hall_names
from central.security.access import Area
from central.security.tokens import Principal

router = APIRouter(prefix="/api/v1", tags=["anomalies"])

NOT_FOUND = "异常线索不存在 / no such anomaly case"
MAX_LIST = 500
AnomalyId = Annotated[int, Path(ge=1, le=2**31 - 1, description="anomaly case id")]
Day = Annotated[dt.date | None, Query(ge=FIRST_DAY, le=LAST_DAY)]


class DecisionOut(BaseModel):
    id: int
    generation: int = Field(description="1 for the first decision on the case, then 2, 3…")
    decision: Verdict
    note: str
    decided_by: str
    decider_role: str
    decided_at: dt.datetime


class AnomalyOut(BaseModel):
    id: int
    fingerprint: str
    pattern: str
    hall: str
    hall_name: str = Field(description=HALL_NAME_DOC)
    window: int | None
    staff: str | None
    period_start: dt.date
    period_end: dt.date
    period_kind: str = Field(description="day | week")
    p_value: float | None
    effect: float
    effect_name: str
    method: str
    summary: str
    opened_at: dt.datetime
    status: Status = Field(description="open until decided; then the latest decision")
    decision_id: int | None = Field(description="the current decision (to name as supersedes)")


class AnomalyListOut(BaseModel):
    total: int
    counts: dict[str, int] = Field(description="pattern → cases under every filter but pattern")
    items: list[AnomalyOut]
    cut: bool = Field(description=f"more than {MAX_LIST} matched: the list is cut")


class PressOut(BaseModel):
    gateway: str
    seq: int
    at: dt.datetime | None
    key: int | None
    window: int | None
    staff: str | None
    ticket: str | None
    flags: list[str]
    citizen: str | None = Field(description="camera verdict: present | absent | unknown")
    image_url: str | None = Field(description="the snapshot, where the evidence vault holds it")


class AnomalyDetailOut(AnomalyOut):
    evidence: dict[str, Any] = Field(description="what the detector found, as it recorded it")
    presses: list[PressOut] = Field(description="the evidence's presses, resolved")
    decisions: list[DecisionOut] = Field(description="every decision, oldest first")


class DecisionIn(BaseModel):
    decision: Verdict = Field(description="confirmed (属实) or dismissed (不属实)")
    note: str = Field(min_length=1, max_length=2000, description="why (核实意见)")
    supersedes: int | None = Field(
        default=None,
        ge=1,
        le=2**31 - 1,
        description="id of the case's current decision, which this one replaces; null first",
    )


def _scoped(who: Principal, hall: str | None) -> Select[Any]:
    query = casebook.with_status()
    halls = hall_in_reach(who, Area.ANOMALIES, hall)
    if halls is not None:
        query = query.where(casebook.cases_t.c.hall_id.in_(sorted(halls)))
    return query


def _out(row: Any, names: Mapping[str, str]) -> dict[str, Any]:
    return {
        **row._asdict(),
        "hall": row.hall_id,
        "hall_name": display_name(names, row.hall_id),
    }


@router.get(
    "/anomalies",
    response_model=AnomalyListOut,
    summary="Anomaly cases (异常线索) with counts per pattern",
    responses={403: {"description": "department leaders, technicians; a hall not the caller's"}},
)
async def list_anomalies(
    db: Engine,
    who: AnomalyReader,
    status_: Annotated[
        Status | Literal["all"] | None, Query(alias="status", description="default: all")
    ] = None,
    pattern: Annotated[str | None, Query(pattern=r"^[a-z_]{1,48}$")] = None,
    hall: Annotated[str | None, Query(max_length=64)] = None,
    window: Annotated[int | None, Query(ge=0, le=9999)] = None,
    staff: Annotated[str | None, Query(max_length=6)] = None,
    first: Day = None,
    last: Day = None,
) -> AnomalyListOut:
    c = casebook.cases_t.c
    query = _scoped(who, hall)
    if window is not None:
        query = query.where(c.window == window)
    if staff is not None:
        query = query.where(c.staff == staff)
    if first is not None:
        query = query.where(c.period_end >= first)
    if last is not None:
        query = query.where(c.period_start <= last)
    async with db.connect() as conn:
        rows = (await conn.execute(query.order_by(c.opened_at.desc(), c.id.desc()))).all()
        names = await hall_names(conn)
    if status_ not in (None, "all"):
        rows = [r for r in rows if r.status == status_]
    counts = Counter(r.pattern for r in rows)
    chosen = [r for r in rows if pattern is None or r.pattern == pattern]
    return AnomalyListOut(
        total=len(chosen),
        counts=dict(counts),
        items=[AnomalyOut.model_validate(_out(r, names)) for r in chosen[:MAX_LIST]],
        cut=len(chosen) > MAX_LIST,
    )


async def _one(conn: AsyncConnection, who: Principal, anomaly_id: int) -> Any:
    query = _scoped(who, None).where(casebook.cases_t.c.id == anomaly_id)
    return (await conn.execute(query)).first()


@router.get(
    "/anomalies/{anomaly_id}",
    response_model=AnomalyDetailOut,
    summary="One anomaly case with its evidence (presses resolved, snapshots) and decisions",
    responses={404: {"description": "no such case, or not in the caller's scope"}},
)
async def get_anomaly(db: Engine, who: AnomalyReader, anomaly_id: AnomalyId) -> AnomalyDetailOut:
    async with db.connect() as conn:
        row = await _one(conn, who, anomaly_id)
        if row is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, NOT_FOUND)
        found = await presses.resolve(conn, row.evidence or {})
        history = await casebook.decisions(conn, anomaly_id)
        names = await hall_names(conn)
    return AnomalyDetailOut.model_validate(
        {
            **_out(row, names),
            "presses": [
                {
                    **p,
                    "image_url": image_url(p["snapshot_sha256"]) if p["snapshot_sha256"] else None,
                }
                for p in found
            ],
            "decisions": [d._asdict() for d in history],
        }
    )


@router.post(
    "/anomalies/{anomaly_id}/decisions",
    response_model=DecisionOut,
    status_code=status.HTTP_201_CREATED,
    summary="Confirm or dismiss an anomaly case with a note (supervisors)",
    description="Appends a decision. `supersedes` must name the case's current decision (null "
    "for the first): a decision made on a stale view is refused with 409. Only confirmed cases "
    "count in the bulletin and the staff scorecard; a dismissed case never reopens.",
    responses={404: {"description": "no such case"}, 409: {"description": "decided meanwhile"}},
)
async def decide_anomaly(
    db: Engine, who: ReviewDecider, anomaly_id: AnomalyId, body: DecisionIn
) -> DecisionOut:
    async def visible(conn: AsyncConnection, case_id: int) -> bool:
        return await _one(conn, who, case_id) is not None

    try:
        row = await casebook.decide(
            db,
            who,
            anomaly_id,
            body.decision,
            body.note,
            supersedes=body.supersedes,
            visible=visible,
        )
    except DecisionRefused as exc:
        raise HTTPException(exc.status, str(exc)) from None
    return DecisionOut.model_validate(row._asdict())
