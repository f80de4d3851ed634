"""Subtree scopes, a test per level of the registry of halls: an account scoped to a hall sees
that hall and every hall below it, and nothing else, on every route that lists halls' data — the
API with a token, the same API with a page's login session, the pages themselves, and the CSV
exports. One dataset and one app per database; a table of routes × levels, so a route that leaks
a hall outside the subtree (or hides one inside it) fails naming the route and the level.
Without registry rows a hall is its own subtree."""

from __future__ import annotations

import csv
import datetime as dt
import io
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncEngine

from central.api.app import create_app
from central.cases import ladder
from central.cases.context import CaseContext
from central.cases.masking import ApplicantMasker
from central.cases.store import CaseRecord
from central.correlation import job as correlation_job
from central.reporting.registry import HallEntry, Level, put_halls
from central.rules.indicators import CaseStatus
from central.rules.timelimit import DEFAULT_LADDER
from central.rules.workdays import WorkCalendar, business_date, day_start
from central.security import accounts
from central.security.tokens import Role, create_token
from central.spine.ingest import Ingestor
from central.spine.registry import register
from central.store.db import make_engine
from central.store.migrate import upgrade
from central.web.context import WebContext
from hallkit.clock import utc_now
from tests.central.correlation.conftest import store_cases
from tests.central.web.conftest import BASE, login
from tests.central.web.seed import _Hall as ServedHall
from tests.support.hallevents import Gateway, key_press

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
ALL = frozenset(hall for hall, _, _ in TREE)
SEES = {
    "ZJ": ALL,  # a province: every hall
    "HZ": frozenset({"HZ", "XH", "XH-LJ", "YH"}),  # a city: its counties and their townships
    "XH": frozenset({"XH", "XH-LJ"}),  # a county: its townships
    "XH-LJ": frozenset({"XH-LJ"}),  # a township: its own hall
    "NB": frozenset({"NB", "HS"}),
}
PASSWORD = "correct horse battery"
NOW = utc_now()
TODAY = business_date(NOW).isoformat()
MONTH = TODAY[:7]
PAGES = ("/overview", "/analysis", "/reviews", "/followups", "/bulletin")


def _name(hall: str) -> str:
    return f"{hall}政务服务中心"


def _rows(reply: httpx.Response) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(reply.content.decode("utf-8-sig"))))


@dataclass(frozen=True)
class Route:
    path: str
    params: dict[str, str]
    halls: Callable[[httpx.Response], set[str]]  # the halls the answer shows


def _field(key: str, *path: str) -> Callable[[httpx.Response], set[str]]:
    def halls(reply: httpx.Response) -> set[str]:
        doc: Any = reply.json()
        for step in path:
            doc = doc[step]
        return {item[key] for item in doc if item[key] is not None}

    return halls


def _grouped(reply: httpx.Response) -> set[str]:
    return {g["group"]["hall"] for g in reply.json()["groups"]}


def _column(name: str, level: str | None = None) -> Callable[[httpx.Response], set[str]]:
    def halls(reply: httpx.Response) -> set[str]:
        return {r[name] for r in _rows(reply) if level is None or r["级别"] == level}

    return halls


DAY = {"first": TODAY, "last": TODAY}
SPAN = {"from": TODAY, "to": TODAY}
# every route that lists halls' data, with the halls its answer shows
ROUTES = {
    "gateways": Route("/api/v1/gateways", {}, _field("hall")),
    "events": Route("/api/v1/events", {}, _field("hall", "items")),
    "cases": Route("/api/v1/cases", {}, _field("hall", "items")),
    "overview": Route("/api/v1/overview", {}, _field("hall", "halls")),
    "indicators": Route("/api/v1/indicators", SPAN, _grouped),
    "drilldown": Route("/api/v1/drilldown", DAY, _field("hall", "groups")),
    "evaluations": Route("/api/v1/evaluations", SPAN, _field("hall", "items")),
    "evaluations.csv": Route("/api/v1/evaluations/export", SPAN, _column("hall")),
    "review-queue": Route("/api/v1/review-queue", DAY, _field("hall")),
    "review-queue/page": Route("/api/v1/review-queue/page", DAY, _field("hall", "items")),
    "followups": Route("/api/v1/followups", {}, _field("hall")),
    "bulletin": Route("/api/v1/bulletin", {"month": MONTH}, _field("hall", "halls")),
    "bulletin.csv": Route("/api/v1/bulletin.csv", {"month": MONTH}, _column("大厅", "大厅")),
    "bulletin.csv overdue": Route(
        "/api/v1/bulletin.csv", {"month": MONTH, "part": "overdue"}, _column("大厅")
    ),
    "bulletin.csv bad_reviews": Route(
        "/api/v1/bulletin.csv", {"month": MONTH, "part": "bad_reviews"}, _column("大厅")
    ),
}
# routes taking ?hall=: a hall outside the subtree is refused (or shows nothing)
HALL_FILTERED = ("gateways", "events", "drilldown", "review-queue/page", "followups")


def _case(hall: str) -> CaseRecord:
    return CaseRecord(
        case_no=f"C-{hall}",
        item_code=f"ITEM-{hall}",
        item_name="营业执照",
        department="市场监管局",
        hall=hall,
        window=1,
        staff="000101",
        accepted_at=NOW - dt.timedelta(days=20),  # overdue: it shows in the bulletin's list
        legal_days=5,
        promised_days=None,
        completed_at=None,
        status=CaseStatus.RUNNING,
        suspensions=(),
        applicant_masked=None,
        applicant_digest=None,
    )


@dataclass
class Central:
    engine: AsyncEngine
    app: FastAPI

    def client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(transport=httpx.ASGITransport(app=self.app), base_url=BASE)

    async def put_registry(self) -> None:
        entries = [
            HallEntry(hall_id=h, name=_name(h), level=lv, parent_id=up, region_code="330000")
            for h, lv, up in TREE
        ]
        async with self.engine.begin() as conn:
            await put_halls(conn, entries, utc_now())


@pytest.fixture
async def central(database_url: str, tmp_path: Path) -> AsyncIterator[Central]:
    """Every hall with a gateway, an overdue case, a bad review (a key press no service
    explains: flagged, and a follow-up item) and a hall manager account named after it."""
    engine = make_engine(database_url)
    await upgrade(engine)
    calendar = WorkCalendar(assume_weekends=True)
    start = day_start(business_date(NOW))
    first, stray = start + (NOW - start) / 4, start + (NOW - start) / 2
    batches = []
    for hall, _, _ in TREE:
        await register(engine, hall, f"gw-{hall.lower()}")
        served = ServedHall(Gateway(hall, f"gw-{hall.lower()}"))
        served.service(1, "000101", "A001", 3, first, dt.timedelta(seconds=30))  # 服务态度不好
        press = key_press(2, 3, session=70, ticket="A070", staff="000102")  # no such service
        batches.append(served.gateway.batch([*served.events, ("evaluator.key", press, stray)]))
    await store_cases(engine, [_case(hall) for hall, _, _ in TREE])
    await Ingestor(engine).ingest(batches)
    await correlation_job.run_once(engine, calendar=calendar, now=NOW)
    await ladder.run_once(engine, business_date(NOW), calendar, DEFAULT_LADDER, now=NOW)
    for hall in SEES:
        await accounts.add(engine, f"gl-{hall.lower()}", PASSWORD, Role.HALL_MANAGER, hall=hall)
    app = create_app(engine)
    app.state.cases = CaseContext(
        masker=ApplicantMasker(b"s" * 32), calendar=calendar, ladder=DEFAULT_LADDER
    )
    app.state.web = WebContext.from_data_dir(tmp_path / "data")
    yield Central(engine, app)
    await engine.dispose()


async def _seen(client: httpx.AsyncClient, headers: dict[str, str]) -> dict[str, set[str]]:
    """The halls each route and export shows the caller."""
    seen = {}
    for name, route in ROUTES.items():
        reply = await client.get(route.path, headers=headers, params=route.params)
        assert reply.status_code == 200, (name, reply.text)
        seen[name] = route.halls(reply)
    return seen


async def _check_level(central: Central, scope: str) -> None:
    inside, outside = SEES[scope], ALL - SEES[scope]
    want = {name: set(inside) for name in ROUTES}
    token = await create_token(central.engine, Role.HALL_MANAGER, hall=scope)
    bearer = {"Authorization": f"Bearer {token}"}
    async with central.client() as api, central.client() as browser:
        reply = await login(browser, f"gl-{scope.lower()}", PASSWORD)
        assert reply.status_code == 303, reply.text
        # the API with a token, and as the pages' scripts call it (the login session)
        assert await _seen(api, bearer) == want, ("token", scope)
        assert await _seen(browser, {}) == want, ("session", scope)
        for page in PAGES:
            html = await browser.get(page)
            assert html.status_code == 200, (page, scope)
            assert not [h for h in outside if _name(h) in html.text], (page, scope)
        for hall in inside:  # a case page of the subtree opens
            assert (await browser.get(f"/cases/C-{hall}")).status_code == 200, (hall, scope)
        for hall in outside:
            for name in HALL_FILTERED:
                route = ROUTES[name]
                params = {**route.params, "hall": hall}
                reply = await api.get(route.path, headers=bearer, params=params)
                refused = reply.status_code == 403  # or, for the review queue, nothing
                assert refused or (reply.status_code == 200 and not route.halls(reply)), (
                    name,
                    hall,
                    scope,
                )
            reply = await api.get(f"/api/v1/cases/C-{hall}", headers=bearer)
            assert reply.status_code == 404, (hall, scope)
            assert (await browser.get(f"/cases/C-{hall}")).status_code == 404, (hall, scope)


async def test_each_level_sees_its_subtree_and_nothing_else(central: Central) -> None:
    await central.put_registry()
    for scope in SEES:  # province, cities, a county, a township
        await _check_level(central, scope)


async def test_without_the_registry_a_hall_is_its_own_subtree_and_supervisors_see_all(
    central: Central,
) -> None:
    token = await create_token(central.engine, Role.HALL_MANAGER, hall="HZ")
    async with central.client() as client:
        seen = await _seen(client, {"Authorization": f"Bearer {token}"})
        assert seen == {name: {"HZ"} for name in ROUTES}, seen
        await central.put_registry()  # applies at the next request
        seen = await _seen(client, {"Authorization": f"Bearer {token}"})
        assert seen == {name: set(SEES["HZ"]) for name in ROUTES}, seen
        token = await create_token(central.engine, Role.SUPERVISOR)
        seen = await _seen(client, {"Authorization": f"Bearer {token}"})
        assert seen == {name: set(ALL) for name in ROUTES}, seen
