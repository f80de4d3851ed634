"""The correlation part of the API under one router: evaluations and the 好差评 export,
service sessions and presence, bad-review follow-up, indicators and hall setups."""

from __future__ import annotations

from fastapi import APIRouter

from central.api import evaluations, followups, indicators, sessions, workorder_stats

router = APIRouter()
# the statistics' fixed paths before /followups/{item_id}
for part in (evaluations, sessions, workorder_stats, followups, indicators):
    router.include_router(part.router)
