"""The registry of halls over the API: list, get and put (supervisors)."""

from __future__ import annotations

import datetime as dt

from fastapi import APIRouter, HTTPException, status

from central.api.deps import Engine, HallId, RegistryKeeper
from central.reporting.registry import HallEntry, RegistryError, put_halls, registry

router = APIRouter(prefix="/api/v1", tags=["halls"])


@router.get("/halls", response_model=list[HallEntry], summary="The registry of halls")
async def list_halls(db: Engine, who: RegistryKeeper) -> list[HallEntry]:
    """Every registered hall (id, 名称, level, parent, 区划代码, address, opening hours)."""
    async with db.connect() as conn:
        return list((await registry(conn)).values())


@router.get("/halls/{hall}", response_model=HallEntry, summary="One hall of the registry")
async def get_hall(hall: HallId, db: Engine, who: RegistryKeeper) -> HallEntry:
    async with db.connect() as conn:
        found = (await registry(conn)).get(hall)
    if found is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"大厅 {hall} 未登记 / hall not registered")
    return found


@router.put("/halls/{hall}", response_model=HallEntry, summary="Add or replace a registry hall")
async def put_hall(hall: HallId, body: HallEntry, db: Engine, who: RegistryKeeper) -> HallEntry:
    """The parent must be registered already and one level up or more (province > city >
    county > township)."""
    if body.hall_id != hall:
        raise HTTPException(422, f"hall {body.hall_id!r} in the body, {hall!r} in the path")
    try:
        async with db.begin() as conn:
            await put_halls(conn, [body], dt.datetime.now(dt.UTC))
    except RegistryError as exc:
        raise HTTPException(422, list(exc.problems.values())) from None
    return body
