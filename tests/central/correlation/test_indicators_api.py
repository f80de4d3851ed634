"""GET /api/v1/indicators against a hand computation on the small hall (journal.small_hall):
real ingest, the real correlation job, the real API.

Cases on Friday 2026-11-20 (working days from chinese-calendar):
  C1 w1 市场监管局 legal 10 promised 5, completed the same day → deadline 11-27 (5 working days)
  C2 w1 市场监管局 legal 20, running
  C3 w2 人社局 即办件 (legal 0), completed the same day → deadline 11-20 itself
  C4 w1 人社局 legal 15 promised 10, running (transferred ticket served at window 1)
  C5 online 市场监管局 legal 10 promised 8, completed the same day → deadline 12-02
"""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from central.api.app import create_app
from central.cases.store import CaseRecord
from central.correlation.job import run_once
from central.rules.indicators import CaseStatus
from central.security.tokens import Role, create_token
from central.spine.registry import register
from tests.central.correlation.conftest import store_cases
from tests.central.correlation.journal import small_hall, small_hall_cases

SETUP = {
    "hall": "H9",
    "opening": [{"start": "09:00", "end": "12:00"}, {"start": "13:00", "end": "17:00"}],
    "windows": {"1": "市场监管局", "2": "人社局"},
}


@pytest.fixture
async def client(engine: AsyncEngine) -> AsyncIterator[httpx.AsyncClient]:
    await register(engine, "H9", "gw9")
    await small_hall(engine)
    await store_cases(
        engine, [CaseRecord(**{**c, "status": CaseStatus(c["status"])}) for c in small_hall_cases()]
    )
    await run_once(engine)
    transport = httpx.ASGITransport(app=create_app(engine))
    async with httpx.AsyncClient(transport=transport, base_url="http://central") as c:
        yield c


async def bearer(
    engine: AsyncEngine,
    role: Role,
    *,
    hall: str | None = None,
    department: str | None = None,
    label: str = "",
) -> dict[str, str]:
    token = await create_token(engine, role, hall=hall, department=department, label=label)
    return {"Authorization": f"Bearer {token}"}


def ratios(group: dict[str, Any]) -> dict[str, tuple[float, float]]:
    return {k: (v["numerator"], v["denominator"]) for k, v in group["ratios"].items()}


async def get(
    client: httpx.AsyncClient, headers: dict[str, str], **params: str
) -> list[dict[str, Any]]:
    response = await client.get(
        "/api/v1/indicators",
        headers=headers,
        params={"from": "2026-11-20", "to": "2026-11-20", **params},
    )
    assert response.status_code == 200, response.text
    return response.json()["groups"]  # type: ignore[no-any-return]


async def test_hall_indicators_by_hand(client: httpx.AsyncClient, engine: AsyncEngine) -> None:
    headers = await bearer(engine, Role.SUPERVISOR)
    assert (
        await client.put("/api/v1/halls/H9/setup", headers=headers, json=SETUP)
    ).status_code == 200
    (hall,) = await get(client, headers, group="hall", hall="H9")
    assert hall["group"]["hall"] == "H9"
    assert ratios(hall) == {
        "on_time_rate": (3, 3),  # C1, C3, C5 all completed by their deadline
        "avg_handling_days": (0, 3),  # each completed on its acceptance day
        "early_completion_rate": (2, 3),  # C3 completed on its deadline day, not before
        "handling_speedup": (20, 20),  # C1 10−0 + C5 10−0; C3 (legal 0) left out
        "promise_speedup": (12, 55),  # (10−5)+(20−20)+(15−10)+(10−8) / 10+20+15+10
        "same_day_rate": (3, 5),  # C1, C3, C5 of five accepted
        "evaluation_rate": (3, 5),  # C1 (S1), C2 (S3), C3 (S4); C4 unevaluated, C5 online
        "satisfaction_rate": (2, 3),  # keys 1 (S1), 3 (S3), 2 (S4); S4's second press: dup
        "bad_review_rate": (1, 3),
        "avg_wait_minutes": (71, 5),  # 10 + 10 + 20 + 26 + 5 (S6 waited from its transfer)
        "no_show_rate": (1, 6),  # S2 of six called sessions
        # the feed reported 08:45–14:00 and 15:00–17:30: of the opening hours 09–12, 13–17
        # that covers 360 minutes a window. w1 09–12 180 + 13–14 60 + 15–16 60, w2 90
        "staffed_rate": (390, 720),
        "staffed_coverage": (720, 840),
    }
    explained = hall["ratios"]["staffed_rate"]["explain"]
    assert "网关在报" in explained and "在岗" in explained
    assert hall["bad_reviews"] == {"3": 1, "4": 0, "5": 0, "6": 0}
    assert (hall["overdue_completed"], hall["overdue_open"], hall["overdue_count"]) == (0, 0, 0)
    assert hall["ratios"]["no_show_rate"]["value"] == pytest.approx(1 / 6)


async def test_department_window_and_staff_groups(
    client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    headers = await bearer(engine, Role.SUPERVISOR)
    await client.put("/api/v1/halls/H9/setup", headers=headers, json=SETUP)
    departments = {
        g["group"]["department"]: ratios(g) for g in await get(client, headers, group="department")
    }
    assert set(departments) == {"市场监管局", "人社局"}
    market, labour = departments["市场监管局"], departments["人社局"]
    # cases by their own department; sessions, evaluations and presence by the window roster
    assert market["same_day_rate"] == (2, 3) and labour["same_day_rate"] == (1, 2)
    assert market["evaluation_rate"] == (2, 3) and labour["evaluation_rate"] == (1, 2)
    assert market["satisfaction_rate"] == (1, 2) and labour["satisfaction_rate"] == (1, 1)
    assert market["no_show_rate"] == (1, 4) and labour["no_show_rate"] == (0, 2)
    assert market["avg_wait_minutes"] == (25, 3) and labour["avg_wait_minutes"] == (46, 2)
    assert market["staffed_rate"] == (300, 360) and labour["staffed_rate"] == (90, 360)

    windows = {g["group"]["window"]: ratios(g) for g in await get(client, headers, group="window")}
    assert windows["1"]["promise_speedup"] == (10, 45)  # C1 5/10, C2 0/20, C4 5/15
    assert windows["1"]["evaluation_rate"] == (2, 3)
    staff = {g["group"]["staff"]: ratios(g) for g in await get(client, headers, group="staff")}
    assert staff["000101"]["satisfaction_rate"] == (1, 2)
    assert staff["000101"]["no_show_rate"] == (1, 4)  # the no-show called by who was there
    assert staff["000101"]["staffed_rate"] == (300, 360)
    assert staff["000202"]["staffed_rate"] == (90, 360)


async def test_a_department_leader_sees_only_their_department(
    client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    await client.put(
        "/api/v1/halls/H9/setup", headers=await bearer(engine, Role.SUPERVISOR), json=SETUP
    )
    leader = await bearer(engine, Role.DEPARTMENT_LEADER, department="人社局")
    (group,) = await get(client, leader, group="department")
    assert group["group"]["department"] == "人社局"
    r = ratios(group)
    assert (r["same_day_rate"], r["evaluation_rate"], r["satisfaction_rate"]) == (
        (1, 2),
        (1, 2),
        (1, 1),
    )
    assert (r["no_show_rate"], r["avg_wait_minutes"], r["staffed_rate"]) == (
        (0, 2),
        (46, 2),
        (90, 360),
    )
    other = await client.get(
        "/api/v1/indicators",
        headers=leader,
        params={"from": "2026-11-20", "to": "2026-11-20", "department": "市场监管局"},
    )
    assert other.status_code == 403
    manager = await bearer(engine, Role.HALL_MANAGER, hall="H1")
    refused = await client.get(
        "/api/v1/indicators",
        headers=manager,
        params={"from": "2026-11-20", "to": "2026-11-20", "hall": "H9"},
    )
    assert refused.status_code == 403


async def test_without_a_setup_the_roster_comes_from_the_cases(
    client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    headers = await bearer(engine, Role.SUPERVISOR)
    setup = (await client.get("/api/v1/halls/H9/setup", headers=headers)).json()
    # window 1 took two 市场监管局 cases and one 人社局 case
    assert setup["windows"] == {"1": "市场监管局", "2": "人社局"}
    assert [(p["start"], p["end"]) for p in setup["opening"]] == [
        ("09:00", "12:00"),
        ("13:00", "17:00"),
    ]
    (hall,) = await get(client, headers, group="hall")
    assert ratios(hall)["staffed_rate"] == (390, 720)
    manager = await bearer(engine, Role.HALL_MANAGER, hall="H9")
    assert (
        await client.put("/api/v1/halls/H9/setup", headers=manager, json=SETUP)
    ).status_code == 403


async def test_staff_are_shown_by_name_where_the_setup_names_them(
    client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    """000101 is named in H9's setup, 000202 is not: lists, drill-down and exports show the
    name beside the number, and only where there is one (case lists: test_figures)."""
    headers = await bearer(engine, Role.SUPERVISOR)
    named = {**SETUP, "staff": {"000101": "王芳"}}
    assert (await client.put("/api/v1/halls/H9/setup", headers=headers, json=named)).json()[
        "staff"
    ] == {"000101": "王芳"}
    bad = {**SETUP, "staff": {"101": "王芳"}}
    assert (
        await client.put("/api/v1/halls/H9/setup", headers=headers, json=bad)
    ).status_code == 422

    def names(items: list[dict[str, Any]], key: str = "staff") -> set[tuple[Any, Any]]:
        return {(x[key], x[f"{key}_name"]) for x in items if x[key]}

    assert {
        (g["group"]["staff"], g["group"]["staff_name"])
        for g in await get(client, headers, group="staff")
    } == {("000101", "王芳"), ("000202", None)}
    dates = {"from": "2026-11-20", "to": "2026-11-20"}
    for path in ("/api/v1/sessions", "/api/v1/evaluations"):
        items = (await client.get(path, headers=headers, params=dates)).json()["items"]
        assert names(items) == {("000101", "王芳"), ("000202", None)}, path
    presence = (await client.get("/api/v1/presence", headers=headers, params=dates)).json()
    assert names(presence) == {("000101", "王芳"), ("000202", None)}
    drill = (
        await client.get(
            "/api/v1/drilldown",
            headers=headers,
            params={
                "first": "2026-11-20",
                "last": "2026-11-20",
                "hall": "H9",
                "department": "市场监管局",
                "window": "1",
            },
        )
    ).json()
    assert [(g["staff"], g["staff_name"]) for g in drill["groups"]] == [("000101", "王芳")]
    export = await client.get("/api/v1/evaluations/export", headers=headers, params=dates)
    rows = list(csv.DictReader(io.StringIO(export.text)))
    assert {(r["staff"], r["staff_name"]) for r in rows} == {("000101", "王芳"), ("000202", "")}
    bulletin = await client.get(
        "/api/v1/bulletin.csv", headers=headers, params={"month": "2026-11", "part": "bad_reviews"}
    )
    table = list(csv.reader(io.StringIO(bulletin.content.decode("utf-8-sig"))))
    assert table[0][4:6] == ["工号", "姓名"] and table[1][4:6] == ["000101", "王芳"]
