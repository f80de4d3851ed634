"""POST/GET /api/v1/gateways/{gateway}/commands: signed remote commands and their results."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, status
from pydantic import BaseModel, Field
from sqlalchemy import select

from central.api.deps import Engine, Operator
from central.gateways import command_queue
from central.store.schema import gateways
from protocols.commands import MAX_COMMAND_TTL, CommandName

router = APIRouter(prefix="/api/v1", tags=["commands"])


class CommandIn(BaseModel):
    name: CommandName = Field(
        description="replay_from | reread_devices | apply_config | calibrate_camera"
    )
    args: dict[str, Any] = Field(
        default_factory=dict,
        description="replay_from: {seq}; reread_devices: {devices: []}; "
        "apply_config: {config_version, config}; calibrate_camera: {window, camera?}",
    )
    ttl_s: int = Field(
        default=24 * 3600,
        ge=60,
        le=int(MAX_COMMAND_TTL.total_seconds()),
        description="how long the signed command stays valid",
    )


class ResultOut(BaseModel):
    accepted: bool
    reason: str = Field(description="accepted, or why the gateway refused")
    detail: str
    gateway_utc: datetime
    received_at: datetime


class CommandOut(BaseModel):
    id: str
    gateway: str
    hall: str
    version: int
    name: str
    args: dict[str, Any]
    issued_at: datetime
    expires_at: datetime
    requested_by: str
    status: str = Field(description="queued | sent | accepted | refused")
    sent_at: datetime | None
    results: list[ResultOut]


class CommandList(BaseModel):
    commands: list[CommandOut]
    unmatched_results: list[ResultOut] = Field(
        description="answers to payloads that were not central's commands (forgeries, garbage)"
    )


async def _known(db: Engine, gateway: str) -> None:
    async with db.connect() as conn:
        found = (
            await conn.execute(
                select(gateways.c.gateway_id).where(gateways.c.gateway_id == gateway)
            )
        ).first()
    if found is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "未知网关 / unknown gateway")


def _out(record: command_queue.CommandRecord) -> CommandOut:
    return CommandOut(
        id=record.id,
        gateway=record.gateway,
        hall=record.hall,
        version=record.version,
        name=record.name,
        args=record.args,
        issued_at=record.issued_at,
        expires_at=record.expires_at,
        requested_by=record.requested_by,
        status=record.status,
        sent_at=record.sent_at,
        results=[ResultOut(**vars_of(r)) for r in record.results],
    )


def vars_of(result: command_queue.ResultRecord) -> dict[str, Any]:
    return {
        "accepted": result.accepted,
        "reason": result.reason,
        "detail": result.detail,
        "gateway_utc": result.gateway_utc,
        "received_at": result.received_at,
    }


@router.post(
    "/gateways/{gateway}/commands",
    response_model=CommandOut,
    status_code=status.HTTP_202_ACCEPTED,
    summary="Queue a signed command for a gateway (supervisor, technician)",
    responses={
        403: {"description": "not a supervisor or technician"},
        404: {"description": "unknown gateway"},
        422: {"description": "invalid command or revoked gateway"},
    },
)
async def post_command(gateway: str, body: CommandIn, db: Engine, who: Operator) -> CommandOut:
    await _known(db, gateway)
    try:
        queued = await command_queue.queue_command(
            db,
            gateway,
            body.name,
            body.args,
            requested_by=f"{who.role.value}:{who.label}",
            ttl=timedelta(seconds=body.ttl_s),
        )
    except command_queue.CommandError as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_ENTITY, str(exc)) from None
    records = await command_queue.list_commands(db, gateway, limit=50)
    return _out(next(r for r in records if r.id == queued.id))


@router.get(
    "/gateways/{gateway}/commands",
    response_model=CommandList,
    summary="A gateway's commands, newest first, with the gateway's results",
    responses={
        403: {"description": "not a supervisor or technician"},
        404: {"description": "unknown gateway"},
    },
)
async def get_commands(
    gateway: str, db: Engine, who: Operator, limit: Annotated[int, Query(ge=1, le=1000)] = 100
) -> CommandList:
    await _known(db, gateway)
    records = await command_queue.list_commands(db, gateway, limit)
    unmatched = await command_queue.unmatched_results(db, gateway, limit)
    return CommandList(
        commands=[_out(r) for r in records],
        unmatched_results=[ResultOut(**vars_of(r)) for r in unmatched],
    )
