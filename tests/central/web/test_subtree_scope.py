"""Subtree scopes, one test per level of the registry of halls: an account scoped to a hall
sees that hall and every hall below it, and nothing else, through the API and the exports
(gateways, cases, overview, drill-down, the bulletin and its CSV); without registry rows a hall
is its own subtree."""

from __future__ import annotations

import csv
import datetime as dt
import io
from collections.abc import AsyncIterator

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from central.api.app import create_app
from central.cases.context import CaseContext
from central.cases.masking import ApplicantMasker
from central.cases.store import CaseRecord
from central.reporting.registry import HallEntry, Level, put_halls
from central.rules.indicators import CaseStatus
from central.rules.timelimit import DEFAULT_LADDER
from central.rules.workdays import WorkCalendar
from central.security.tokens import Role, create_token
from central.spine.registry import register
from central.store.db import make_engine
from central.store.migrate import upgrade
from hallkit.clock import utc_now
from tests.central.correlation.conftest import store_cases

# province ZJ; city HZ with counties XH (township XH-LJ below it) and YH; city NB with county HS
TREE = (
    ("ZJ", Level.PROVINCE, None),
    ("HZ", Level.CITY, "ZJ"),
    ("XH", Level.COUNTY, "HZ"),
    ("XH-LJ", Level.TOWNSHIP, "XH"),
    ("YH", Level.COUNTY, "HZ"),
    ("NB", Level.CITY, "ZJ"),
    ("HS", Level.COUNTY, "NB"),
)
ALL = {hall for hall, _, _ in TREE}
SEES = {
    "ZJ": ALL,
    "HZ": {"HZ", "XH", "XH-LJ", "YH"},  # a city: its counties and their townships
    "XH": {"XH", "XH-LJ"},
    "XH-LJ": {"XH-LJ"},
    "NB": {"NB", "HS"},
}


def _case(hall: str) -> CaseRecord:
    return CaseRecord(
        case_no=f"C-{hall}",
        item_code=f"ITEM-{hall}",
        item_name="营业执照",
        department="市场监管局",
        hall=hall,
        window=1,
        staff="000101",
        accepted_at=utc_now() - dt.timedelta(hours=1),
        legal_days=5,
        promised_days=None,
        completed_at=None,
        status=CaseStatus.RUNNING,
        suspensions=(),
        applicant_masked=None,
        applicant_digest=None,
    )


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    eng = make_engine(database_url)
    await upgrade(eng)
    for hall, _, _ in TREE:
        await register(eng, hall, f"gw-{hall.lower()}")
    await store_cases(eng, [_case(hall) for hall, _, _ in TREE])
    yield eng
    await eng.dispose()


async def _registry(engine: AsyncEngine) -> None:
    entries = [
        HallEntry(hall_id=h, name=f"{h}大厅", level=level, parent_id=parent, region_code="330000")
        for h, level, parent in TREE
    ]
    async with engine.begin() as conn:
        await put_halls(conn, entries, utc_now())


async def _seen(client: httpx.AsyncClient, headers: dict[str, str]) -> dict[str, set[str]]:
    """The halls each route and export shows the caller."""

    async def get(path: str, **params: str) -> httpx.Response:
        reply = await client.get(path, headers=headers, params=params)
        assert reply.status_code == 200, (path, reply.text)
        return reply

    month = utc_now().astimezone(dt.timezone(dt.timedelta(hours=8))).strftime("%Y-%m")
    table = (await get("/api/v1/bulletin.csv", month=month)).content.decode("utf-8-sig")
    return {
        "gateways": {g["hall"] for g in (await get("/api/v1/gateways")).json()},
        "cases": {c["hall"] for c in (await get("/api/v1/cases")).json()["items"]},
        "overview": {h["hall"] for h in (await get("/api/v1/overview")).json()["halls"]},
        "drilldown": {g["hall"] for g in (await get("/api/v1/drilldown")).json()["groups"]},
        "bulletin": {
            g["hall"] for g in (await get("/api/v1/bulletin", month=month)).json()["halls"]
        },
        "bulletin.csv": {
            r["大厅"] for r in csv.DictReader(io.StringIO(table)) if r["级别"] == "大厅"
        },
    }


async def _client(engine: AsyncEngine) -> httpx.AsyncClient:
    app = create_app(engine)
    calendar = WorkCalendar(assume_weekends=True)
    app.state.cases = CaseContext(
        masker=ApplicantMasker(b"s" * 32), calendar=calendar, ladder=DEFAULT_LADDER
    )
    transport = httpx.ASGITransport(app=app)
    return httpx.AsyncClient(transport=transport, base_url="http://central")


@pytest.mark.parametrize("scope", sorted(SEES))
async def test_each_level_sees_its_subtree_and_nothing_else(
    engine: AsyncEngine, scope: str
) -> None:
    await _registry(engine)
    token = await create_token(engine, Role.HALL_MANAGER, hall=scope)
    headers = {"Authorization": f"Bearer {token}"}
    async with await _client(engine) as client:
        seen = await _seen(client, headers)
        assert seen == {part: SEES[scope] for part in seen}, seen
        # one hall of the subtree on its own; a hall outside it refused
        inside = max(SEES[scope])
        reply = await client.get("/api/v1/cases", headers=headers, params={"hall": inside})
        assert {c["hall"] for c in reply.json()["items"]} == {inside}
        outside = sorted(ALL - SEES[scope])
        for hall in outside:
            reply = await client.get("/api/v1/gateways", headers=headers, params={"hall": hall})
            assert reply.status_code == 403
            reply = await client.get("/api/v1/drilldown", headers=headers, params={"hall": hall})
            assert reply.status_code == 403
            reply = await client.get(f"/api/v1/cases/C-{hall}", headers=headers)
            assert reply.status_code == 404


async def test_without_the_registry_a_hall_is_its_own_subtree(engine: AsyncEngine) -> None:
    token = await create_token(engine, Role.HALL_MANAGER, hall="HZ")
    async with await _client(engine) as client:
        seen = await _seen(client, {"Authorization": f"Bearer {token}"})
    assert seen == {part: {"HZ"} for part in seen}, seen


async def test_supervisors_still_see_every_hall(engine: AsyncEngine) -> None:
    await _registry(engine)
    token = await create_token(engine, Role.SUPERVISOR)
    async with await _client(engine) as client:
        seen = await _seen(client, {"Authorization": f"Bearer {token}"})
    assert seen == {part: ALL for part in seen}, seen
