"""Evaluations (评价) as correlation sees them now, their version history, re-issues, and the
national five-level 好差评 export."""

from __future__ import annotations

import csv
import datetime as dt
import io
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path, Query
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field
from sqlalchemy import and_, or_, select, tuple_

from central.api.correlation_scope import (
    FromDay,
    ToDay,
    current_join,
    decode_cursor,
    encode_cursor,
    linked_to_department,
    period,
    scope_of,
)
from central.api.deps import Engine, EvaluationReader, GatewayId
from central.correlation.engine import Flag
from central.haocha.config import book_of
from central.reporting.names import names_for
from central.reporting.registry import HALL_NAME_DOC
from central.rules.scale import ExportRow, export_row, to_national
from central.store.schema import cases
from central.store.schema_correlation import (
    correlation_heads,
    correlation_reissues,
    correlation_results,
    service_sessions,
)
from protocols.devices import KEY_LABELS
from protocols.envelope import MAX_SEQ

router = APIRouter(prefix="/api/v1", tags=["evaluations"])
NOT_FOUND = "评价不存在 / no such evaluation"


class SessionBrief(BaseModel):
    session_id: str
    ticket: str
    window: int | None
    staff: str | None
    outcome: str
    called_at: dt.datetime | None
    started_at: dt.datetime | None
    ended_at: dt.datetime | None


class CaseBrief(BaseModel):
    case_no: str
    department: str
    item_name: str


class EvaluationOut(BaseModel):
    gateway: str
    seq: int
    version: int = Field(description="current version of the correlation result")
    hall: str
    hall_name: str = Field(description=HALL_NAME_DOC)
    window: int
    addr: int
    key: int = Field(description="evaluator key 1–6")
    label: str = Field(description="the key's label on the device")
    national_level: int = Field(description="好差评 level 5 非常满意 … 1 非常不满意")
    evaluated_at: dt.datetime = Field(description="corrected event time")
    business_day: dt.date
    time_source: str = Field(description="synced | repaired | unsynced")
    session: SessionBrief | None
    ticket: str | None
    staff: str | None
    staff_name: str | None = Field(
        default=None, description="工作人员姓名, where the hall's setup names them"
    )
    cases: list[CaseBrief]
    confidence: float = Field(ge=0, le=1)
    flags: list[Flag]
    counted: bool = Field(description="counts for 满意率")
    basis: str = Field(description="how the session was found (see the correlation README)")
    citizen: str | None = Field(description="camera verdict at the press, if any")


class EvaluationPage(BaseModel):
    items: list[EvaluationOut]
    next_cursor: str | None


class VersionOut(BaseModel):
    version: int
    supersedes: int | None
    computed_at: dt.datetime
    digest: str
    session_id: str | None
    case_nos: list[str]
    flags: list[str]
    counted: bool
    confidence: float
    evaluated_at: dt.datetime
    time_source: str


class ReissueOut(BaseModel):
    gateway: str
    seq: int
    from_version: int
    to_version: int
    hall: str
    business_day: dt.date
    changed: list[str] = Field(description="fields that changed")
    reissued_at: dt.datetime


class EvaluationDetail(BaseModel):
    current: EvaluationOut
    versions: list[VersionOut]
    reissues: list[ReissueOut]


async def _expand(conn: Any, rows: list[Any]) -> list[EvaluationOut]:
    sids = sorted({r.session_id for r in rows if r.session_id})
    nos = sorted({n for r in rows for n in r.case_nos})
    sessions: dict[str, Any] = {}
    for i in range(0, len(sids), 500):
        for s in await conn.execute(
            select(service_sessions).where(service_sessions.c.session_id.in_(sids[i : i + 500]))
        ):
            sessions[s.session_id] = s
    found: dict[str, Any] = {}
    for i in range(0, len(nos), 500):
        for c in await conn.execute(
            select(cases.c.case_no, cases.c.department, cases.c.item_name).where(
                cases.c.case_no.in_(nos[i : i + 500])
            )
        ):
            found[c.case_no] = c
    names = await names_for(conn, (r.hall_id for r in rows))
    out = []
    for r in rows:
        s = sessions.get(r.session_id) if r.session_id else None
        out.append(
            EvaluationOut(
                gateway=r.gateway_id,
                seq=r.seq,
                version=r.version,
                hall=r.hall_id,
                hall_name=names.hall(r.hall_id),
                window=r.window,
                addr=r.addr,
                key=r.key,
                label=KEY_LABELS[r.key],
                national_level=int(to_national(r.key, r.evaluated_at, book_of(conn.engine)).level),
                evaluated_at=r.evaluated_at,
                business_day=r.business_day,
                time_source=r.time_source,
                session=None
                if s is None
                else SessionBrief(
                    session_id=s.session_id,
                    ticket=s.ticket,
                    window=s.window,
                    staff=s.staff,
                    outcome=s.outcome,
                    called_at=s.called_at,
                    started_at=s.started_at,
                    ended_at=s.ended_at,
                ),
                ticket=r.ticket,
                staff=r.staff,
                staff_name=names.person(r.hall_id, r.staff),
                cases=[
                    CaseBrief(
                        case_no=n, department=found[n].department, item_name=found[n].item_name
                    )
                    for n in r.case_nos
                    if n in found
                ],
                confidence=r.confidence,
                flags=[Flag(f) for f in r.flags],
                counted=r.counted,
                basis=r.basis,
                citizen=r.citizen,
            )
        )
    return out


@router.get(
    "/evaluations",
    response_model=EvaluationPage,
    summary="Evaluations with their correlated session, cases and flags",
)
async def list_evaluations(
    db: Engine,
    who: EvaluationReader,
    from_: FromDay = None,
    to: ToDay = None,
    hall: str | None = None,
    window: int | None = None,
    staff: str | None = None,
    flag: Annotated[Flag | None, Query(description="only evaluations with this flag")] = None,
    counted: bool | None = None,
    key: Annotated[int | None, Query(ge=1, le=6)] = None,
    case_no: str | None = None,
    session_id: str | None = None,
    cursor: str | None = None,
    limit: Annotated[int, Query(ge=1, le=2000)] = 200,
) -> EvaluationPage:
    """Current results, in (evaluated_at, gateway, seq) order, keyset-paged."""
    scope = scope_of(who, hall)
    first, last = period(from_, to)
    r, h = correlation_results, correlation_heads
    query = (
        select(r)
        .select_from(current_join())
        .where(h.c.business_day >= first, h.c.business_day <= last)
    )
    query = query.where(scope.narrow(h.c.hall_id))
    if scope.department is not None:
        query = query.where(linked_to_department(scope.department))
    for column, value in (
        (r.c.window, window),
        (r.c.staff, staff),
        (r.c.counted, counted),
        (r.c.key, key),
        (r.c.session_id, session_id),
    ):
        if value is not None:
            query = query.where(column == value)
    rows = await _fetch(db, query, cursor, limit + 1, flag, case_no)
    async with db.connect() as conn:
        items = await _expand(conn, rows[:limit])
    more = len(rows) > limit
    last_row = rows[limit - 1] if more else None
    return EvaluationPage(
        items=items,
        next_cursor=encode_cursor(last_row.evaluated_at, last_row.gateway_id, last_row.seq)
        if last_row
        else None,
    )


async def _fetch(
    db: Any, query: Any, cursor: str | None, want: int, flag: Flag | None, case_no: str | None
) -> list[Any]:
    """Flags and case numbers are JSON lists: filtered here, reading on until ``want``."""
    r = correlation_results
    query = query.order_by(r.c.evaluated_at, r.c.gateway_id, r.c.seq)
    after = None
    if cursor is not None:
        at, gateway, seq = decode_cursor(cursor, 3)
        after = (dt.datetime.fromisoformat(at), str(gateway), int(seq))
    out: list[Any] = []
    async with db.connect() as conn:
        while len(out) < want:
            page = query
            if after is not None:
                page = page.where(
                    or_(
                        r.c.evaluated_at > after[0],
                        and_(
                            r.c.evaluated_at == after[0],
                            tuple_(r.c.gateway_id, r.c.seq) > tuple_(after[1], after[2]),
                        ),
                    )
                )
            rows = (await conn.execute(page.limit(want * 2))).all()
            out += [
                x
                for x in rows
                if (flag is None or flag.value in x.flags)
                and (case_no is None or case_no in x.case_nos)
            ]
            if len(rows) < want * 2:
                break
            after = (rows[-1].evaluated_at, rows[-1].gateway_id, rows[-1].seq)
    return out[:want]


@router.get(
    "/evaluations/export",
    summary="好差评 export: counted evaluations, CSV",
    response_class=StreamingResponse,
    responses={
        200: {
            "content": {"text/csv": {}},
            "description": "one row per evaluation and case (一次办多件: "
            "the evaluation covers each case)",
        }
    },
)
async def export_evaluations(
    db: Engine,
    who: EvaluationReader,
    from_: Annotated[dt.date, Query(alias="from", description="first business day")],
    to: Annotated[dt.date, Query(description="last business day")],
    hall: str | None = None,
    bom: Annotated[bool, Query(description="UTF-8 byte-order mark, for Excel")] = False,
) -> StreamingResponse:
    """Counted evaluations only (duplicates, orphans and suspected ones are not exported),
    mapped onto the national five-level scale (``central/rules/scale.py``)."""
    scope = scope_of(who, hall)
    first, last = period(from_, to)
    r, h = correlation_results, correlation_heads
    query = (
        select(r)
        .select_from(current_join())
        .where(h.c.business_day >= first, h.c.business_day <= last, r.c.counted.is_(True))
        .order_by(r.c.evaluated_at, r.c.gateway_id, r.c.seq)
    )
    query = query.where(scope.narrow(h.c.hall_id))
    if scope.department is not None:
        query = query.where(linked_to_department(scope.department))
    async with db.connect() as conn:
        rows = (await conn.execute(query)).all()
        departments = {}
        nos = sorted({n for x in rows for n in x.case_nos})
        for i in range(0, len(nos), 500):
            for c in await conn.execute(
                select(cases.c.case_no, cases.c.department).where(
                    cases.c.case_no.in_(nos[i : i + 500])
                )
            ):
                departments[c.case_no] = c.department
        names = await names_for(conn, None)
    fields = list(ExportRow.model_fields)
    book = book_of(db)  # the configured mapping versions

    async def body() -> AsyncIterator[str]:
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=fields, lineterminator="\r\n")
        if bom:
            out.write("\ufeff")
        writer.writeheader()
        for x in rows:
            numbers: list[str | None] = list(x.case_nos) or [None]
            for n in numbers:
                if scope.department is not None and departments.get(n or "") != scope.department:
                    continue
                row = export_row(
                    evaluation_id=f"{x.gateway_id}-{x.seq}",
                    key=x.key,
                    evaluated_at=x.evaluated_at,
                    hall=x.hall_id,
                    hall_name=names.hall(x.hall_id),
                    window=str(x.window),
                    staff=x.staff,
                    staff_name=names.person(x.hall_id, x.staff),
                    case_no=n,
                    department=departments.get(n) if n else None,
                    book=book,
                )
                doc = row.model_dump(mode="json")
                doc["reasons"] = "；".join(doc["reasons"])
                doc["tags"] = "；".join(doc["tags"])
                writer.writerow(doc)
            yield out.getvalue()
            out.seek(0)
            out.truncate()
        yield out.getvalue()

    name = f"haochaping-{first:%Y%m%d}-{last:%Y%m%d}.csv"
    return StreamingResponse(
        body(),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )


@router.get(
    "/evaluations/{gateway}/{seq}",
    response_model=EvaluationDetail,
    summary="One evaluation: current correlation, every version, every re-issue",
)
async def get_evaluation(
    gateway: GatewayId,
    seq: Annotated[int, Path(ge=1, le=MAX_SEQ)],
    db: Engine,
    who: EvaluationReader,
) -> EvaluationDetail:
    scope = scope_of(who, None)
    r, h = correlation_results, correlation_heads
    query = select(r).select_from(current_join()).where(h.c.gateway_id == gateway, h.c.seq == seq)
    query = query.where(scope.narrow(h.c.hall_id))
    if scope.department is not None:
        query = query.where(linked_to_department(scope.department))
    async with db.connect() as conn:
        row = (await conn.execute(query)).first()
        if row is None:
            raise HTTPException(404, NOT_FOUND)
        (current,) = await _expand(conn, [row])
        versions = (
            await conn.execute(
                select(r).where(r.c.gateway_id == gateway, r.c.seq == seq).order_by(r.c.version)
            )
        ).all()
        reissues = (
            await conn.execute(
                select(correlation_reissues)
                .where(
                    correlation_reissues.c.gateway_id == gateway, correlation_reissues.c.seq == seq
                )
                .order_by(correlation_reissues.c.id)
            )
        ).all()
    return EvaluationDetail(
        current=current,
        versions=[
            VersionOut(
                version=v.version,
                supersedes=v.supersedes,
                computed_at=v.computed_at,
                digest=v.digest,
                session_id=v.session_id,
                case_nos=list(v.case_nos),
                flags=list(v.flags),
                counted=v.counted,
                confidence=v.confidence,
                evaluated_at=v.evaluated_at,
                time_source=v.time_source,
            )
            for v in versions
        ],
        reissues=[_reissue(x) for x in reissues],
    )


def _reissue(x: Any) -> ReissueOut:
    return ReissueOut(
        gateway=x.gateway_id,
        seq=x.seq,
        from_version=x.from_version,
        to_version=x.to_version,
        hall=x.hall_id,
        business_day=x.business_day,
        changed=list(x.changed),
        reissued_at=x.reissued_at,
    )


@router.get(
    "/correlation/reissues",
    response_model=list[ReissueOut],
    summary="Correlation results re-issued (late data changed them), newest last",
)
async def list_reissues(
    db: Engine,
    who: EvaluationReader,
    since: Annotated[dt.datetime | None, Query(description="reissued_at ≥ since")] = None,
    hall: str | None = None,
    limit: Annotated[int, Query(ge=1, le=5000)] = 500,
) -> list[ReissueOut]:
    scope = scope_of(who, hall)
    x, h = correlation_reissues, correlation_heads
    query = select(x).order_by(x.c.id.desc()).limit(limit)
    if since is not None:
        query = query.where(
            x.c.reissued_at >= (since if since.tzinfo else since.replace(tzinfo=dt.UTC))
        )
    query = query.where(scope.narrow(x.c.hall_id))
    if scope.department is not None:
        query = query.where(
            select(h.c.seq)
            .where(
                h.c.gateway_id == x.c.gateway_id,
                h.c.seq == x.c.seq,
                linked_to_department(scope.department),
            )
            .exists()
        )
    async with db.connect() as conn:
        rows = (await conn.execute(query)).all()
    return [_reissue(r) for r in reversed(rows)]
