"""复核 API: confirm or dismiss an evaluation's flag (a new record, never an edit), read the
review history and the camera evidence of a key press."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path, Query, status
from pydantic import BaseModel, Field
from sqlalchemy.ext.asyncio import AsyncConnection

from central.api.deps import Engine, EvaluationReader, GatewayId, ReviewDecider, ReviewLogReader
from central.api.evidence import image_url
from central.api.overview import FIRST_DAY, LAST_DAY
from central.records import evidence
from central.reporting import flagged, queue, reviews
from central.reporting.names import STAFF_NAME_DOC, Names, names_for
from central.reporting.registry import HALL_NAME_DOC
from central.reporting.reviews import Decision, ReviewError
from central.rules.workdays import business_date
from central.security.tokens import Principal
from hallkit.clock import utc_now

router = APIRouter(prefix="/api/v1", tags=["reviews"])

NOT_FOUND = "评价不存在 / no such evaluation"
Seq = Annotated[int, Path(ge=1, le=2**63 - 1, description="gateway seq of the evaluator.key event")]


class ReviewIn(BaseModel):
    flag: str = Field(pattern=r"^[A-Z_]{1,64}$", description="the flag decided on")
    decision: Decision = Field(description="confirmed (属实) or dismissed (不属实)")
    note: str = Field(default="", max_length=2000, description="why (复核意见)")
    supersedes: int | None = Field(
        default=None,
        ge=1,
        le=2**31 - 1,
        description="id of the flag's current review, which this one replaces; null for the "
        "first review of the flag",
    )


class ReviewOut(BaseModel):
    id: int
    gateway: str
    seq: int
    hall: str
    flag: str
    decision: Decision
    note: str
    generation: int = Field(description="1 for the first review of the flag, then 2, 3…")
    supersedes: int | None
    evaluation_version: int | None = Field(description="correlation result version seen")
    reviewer: str
    reviewer_role: str
    created_at: dt.datetime
    current: bool = Field(description="no later review replaces this one")


class EvidenceOut(BaseModel):
    seq: int = Field(description="gateway seq of the camera.verdict event")
    verdict: str = Field(description="present | absent | unknown (a citizen at the window)")
    confidence: float
    reason: str
    camera: str | None
    frames: int
    occupied_frames: int
    snapshot: str | None = Field(description="evidence path on the gateway")
    snapshot_sha256: str | None
    snapshot_offset_ms: int | None
    manifest_seq: int
    manifest_head: str
    image_url: str | None = Field(
        description="where central serves the snapshot (GET, same credentials); null until the "
        "gateway's upload arrived and matched the journaled SHA-256"
    )


class EvaluationReviewsOut(BaseModel):
    gateway: str
    seq: int
    hall: str
    hall_name: str = Field(description=HALL_NAME_DOC)
    window: int
    key: int
    utc: dt.datetime
    flags: list[str] = Field(description="gateway marks and correlation flags to decide on")
    correlation_version: int | None
    reviews: list[ReviewOut] = Field(description="every review, per flag oldest first")
    evidence: list[EvidenceOut]


def _review_out(row: Any, current: bool) -> ReviewOut:
    return ReviewOut(
        id=row.id,
        gateway=row.gateway_id,
        seq=row.seq,
        hall=row.hall_id,
        flag=row.flag,
        decision=Decision(row.decision),
        note=row.note,
        generation=row.generation,
        supersedes=row.supersedes,
        evaluation_version=row.evaluation_version,
        reviewer=row.reviewer,
        reviewer_role=row.reviewer_role,
        created_at=row.created_at,
        current=current,
    )


def _refuse(exc: ReviewError) -> HTTPException:
    return HTTPException(exc.status, str(exc))


async def evidence_out(conn: AsyncConnection, evaluation: reviews.Evaluation) -> list[EvidenceOut]:
    """The camera verdicts of a key press, each with its snapshot's address once uploaded."""
    verdicts = await reviews.evidence(conn, evaluation)
    uploaded = await evidence.stored_hashes(
        conn, {v["snapshot_sha256"] for v in verdicts if v.get("snapshot_sha256")}
    )
    return [
        EvidenceOut.model_validate(
            {
                **v,
                "image_url": image_url(v["snapshot_sha256"])
                if v.get("snapshot_sha256") in uploaded
                else None,
            }
        )
        for v in verdicts
    ]


async def _evaluation(db: Engine, who: Principal, gateway: str, seq: int) -> EvaluationReviewsOut:
    async with db.connect() as conn:
        evaluation = await reviews.visible(conn, who, gateway, seq)
        if evaluation is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, NOT_FOUND)
        rows = await reviews.history(conn, gateway, seq)
        found = await evidence_out(conn, evaluation)
        names = await names_for(conn, [evaluation.hall])
    current = reviews.current_ids(rows)
    return EvaluationReviewsOut(
        gateway=gateway,
        seq=seq,
        hall=evaluation.hall,
        hall_name=names.hall(evaluation.hall),
        window=evaluation.window,
        key=evaluation.key,
        utc=evaluation.utc,
        flags=list(evaluation.flags),
        correlation_version=evaluation.correlation_version,
        reviews=[_review_out(r, r.id in current) for r in rows],
        evidence=found,
    )


@router.get(
    "/evaluations/{gateway}/{seq}/reviews",
    response_model=EvaluationReviewsOut,
    summary="An evaluation's flags, their review history and the camera evidence",
    responses={404: {"description": "no such evaluation, or not in the caller's scope"}},
)
async def get_reviews(
    db: Engine, who: EvaluationReader, gateway: GatewayId, seq: Seq
) -> EvaluationReviewsOut:
    return await _evaluation(db, who, gateway, seq)


@router.post(
    "/evaluations/{gateway}/{seq}/reviews",
    response_model=ReviewOut,
    status_code=status.HTTP_201_CREATED,
    summary="Confirm or dismiss one flag of an evaluation (supervisors)",
    description="Appends a review. `supersedes` must name the flag's current review (null for "
    "the first): a decision made on a stale view is refused with 409 instead of "
    "overriding a newer one. The old review stays, marked as replaced.",
    responses={
        403: {"description": "not a supervisor"},
        404: {"description": "no such evaluation, or not in the caller's scope"},
        409: {"description": "`supersedes` is not the flag's current review"},
        422: {"description": "the evaluation does not carry this flag"},
    },
)
async def post_review(
    db: Engine, who: ReviewDecider, gateway: GatewayId, seq: Seq, body: ReviewIn
) -> ReviewOut:
    try:
        row = await reviews.record(
            db,
            who,
            gateway,
            seq,
            flag=body.flag,
            decision=body.decision,
            note=body.note.strip(),
            supersedes=body.supersedes,
        )
    except ReviewError as exc:
        raise _refuse(exc) from None
    return _review_out(row, True)


@router.get(
    "/reviews",
    response_model=list[ReviewOut],
    summary="The latest flag reviews, newest first (supervisors, hall managers)",
    responses={403: {"description": "other roles"}},
)
async def list_reviews(
    db: Engine,
    who: ReviewLogReader,
    hall: str | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> list[ReviewOut]:
    try:
        rows, replaced = await reviews.recent(db, who, hall=hall, limit=limit)
    except ReviewError as exc:
        raise _refuse(exc) from None
    return [_review_out(r, r.id not in replaced) for r in rows]


class FlaggedOut(BaseModel):
    gateway: str
    seq: int
    hall: str
    hall_name: str = Field(description=HALL_NAME_DOC)
    window: int
    key: int
    at: dt.datetime = Field(description="evaluated at (corrected gateway time)")
    day: dt.date
    marks: list[str] = Field(description="the gateway's marks")
    flags: list[str] = Field(description="correlation's flags (current version)")
    version: int | None = Field(description="correlation result version; null: not correlated")
    session_id: str | None
    ticket: str | None
    staff: str | None
    staff_name: str | None = Field(description=STAFF_NAME_DOC)
    case_nos: list[str]
    confidence: float | None
    counted: bool | None
    basis: str | None
    citizen: str | None = Field(description="camera verdict: present | absent | unknown")
    decisions: dict[str, str] = Field(description="flag → current decision")
    open_flags: list[str] = Field(description="flags no supervisor has decided on")


def _flagged_out(f: flagged.Flagged, names: Names) -> FlaggedOut:
    return FlaggedOut(
        gateway=f.gateway,
        seq=f.seq,
        hall=f.hall,
        hall_name=names.hall(f.hall),
        window=f.window,
        key=f.key,
        at=f.at,
        day=f.day,
        marks=f.marks,
        flags=f.flags,
        version=f.version,
        session_id=f.session_id,
        ticket=f.ticket,
        staff=f.staff,
        staff_name=names.person(f.hall, f.staff),
        case_nos=f.case_nos,
        confidence=f.confidence,
        counted=f.counted,
        basis=f.basis,
        citizen=f.citizen,
        decisions=f.decisions,
        open_flags=f.open_flags,
    )


def _day_range(first: dt.date | None, last: dt.date | None) -> tuple[dt.date, dt.date]:
    first = first or business_date(utc_now())
    last = last or first
    if last < first or (last - first).days >= flagged.MAX_DAYS:
        raise HTTPException(
            422,
            f"日期范围须在 {flagged.MAX_DAYS} 天内 / at most {flagged.MAX_DAYS} days, first ≤ last",
        )
    return first, last


FirstDay = Annotated[
    dt.date | None, Query(ge=FIRST_DAY, le=LAST_DAY, description="business date, default today")
]
LastDay = Annotated[
    dt.date | None, Query(ge=FIRST_DAY, le=LAST_DAY, description="business date, default = first")
]


@router.get(
    "/review-queue",
    response_model=list[FlaggedOut],
    summary="Flagged evaluations of a date range, with the decisions so far",
    description="Gateway marks and correlation flags, merged per evaluation, oldest "
    "first. Hall managers see their hall, department leaders the "
    "evaluations correlated to their department's cases.",
    responses={
        403: {"description": "technicians"},
        422: {"description": "more than 31 days, or first after last"},
    },
)
async def review_queue(
    db: Engine,
    who: EvaluationReader,
    first: Annotated[
        dt.date | None, Query(ge=FIRST_DAY, le=LAST_DAY, description="business date, default today")
    ] = None,
    last: Annotated[
        dt.date | None,
        Query(ge=FIRST_DAY, le=LAST_DAY, description="business date, default = first"),
    ] = None,
    hall: str | None = None,
    undecided: Annotated[bool, Query(description="only those with a flag to decide")] = False,
) -> list[FlaggedOut]:
    first, last = _day_range(first, last)
    async with db.connect() as conn:
        items = [
            f
            for f in await flagged.find(conn, who, first, last, hall)
            if f.open_flags or not undecided
        ]
        names = await names_for(conn, (f.hall for f in items))
    return [_flagged_out(f, names) for f in items]


class QueuePageOut(BaseModel):
    total: int = Field(description="evaluations matching every filter")
    offset: int
    limit: int
    counts: dict[str, int] = Field(
        description="flag → evaluations carrying it under every filter but `flag` (with "
        "`undecided`, those where it is still open)"
    )
    items: list[FlaggedOut]


@router.get(
    "/review-queue/page",
    response_model=QueuePageOut,
    summary="One page of the flagged evaluations under filters, with counts per flag",
    description="The review queue filtered by hall, window, staff, key, flag and business "
    "dates, oldest first, within the caller's scope (counts too).",
    responses={
        403: {"description": "technicians"},
        422: {"description": "more than 31 days, or first after last"},
    },
)
async def review_queue_page(
    db: Engine,
    who: EvaluationReader,
    first: FirstDay = None,
    last: LastDay = None,
    hall: str | None = None,
    window: Annotated[int | None, Query(ge=0, le=9999)] = None,
    staff: Annotated[str | None, Query(max_length=64)] = None,
    key: Annotated[int | None, Query(ge=1, le=6, description="the key pressed")] = None,
    flag: Annotated[str | None, Query(pattern=r"^[A-Z_]{1,64}$")] = None,
    undecided: Annotated[bool, Query(description="only flags no one has decided")] = False,
    offset: Annotated[int, Query(ge=0)] = 0,
    limit: Annotated[int, Query(ge=1, le=queue.MAX_BULK)] = 100,
) -> QueuePageOut:
    first, last = _day_range(first, last)
    wanted = queue.QueueFilter(hall, window, staff or None, key, flag, undecided)
    async with db.connect() as conn:
        items = await flagged.find(conn, who, first, last, hall)
        found = queue.page(items, wanted, offset, limit)
        names = await names_for(conn, (f.hall for f in found.items))
    return QueuePageOut(
        total=found.total,
        offset=offset,
        limit=limit,
        counts=found.counts,
        items=[_flagged_out(f, names) for f in found.items],
    )


class BulkRow(BaseModel):
    gateway: str = Field(min_length=1, max_length=64)
    seq: int = Field(ge=1, le=2**63 - 1)
    flag: str | None = Field(
        default=None,
        pattern=r"^[A-Z_]{1,64}$",
        description="the flag to decide; null: every flag of the evaluation not decided yet",
    )


class BulkIn(BaseModel):
    rows: list[BulkRow] = Field(min_length=1, max_length=queue.MAX_BULK)
    decision: Decision
    note: str = Field(default="", max_length=2000, description="one 复核意见 for every row")


class BulkOut(BaseModel):
    decided: list[ReviewOut] = Field(description="the new reviews, one per flag decided")
    already: list[ReviewOut] = Field(
        description="the current review of flags someone decided before: left as they were"
    )


@router.post(
    "/review-queue/decide",
    response_model=BulkOut,
    summary="Confirm or dismiss many flags at once with one note (supervisors)",
    description="Each flag decided gets its own review record, exactly as a single decision "
    "would, all in one transaction. Flags already decided are reported back and left alone "
    "(change one with POST …/reviews naming the review it replaces). A row that does not "
    "exist or lies outside the caller's scope refuses the whole request.",
    responses={
        403: {"description": "not a supervisor, or a row outside the caller's scope"},
        409: {"description": "a row was decided by someone else meanwhile; nothing written"},
        422: {"description": "a row does not carry the flag named, or too many rows"},
    },
)
async def decide_many(db: Engine, who: ReviewDecider, body: BulkIn) -> BulkOut:
    targets = [queue.Target(r.gateway, r.seq, r.flag) for r in body.rows]
    try:
        outcome = await queue.decide_many(db, who, targets, body.decision, body.note.strip())
    except ReviewError as exc:
        raise _refuse(exc) from None
    return BulkOut(
        decided=[_review_out(r, True) for r in outcome.decided],
        already=[_review_out(r, True) for r in outcome.already],
    )
