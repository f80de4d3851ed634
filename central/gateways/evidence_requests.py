"""On-demand evidence (调取取证): a supervisor asks a window's camera for a picture now.

A request is a signed ``capture_evidence`` command to the hall's gateway (``command_queue``),
so it is recorded, with who asked, in ``gateway_commands`` like every other command: that row is
the audit record and its id is the request's id. The gateway captures from the camera watching
the window, answers with the files' SHA-256 (``snapshot=<sha256>``, ``clip=<sha256>``) and
uploads them through the evidence path (``central.records.evidence``).

A request's state is derived, never stored: ``queued`` (not published yet), ``sent`` (no
answer yet), ``uploading`` (captured; the files are on their way), ``done`` (every file named
in the answer is in the vault) or ``failed`` with the reason: the gateway refused (no camera on
that window, the camera down) or did not answer before the command expired (``TTL``), so no
request waits forever.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
from dataclasses import dataclass
from typing import Final, Literal

from sqlalchemy import and_, select
from sqlalchemy.ext.asyncio import AsyncEngine

from central.gateways import command_queue
from central.store.schema import gateways
from central.store.schema_evidence import evidence_files
from central.store.schema_ops import command_results, gateway_commands
from hallkit.clock import utc_now

log = logging.getLogger(__name__)

COMMAND: Final = "capture_evidence"
# how long a request may wait for its gateway: a picture of "now" taken hours later is not one
TTL = dt.timedelta(minutes=10)
_HASH = re.compile(r"\b(snapshot|clip)=([0-9a-f]{64})\b")

State = Literal["queued", "sent", "uploading", "done", "failed"]


class RequestRefused(ValueError):
    """Not queued: the hall has no gateway that could take the picture."""


@dataclass(frozen=True, slots=True)
class EvidenceRequest:
    id: str
    hall: str
    gateway: str
    window: int
    clip_s: int
    requested_by: str
    requested_at: dt.datetime
    expires_at: dt.datetime
    state: State
    reason: str  # why it failed, or what the gateway said
    snapshot_sha256: str | None
    clip_sha256: str | None


def named_files(detail: str) -> dict[str, str]:
    """``{"snapshot": sha256, "clip": sha256}`` as far as the gateway's answer names them."""
    return {kind: sha for kind, sha in _HASH.findall(detail)}


def derive_state(
    *,
    sent: bool,
    answer: tuple[bool, str, str] | None,
    stored: set[str],
    expired: bool,
) -> tuple[State, str, dict[str, str]]:
    """(state, reason, files named) from what is known; ``answer`` is the gateway's first
    (accepted, reason, detail), ``stored`` the hashes already in the vault (pure)."""
    if answer is None:
        if expired:
            return "failed", "expired: the gateway did not answer in time", {}
        return ("sent" if sent else "queued"), "", {}
    accepted, reason, detail = answer
    if not accepted:
        return "failed", f"{reason}: {detail}" if detail else reason, {}
    files = named_files(detail)
    if "snapshot" not in files:
        return "failed", f"the gateway's answer names no snapshot: {detail}", {}
    done = all(sha in stored for sha in files.values())
    return ("done" if done else "uploading"), detail, files


async def gateway_of(engine: AsyncEngine, hall: str) -> str:
    """The hall's gateway to ask: a registered, unrevoked one, online ones first."""
    g = gateways.c
    async with engine.connect() as conn:
        found = (
            await conn.execute(
                select(g.gateway_id)
                .where(g.hall_id == hall, g.revoked_at.is_(None))
                .order_by(g.online.desc(), g.state_at.desc(), g.gateway_id)
                .limit(1)
            )
        ).scalar()
    if found is None:
        raise RequestRefused(f"大厅 {hall} 没有在用的网关 / hall {hall} has no gateway")
    return str(found)


async def request_evidence(
    engine: AsyncEngine, hall: str, window: int, clip_s: int, requested_by: str
) -> str:
    """Queue the command; the request's id."""
    gateway = await gateway_of(engine, hall)
    try:
        queued = await command_queue.queue_command(
            engine,
            gateway,
            COMMAND,
            {"window": window, "clip_s": clip_s},
            requested_by=requested_by,
            ttl=TTL,
        )
    except command_queue.CommandError as exc:
        raise RequestRefused(str(exc)) from None
    log.info(
        "evidence request %s: %s asked hall %s window %d (clip %d s) via %s",
        queued.id,
        requested_by,
        hall,
        window,
        clip_s,
        gateway,
    )
    return queued.id


async def list_requests(
    engine: AsyncEngine,
    *,
    request_id: str | None = None,
    halls: frozenset[str] | None = None,
    limit: int = 50,
    now: dt.datetime | None = None,
) -> list[EvidenceRequest]:
    """Requests newest first (one, by ``request_id``), each with its derived state."""
    c = gateway_commands.c
    query = select(gateway_commands).where(c.name == COMMAND)
    if request_id is not None:
        query = query.where(c.id == request_id)
    if halls is not None:
        query = query.where(c.hall_id.in_(sorted(halls)))
    query = query.order_by(c.issued_at.desc(), c.id).limit(limit)
    now = now or utc_now()
    found: list[EvidenceRequest] = []
    async with engine.connect() as conn:
        for row in (await conn.execute(query)).all():
            r = command_results.c
            answer = (
                await conn.execute(
                    select(r.accepted, r.reason, r.detail)
                    .where(and_(r.command_id == row.id, r.gateway_id == row.gateway_id))
                    .order_by(r.id)
                    .limit(1)
                )
            ).first()
            first = None if answer is None else (bool(answer[0]), str(answer[1]), str(answer[2]))
            hashes = set(named_files(first[2]).values()) if first and first[0] else set()
            stored = {
                sha
                for (sha,) in await conn.execute(
                    select(evidence_files.c.sha256).where(
                        evidence_files.c.gateway_id == row.gateway_id,
                        evidence_files.c.sha256.in_(sorted(hashes)),
                    )
                )
            }
            state, reason, files = derive_state(
                sent=row.sent_at is not None,
                answer=first,
                stored=stored,
                expired=now >= row.expires_at,
            )
            found.append(
                EvidenceRequest(
                    id=row.id,
                    hall=row.hall_id,
                    gateway=row.gateway_id,
                    window=int(row.args.get("window", 0)),
                    clip_s=int(row.args.get("clip_s", 0)),
                    requested_by=row.requested_by,
                    requested_at=row.issued_at,
                    expires_at=row.expires_at,
                    state=state,
                    reason=reason,
                    snapshot_sha256=files.get("snapshot"),
                    clip_sha256=files.get("clip"),
                )
            )
    return found


__all__ = [
    "COMMAND",
    "TTL",
    "EvidenceRequest",
    "RequestRefused",
    "derive_state",
    "gateway_of",
    "list_requests",
    "named_files",
    "request_evidence",
]
