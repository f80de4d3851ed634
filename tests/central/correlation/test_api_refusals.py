"""Malformed identifiers in the work-order and feed routes are refused (422) before the store:
PostgreSQL cannot hold a NUL, and the query failed with a 500."""

from __future__ import annotations

import httpx
from sqlalchemy.ext.asyncio import AsyncEngine

from central.api.app import create_app
from central.security.tokens import Role, create_token

MALFORMED = [
    ("/api/v1/followups/FU-gw1-1%00", {}),
    ("/api/v1/followups/" + "x" * 200, {}),
    ("/api/v1/followups", {"hall": "H1\x00"}),
    ("/api/v1/followups/overdue", {"hall": "H1\x00"}),
    ("/api/v1/followups/statistics", {"month": "2026-11", "hall": "H1\x00"}),
    ("/api/v1/indicators/workorders", {"hall": "H1\x00"}),
    ("/api/v1/feed/status", {"hall": "H1\x00"}),
]


async def test_nul_and_malformed_ids_are_refused_not_crashed(engine: AsyncEngine) -> None:
    token = await create_token(engine, Role.SUPERVISOR)
    headers = {"Authorization": f"Bearer {token}"}
    transport = httpx.ASGITransport(app=create_app(engine), raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://central") as client:
        found = {
            path: (await client.get(path, params=params, headers=headers)).status_code
            for path, params in MALFORMED
        }
        step = await client.post(
            "/api/v1/followups/FU-gw1-1%00/close", json={"note": "x"}, headers=headers
        )
        found["close"] = step.status_code
    assert found == {path: 422 for path, _ in MALFORMED} | {"close": 422}
