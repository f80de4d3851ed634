"""证据 API: the evidence snapshots gateways uploaded, served to whoever may see what they show.

A snapshot taken for an evaluation's key press (``camera.verdict``) is scoped like that
evaluation (central/reporting/reviews.py ``visible``); one taken at a staff presence change is
hall data (supervisors, the hall's manager). Technicians see none: a snapshot shows people.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path, Request, status
from fastapi.responses import FileResponse
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from central.api.deps import Engine, EvidenceReader
from central.records import evidence
from central.reporting import reviews
from central.security.access import Area, Reach, reach
from central.security.tokens import Principal
from central.store.schema import events

router = APIRouter(prefix="/api/v1", tags=["evidence"])

NOT_FOUND = "证据不存在 / no such evidence"
Sha256 = Annotated[str, Path(pattern=r"^[0-9a-f]{64}$", description="SHA-256 of the file")]


def image_url(sha256: str) -> str:
    return f"/api/v1/evidence/{sha256}"


async def _may_see(conn: AsyncConnection, who: Principal, ref: Any) -> bool:
    if ref.kind == "camera.verdict":
        body = (
            await conn.execute(
                select(events.c.body).where(
                    events.c.gateway_id == ref.gateway_id, events.c.seq == ref.event_seq
                )
            )
        ).scalar()
        key_seq = (body or {}).get("key_seq")
        return (
            isinstance(key_seq, int)
            and (await reviews.visible(conn, who, ref.gateway_id, key_seq)) is not None
        )
    found = reach(who, Area.EVIDENCE)
    if found is Reach.EVERY_HALL:
        return True
    return found is Reach.OWN_HALL and ref.hall_id in who.halls


@router.get(
    "/evidence/{sha256}",
    response_class=FileResponse,
    summary="An evidence snapshot (JPEG), verified against the hash its gateway journaled",
    responses={
        200: {
            "content": {"image/jpeg": {}},
            "description": "the bytes; their SHA-256 is the path's",
        },
        404: {"description": "not uploaded yet, or not in the caller's scope"},
        503: {"description": "this API process has no evidence directory"},
    },
)
async def get_evidence(
    request: Request, db: Engine, who: EvidenceReader, sha256: Sha256
) -> FileResponse:
    vault = getattr(request.app.state, "evidence", None) or evidence.vault_for(db)
    if vault is None:
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE, "证据目录未配置 / evidence store not configured"
        )
    async with db.connect() as conn:
        refs = await evidence.stored_refs(conn, sha256)
        allowed = [ref for ref in refs if await _may_see(conn, who, ref)]
    path = vault.path_for(sha256)
    if not allowed or not path.is_file():
        raise HTTPException(status.HTTP_404_NOT_FOUND, NOT_FOUND)
    # immutable: the address is the content's hash
    return FileResponse(
        path,
        media_type="image/jpeg",
        headers={
            "Cache-Control": "private, max-age=31536000, immutable",
            "X-Content-SHA256": sha256,
        },
    )
