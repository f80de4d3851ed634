"""Halls by name: with H1 in the registry of halls, every API list of halls and every export
carries its 名称 beside the id; H2, not registered, shows its id."""

from __future__ import annotations

import csv
import datetime as dt
import io
from collections.abc import Awaitable, Callable

import httpx

from central.reporting.registry import HallEntry, Level, put_halls
from central.security.tokens import Role
from tests.central.web.conftest import Site

NAME = "市民中心"
Getter = Callable[..., Awaitable[httpx.Response]]


async def _register_h1(site: Site) -> None:
    entry = HallEntry(hall_id="H1", name=NAME, level=Level.CITY, region_code="330100")
    async with site.engine.begin() as conn:
        await put_halls(conn, [entry], dt.datetime.now(dt.UTC))


def _getter(c: httpx.AsyncClient, headers: dict[str, str]) -> Getter:
    async def get(path: str, **params: str) -> httpx.Response:
        reply = await c.get(path, headers=headers, params=params)
        assert reply.status_code == 200, reply.text
        return reply

    return get


def _named(items: list[dict[str, object]]) -> dict[object, object]:
    return {i["hall"]: i["hall_name"] for i in items if i.get("hall") is not None}


async def test_api_lists_and_exports_name_the_halls(site: Site) -> None:
    await _register_h1(site)
    today = site.seed.today.isoformat()
    month = site.seed.today.strftime("%Y-%m")
    async with site.client() as c:
        headers = await site.bearer(Role.SUPERVISOR)
        get = _getter(c, headers)

        overview = (await get("/api/v1/overview")).json()
        named = _named(overview["halls"])
        assert named["H1"] == NAME and named["H2"] == "H2"
        cases = (await get("/api/v1/cases")).json()["items"]
        assert {(c["hall"], c["hall_name"]) for c in cases} >= {("H1", NAME), ("H2", "H2")}
        one = (await get(f"/api/v1/cases/{cases[0]['case_no']}")).json()
        assert one["hall_name"] == (NAME if one["hall"] == "H1" else one["hall"])
        evaluations = (await get("/api/v1/evaluations", **{"from": today, "to": today})).json()
        assert ("H1", NAME) in {(e["hall"], e["hall_name"]) for e in evaluations["items"]}
        indicators = (await get("/api/v1/indicators", **{"from": today, "to": today})).json()
        assert _named([g["group"] for g in indicators["groups"]])["H1"] == NAME
        bulletin = (await get("/api/v1/bulletin", month=month)).json()
        assert _named(bulletin["halls"])["H1"] == NAME
        assert {(c["hall"], c["hall_name"]) for c in bulletin["overdue_cases"]} >= {
            ("H1", NAME),
            ("H2", "H2"),
        }
        assert all(
            b["hall_name"] == (NAME if b["hall"] == "H1" else b["hall"])
            for b in bulletin["bad_reviews"]
        )
        drill = (await get("/api/v1/drilldown")).json()
        assert _named(drill["groups"])["H1"] == NAME

        table = await get("/api/v1/bulletin.csv", month=month)
        rows = list(csv.DictReader(io.StringIO(table.content.decode("utf-8-sig"))))
        assert {(r["大厅"], r["大厅名称"]) for r in rows if r["级别"] == "大厅"} >= {("H1", NAME)}
        for part in ("overdue", "bad_reviews"):
            table = await get("/api/v1/bulletin.csv", month=month, part=part)
            rows = list(csv.DictReader(io.StringIO(table.content.decode("utf-8-sig"))))
            assert rows and all(
                r["大厅名称"] == (NAME if r["大厅"] == "H1" else r["大厅"]) for r in rows
            )
        export = await get("/api/v1/evaluations/export", **{"from": today, "to": today})
        rows = list(csv.DictReader(io.StringIO(export.text)))
        assert rows and all(
            r["hall_name"] == (NAME if r["hall"] == "H1" else r["hall"]) for r in rows
        )


STAFF = {"H1": {"100231": "王芳"}, "H2": {"200201": "李娜"}}  # named by the halls' setups


def _staff_name(hall: str, staff: str | None) -> str | None:
    return STAFF[hall].get(staff or "") if hall in STAFF else None


async def test_review_queue_follow_ups_and_drill_down_name_halls_and_staff(site: Site) -> None:
    await _register_h1(site)
    today = site.seed.today.isoformat()
    async with site.client() as c:
        headers = await site.bearer(Role.SUPERVISOR)
        get = _getter(c, headers)

        for hall, staff in STAFF.items():
            setup = (await get(f"/api/v1/halls/{hall}/setup")).json()
            setup["staff"] = staff
            reply = await c.put(f"/api/v1/halls/{hall}/setup", headers=headers, json=setup)
            assert reply.is_success, reply.text

        page = (await get("/api/v1/review-queue/page", first=today, last=today)).json()["items"]
        assert {f["hall"] for f in page} >= {"H1", "H2"}
        assert any(f["staff_name"] for f in page)
        for f in page:
            assert f["hall_name"] == (NAME if f["hall"] == "H1" else f["hall"])
            assert f["staff_name"] == _staff_name(f["hall"], f["staff"])
        queue = (await get("/api/v1/review-queue", first=today, last=today)).json()
        assert ("H1", NAME) in {(f["hall"], f["hall_name"]) for f in queue}
        one = next(f for f in page if f["hall"] == "H1")
        detail = (await get(f"/api/v1/evaluations/{one['gateway']}/{one['seq']}/reviews")).json()
        assert detail["hall_name"] == NAME

        items = (await get("/api/v1/followups")).json()
        assert ("H1", "100231", NAME, "王芳") in {
            (i["hall"], i["staff"], i["hall_name"], i["staff_name"]) for i in items
        }
        for i in items:
            assert i["hall_name"] == (NAME if i["hall"] == "H1" else i["hall"])
            assert i["staff_name"] == _staff_name(i["hall"], i["staff"])
        first = (await get(f"/api/v1/followups/{items[0]['item_id']}")).json()["item"]
        assert first["hall_name"] == items[0]["hall_name"]

        drill = (await get("/api/v1/drilldown", hall="H1", staff="100231")).json()
        assert (drill["hall_name"], drill["staff_name"]) == (NAME, "王芳")
        assert (await get("/api/v1/drilldown")).json()["hall_name"] is None
