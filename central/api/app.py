"""The central HTTP API (FastAPI). Every route is behind a bearer token and role scope."""

from __future__ import annotations

import asyncio

from fastapi import FastAPI
from fastapi.responses import JSONResponse
from sqlalchemy.ext.asyncio import AsyncEngine

from central.api import (
    audits,
    cases,
    commands,
    correlation,
    events,
    evidence,
    evidence_requests,
    feed,
    gateways,
    registry,
)
from central.spine import bridges
from central.web import apidocs, site
from hallkit.clock import utc_now
from hallkit.supervise import Supervisor, healthz

HEALTH_QUERY_S = 2.0  # /healthz answers even when the database does not


def create_app(engine: AsyncEngine, *, tasks: Supervisor | None = None) -> FastAPI:
    """``tasks``: the aggregator's supervised tasks, shown by ``/healthz``."""
    app = FastAPI(
        title="Hallwatch central",
        version="1",
        description="政务服务中心电子监察 — central aggregator API",
        docs_url=None,  # served by central.web.apidocs from vendored assets, not a CDN
        redoc_url=None,
    )
    app.state.engine = engine
    app.include_router(events.router)
    app.include_router(gateways.router)
    app.include_router(commands.router)
    app.include_router(cases.router)
    app.include_router(correlation.router)  # evaluations, sessions, follow-up, indicators
    app.include_router(evidence.router)  # uploaded evidence snapshots
    app.include_router(evidence_requests.router)  # on-demand snapshots from a window's camera
    app.include_router(registry.router)  # the registry of halls
    app.include_router(feed.router)  # the 好差评 feed's status
    app.include_router(audits.router)  # 抽查: samples, call-backs, findings
    site.install(app)  # the dashboard: pages, static files and their API (central.web)
    apidocs.install(app)  # /docs and /redoc from the vendored Swagger UI and ReDoc

    @app.get("/healthz", include_in_schema=False)
    async def health() -> JSONResponse:
        """For monitoring, no token: each supervised task's state; 503 once one is given up."""
        code, doc = healthz(tasks)
        doc["bridges_down"] = await _bridges_down(engine)
        return JSONResponse(doc, code)

    return app


async def _bridges_down(engine: AsyncEngine) -> dict[str, str] | str:
    """Tier links down past their grace (central.spine.bridges): a county gone silent shows
    here, not as idle halls; a far link down is no failure of this process (the status stays)."""
    try:
        found = await asyncio.wait_for(bridges.links(engine), HEALTH_QUERY_S)
    except Exception as exc:  # the database away: the tasks above say more
        return f"unknown: {type(exc).__name__}"
    now = utc_now()
    return {link.bridge: link.describe(now) for link in found if link.alarm}
