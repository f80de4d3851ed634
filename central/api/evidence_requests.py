"""调取取证 API: a supervisor asks a window's camera for a picture now (and a short clip), then
follows the request until its files are in the evidence vault."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, Query, status
from pydantic import BaseModel, Field

from central.api.deps import Engine, EvidenceRequester, HallId
from central.api.evidence import image_url
from central.gateways import evidence_requests as requests
from protocols.commands import MAX_CLIP_S, UUID_PATTERN
from protocols.topics import ID_PATTERN

router = APIRouter(prefix="/api/v1", tags=["evidence"])

RequestId = Annotated[str, Path(pattern=UUID_PATTERN, description="the request's id")]


class EvidenceRequestIn(BaseModel):
    hall: str = Field(pattern=f"^{ID_PATTERN}$", description="hall id")
    window: int = Field(ge=1, le=99_999, description="window number (窗口号)")
    clip_s: int = Field(default=0, ge=0, le=MAX_CLIP_S, description="seconds of clip; 0: none")


class EvidenceRequestOut(BaseModel):
    id: str
    hall: str
    gateway: str
    window: int
    clip_s: int
    requested_by: str
    requested_at: datetime
    expires_at: datetime = Field(description="no answer by then: failed")
    state: str = Field(description="queued | sent | uploading | done | failed")
    reason: str = Field(description="why it failed, or the gateway's answer")
    snapshot_sha256: str | None
    snapshot_url: str | None = Field(description="the picture, once done")
    clip_sha256: str | None
    clip_url: str | None = Field(description="the clip (concatenated JPEGs), once done")


def _out(found: requests.EvidenceRequest) -> EvidenceRequestOut:
    done = found.state == "done"
    return EvidenceRequestOut(
        id=found.id,
        hall=found.hall,
        gateway=found.gateway,
        window=found.window,
        clip_s=found.clip_s,
        requested_by=found.requested_by,
        requested_at=found.requested_at,
        expires_at=found.expires_at,
        state=found.state,
        reason=found.reason,
        snapshot_sha256=found.snapshot_sha256,
        snapshot_url=image_url(found.snapshot_sha256) if done and found.snapshot_sha256 else None,
        clip_sha256=found.clip_sha256,
        clip_url=image_url(found.clip_sha256) if done and found.clip_sha256 else None,
    )


async def _one(db: Engine, request_id: str) -> EvidenceRequestOut:
    found = await requests.list_requests(db, request_id=request_id, limit=1)
    if not found:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "没有此调取请求 / no such request")
    return _out(found[0])


@router.post(
    "/evidence-requests",
    response_model=EvidenceRequestOut,
    status_code=status.HTTP_202_ACCEPTED,
    summary="Ask a window's camera for a snapshot now (supervisor; recorded with who asked)",
    responses={
        403: {"description": "not a supervisor"},
        422: {"description": "the hall has no gateway, or invalid input"},
    },
)
async def post_evidence_request(
    body: EvidenceRequestIn, db: Engine, who: EvidenceRequester
) -> EvidenceRequestOut:
    try:
        request_id = await requests.request_evidence(
            db, body.hall, body.window, body.clip_s, f"{who.role.value}:{who.label}"
        )
    except requests.RequestRefused as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc)) from None
    return await _one(db, request_id)


@router.get(
    "/evidence-requests/{request_id}",
    response_model=EvidenceRequestOut,
    summary="Where an on-demand evidence request stands, and its files once stored",
    responses={403: {"description": "not a supervisor"}, 404: {"description": "no such request"}},
)
async def get_evidence_request(
    request_id: RequestId, db: Engine, who: EvidenceRequester
) -> EvidenceRequestOut:
    return await _one(db, request_id)


@router.get(
    "/halls/{hall}/evidence-requests",
    response_model=list[EvidenceRequestOut],
    summary="A hall's on-demand evidence requests, newest first",
    responses={403: {"description": "not a supervisor"}},
)
async def get_hall_evidence_requests(
    hall: HallId,
    db: Engine,
    who: EvidenceRequester,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> list[EvidenceRequestOut]:
    found = await requests.list_requests(db, halls=frozenset({hall}), limit=limit)
    return [_out(r) for r in found]
