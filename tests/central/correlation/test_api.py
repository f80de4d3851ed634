"""The correlation API over the small hall (journal.small_hall) on real storage: evaluations
with filters, paging and history, the 好差评 export, sessions and presence, follow-up steps,
re-issues, and every role's scope."""

from __future__ import annotations

import csv
import datetime as dt
import io
from collections.abc import AsyncIterator, Awaitable, Callable
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
from tests.central.correlation.journal import DAY, at, small_hall, small_hall_cases

DATES = {"from": "2026-11-20", "to": "2026-11-20"}
Setup = Callable[..., Awaitable[httpx.AsyncClient]]


def record(**fields: Any) -> CaseRecord:
    return CaseRecord(**{**fields, "status": CaseStatus(fields["status"])})


def extra_case(no: str, window: int, staff: str, department: str, accepted: str) -> CaseRecord:
    return record(
        case_no=no,
        item_code=f"ITEM-{no}",
        item_name=f"事项{no}",
        department=department,
        hall="H9",
        window=window,
        staff=staff,
        accepted_at=at(DAY, accepted),
        legal_days=5,
        promised_days=None,
        completed_at=None,
        status="running",
        suspensions=(),
        applicant_masked=None,
        applicant_digest=None,
    )


@pytest.fixture
async def setup(engine: AsyncEngine) -> AsyncIterator[Setup]:
    clients: list[httpx.AsyncClient] = []

    async def make(
        *, now: dt.datetime | None = None, extra: tuple[CaseRecord, ...] = ()
    ) -> httpx.AsyncClient:
        await register(engine, "H9", "gw9")
        await register(engine, "H1", "gw1")
        await small_hall(engine)
        await store_cases(engine, [record(**c) for c in small_hall_cases()] + list(extra))
        await run_once(engine, now=now)
        client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=create_app(engine)), base_url="http://central"
        )
        clients.append(client)
        return client

    yield make
    for c in clients:
        await c.aclose()


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


async def evaluations(
    client: httpx.AsyncClient, headers: dict[str, str], **params: Any
) -> list[dict[str, Any]]:
    response = await client.get("/api/v1/evaluations", headers=headers, params={**DATES, **params})
    assert response.status_code == 200, response.text
    return response.json()["items"]  # type: ignore[no-any-return]


async def test_evaluations_with_sessions_cases_flags_and_paging(
    setup: Setup, engine: AsyncEngine
) -> None:
    client = await setup()
    sup = await bearer(engine, Role.SUPERVISOR)
    items = await evaluations(client, sup)
    assert [(i["window"], i["key"], i["session"]["ticket"], i["counted"]) for i in items] == [
        (1, 1, "A001", True),
        (1, 3, "A003", True),
        (2, 2, "B001", True),
        (2, 2, "B001", False),
    ]
    first, _, _, second_press = items
    assert first["cases"] == [{"case_no": "C1", "department": "市场监管局", "item_name": "事项C1"}]
    assert (first["national_level"], first["basis"], first["confidence"]) == (5, "invitation", 1.0)
    assert second_press["flags"] == ["DUPLICATE", "OUT_OF_SESSION", "RAPID_REPEAT"]
    assert len(await evaluations(client, sup, flag="DUPLICATE")) == 1
    assert len(await evaluations(client, sup, counted="true")) == 3
    assert len(await evaluations(client, sup, window=2)) == 2
    assert [i["key"] for i in await evaluations(client, sup, case_no="C2")] == [3]

    seen, cursor = [], None
    while True:
        params: dict[str, str | int] = {
            **DATES,
            "limit": 1,
            **({"cursor": cursor} if cursor else {}),
        }
        page = (await client.get("/api/v1/evaluations", headers=sup, params=params)).json()
        seen += [(i["gateway"], i["seq"]) for i in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == [(i["gateway"], i["seq"]) for i in items]

    detail = (await client.get(f"/api/v1/evaluations/gw9/{items[1]['seq']}", headers=sup)).json()
    assert [v["version"] for v in detail["versions"]] == [1] and detail["reissues"] == []
    assert (await client.get("/api/v1/evaluations/gw9/99999", headers=sup)).status_code == 404
    assert (await client.get("/api/v1/evaluations", params=DATES)).status_code == 401


async def test_every_role_sees_its_own_scope(setup: Setup, engine: AsyncEngine) -> None:
    client = await setup()
    other_hall = await bearer(engine, Role.HALL_MANAGER, hall="H1")
    assert await evaluations(client, other_hall) == []
    assert (
        await client.get("/api/v1/evaluations", headers=other_hall, params={**DATES, "hall": "H9"})
    ).status_code == 403
    items = await evaluations(client, await bearer(engine, Role.SUPERVISOR))
    one = f"/api/v1/evaluations/gw9/{items[0]['seq']}"
    assert (await client.get(one, headers=other_hall)).status_code == 404
    own_hall = await bearer(engine, Role.HALL_MANAGER, hall="H9")
    assert len(await evaluations(client, own_hall)) == 4

    labour = await bearer(engine, Role.DEPARTMENT_LEADER, department="人社局")
    assert [i["session"]["ticket"] for i in await evaluations(client, labour)] == [
        "B001",
        "B001",
    ]  # correlated to C3
    assert (await client.get(one, headers=labour)).status_code == 404
    market = await bearer(engine, Role.DEPARTMENT_LEADER, department="市场监管局")
    assert [i["key"] for i in await evaluations(client, market)] == [1, 3]

    tech = await bearer(engine, Role.TECHNICIAN)  # device health, never people's work
    for path in (
        "/api/v1/evaluations",
        "/api/v1/evaluations/export",
        one,
        "/api/v1/sessions",
        "/api/v1/presence",
        "/api/v1/indicators",
    ):
        assert (await client.get(path, headers=tech, params=DATES)).status_code == 403, path
    assert (await client.get("/api/v1/followups", headers=tech)).status_code == 403


async def test_export_on_the_national_five_level_scale(setup: Setup, engine: AsyncEngine) -> None:
    # a second case accepted during S1's service: its one evaluation covers both (一次办多件)
    client = await setup(extra=(extra_case("C6", 1, "000101", "市场监管局", "09:08"),))
    sup = await bearer(engine, Role.SUPERVISOR)
    response = await client.get("/api/v1/evaluations/export", headers=sup, params=DATES)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert [
        (r["case_no"], r["level"], r["level_name"], r["reasons"], r["department"]) for r in rows
    ] == [
        ("C1", "5", "非常满意", "", "市场监管局"),
        ("C6", "5", "非常满意", "", "市场监管局"),
        ("C2", "2", "不满意", "服务态度不好", "市场监管局"),
        ("C3", "4", "满意", "", "人社局"),
    ]
    assert rows[0]["evaluation_id"] == rows[1]["evaluation_id"]
    assert rows[2]["bad_review"] == "True" and rows[2]["dimension"] == "服务态度"
    assert rows[0]["evaluated_at"] == "2026-11-20T09:11:10+08:00"
    labour = await bearer(engine, Role.DEPARTMENT_LEADER, department="人社局")
    mine = await client.get("/api/v1/evaluations/export", headers=labour, params=DATES)
    assert [r["case_no"] for r in csv.DictReader(io.StringIO(mine.text))] == ["C3"]
    excel = await client.get(
        "/api/v1/evaluations/export", headers=sup, params={**DATES, "bom": "true"}
    )
    assert excel.content.startswith("\ufeff".encode())


async def test_sessions_and_presence(setup: Setup, engine: AsyncEngine) -> None:
    client = await setup()
    sup = await bearer(engine, Role.SUPERVISOR)
    body = (await client.get("/api/v1/sessions", headers=sup, params=DATES)).json()
    by = {(s["window"], s["ticket"]): s for s in body["items"]}
    assert set(by) == {
        (1, "A001"),
        (1, "A002"),
        (1, "A003"),
        (2, "B001"),
        (2, "B002"),
        (1, "B002"),
        (None, "A004"),
    }
    assert (by[(1, "A001")]["wait_minutes"], by[(1, "A001")]["service_minutes"]) == (10, 10)
    assert by[(1, "A002")]["outcome"] == "no_show" and by[(1, "A002")]["recalls"] == 1
    # A001's next ticket never came; after the no-show, A003 started at 09:16 (Beijing)
    assert by[(1, "A001")]["next_start_at"] is None
    assert by[(1, "A002")]["next_start_at"] == "2026-11-20T01:16:00Z"
    assert by[(1, "B002")]["wait_minutes"] == 5 and by[(1, "B002")]["case_nos"] == ["C4"]
    assert by[(None, "A004")]["outcome"] == "not_called"
    assert by[(1, "A001")]["time_sources"] == dict.fromkeys(
        ("queued", "called", "started", "ended"), "receive"
    )
    no_show = (
        await client.get("/api/v1/sessions", headers=sup, params={**DATES, "outcome": "no_show"})
    ).json()["items"]
    assert [s["ticket"] for s in no_show] == ["A002"]
    paged, cursor = [], None
    while True:
        params: dict[str, str | int] = {
            **DATES,
            "limit": 3,
            **({"cursor": cursor} if cursor else {}),
        }
        page = (await client.get("/api/v1/sessions", headers=sup, params=params)).json()
        paged += [s["session_id"] for s in page["items"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert sorted(paged) == sorted(s["session_id"] for s in body["items"])
    labour = await bearer(engine, Role.DEPARTMENT_LEADER, department="人社局")
    theirs = (await client.get("/api/v1/sessions", headers=labour, params=DATES)).json()
    assert {(s["window"], s["ticket"]) for s in theirs["items"]} == {(2, "B001"), (1, "B002")}

    presence = (await client.get("/api/v1/presence", headers=sup, params=DATES)).json()
    assert [
        (p["window"], p["staff"], p["start"][11:16], p["end"][11:16], p["closed_by"])
        for p in presence
    ] == [
        (1, "000101", "00:59", "04:00", "PS"),  # UTC: 08:59–12:00 Beijing time
        (1, "000101", "05:00", "08:00", "LO"),
        (2, "000202", "01:30", "03:00", "LO"),
    ]


async def test_follow_up_steps_and_scope(setup: Setup, engine: AsyncEngine) -> None:
    client = await setup()
    sup = await bearer(engine, Role.SUPERVISOR)
    (item,) = (await client.get("/api/v1/followups", headers=sup)).json()
    assert (item["reason"], item["reason_label"], item["department"], item["case_no"]) == (
        3,
        "服务态度不好",
        "市场监管局",
        "C2",
    )
    assert item["state"] == "created" and item["overdue"] is False
    url = f"/api/v1/followups/{item['item_id']}"
    assert (
        await client.get(
            "/api/v1/followups", headers=await bearer(engine, Role.HALL_MANAGER, hall="H1")
        )
    ).json() == []
    labour = await bearer(engine, Role.DEPARTMENT_LEADER, department="人社局")
    assert (
        await client.post(f"{url}/assign", headers=labour, json={"assignee": "x"})
    ).status_code == 404
    market = await bearer(engine, Role.DEPARTMENT_LEADER, department="市场监管局", label="刘科长")
    step = await client.post(f"{url}/assign", headers=market, json={"assignee": "窗口负责人"})
    assert step.status_code == 200 and step.json()["item"]["assignee"] == "窗口负责人"
    manager = await bearer(engine, Role.HALL_MANAGER, hall="H9")
    verified = await client.post(
        f"{url}/verify", headers=manager, json={"founded": False, "note": "监控显示服务规范"}
    )
    assert verified.status_code == 200
    refused = await client.post(f"{url}/rectify", headers=manager, json={})
    assert refused.status_code == 409 and "不属实" in refused.json()["detail"]
    assert (await client.post(f"{url}/call-back", headers=sup, json={})).status_code == 422
    answer = {"answer": "satisfied"}
    assert (await client.post(f"{url}/call-back", headers=sup, json=answer)).status_code == 200
    done = (await client.post(f"{url}/close", headers=sup, json={"note": "已回访"})).json()
    assert done["item"]["state"] == "closed" and done["item"]["closed_late"] is False
    assert [e["kind"] for e in done["events"]] == [
        "followup.created",
        "followup.assigned",
        "followup.verified",
        "followup.called_back",
        "followup.closed",
    ]
    assert done["events"][1]["actor"] == "department_leader:刘科长"
    assert done["events"][3]["answer"] == "satisfied" and done["item"]["answer_label"] == "满意"
    assert [(s["stage"], s["on_time"]) for s in done["item"]["stages"]] == [
        ("verify", True),
        ("rectify", None),  # an unfounded review is never rectified
        ("call_back", True),
    ]
    assert (await client.post(f"{url}/close", headers=sup, json={})).status_code == 409


# the steps' storage runs on both databases in test_follow_up_steps_and_scope; this adds roles
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_appeals_are_filed_by_the_hall_and_decided_by_a_supervisor(
    setup: Setup, engine: AsyncEngine
) -> None:
    client = await setup(now=dt.datetime(2026, 10, 9, 2, 0, tzinfo=dt.UTC))  # 10:00 Beijing
    sup = await bearer(engine, Role.SUPERVISOR, label="李")
    (item,) = (await client.get("/api/v1/followups", headers=sup)).json()
    url = f"/api/v1/followups/{item['item_id']}"
    manager = await bearer(engine, Role.HALL_MANAGER, hall="H9", label="王")
    await client.post(f"{url}/assign", headers=manager, json={"assignee": "staff:000202"})
    body = {"ground": "malicious", "note": "录像：同一人连按差评", "evidence_sha256": "ab" * 32}
    assert (await client.post(f"{url}/appeal", headers=sup, json=body)).status_code == 403
    filed = await client.post(f"{url}/appeal", headers=manager, json=body)
    assert filed.status_code == 200 and filed.json()["item"]["stage"] == "appeal"
    decision = {"upheld": True, "note": "录像属实，剔除"}
    refused = await client.post(f"{url}/appeal-decision", headers=manager, json=decision)
    assert refused.status_code == 403
    done = (await client.post(f"{url}/appeal-decision", headers=sup, json=decision)).json()
    assert (done["item"]["state"], done["item"]["excluded"], done["item"]["overdue"]) == (
        "closed",
        True,
        False,
    )
    assert [(e["kind"], e["actor"]) for e in done["events"][-2:]] == [
        ("followup.appealed", "hall_manager:王"),
        ("followup.appeal_upheld", "supervisor:李"),
    ]
    assert done["events"][-2]["evidence_sha256"] == "ab" * 32
    month, day = "2026-10", "2026-10-09"
    figures = await client.get("/api/v1/followups/statistics", headers=sup, params={"month": month})
    assert {k: figures.json()[k] for k in ("opened", "excluded", "appeals_upheld", "by_level")} == {
        "opened": 1,
        "excluded": 1,
        "appeals_upheld": 1,
        "by_level": {},
    }
    csv = await client.get(
        "/api/v1/followups/statistics.csv", headers=manager, params={"month": month}
    )
    assert csv.status_code == 200 and "申诉,成立,1" in csv.content.decode("utf-8-sig")
    rates = await client.get(
        "/api/v1/indicators/workorders", headers=sup, params={"from": day, "to": day}
    )
    assert rates.json()["ratios"]["call_back_rate"]["denominator"] == 0  # excluded


async def test_overdue_items_are_listed_and_escalated(setup: Setup, engine: AsyncEngine) -> None:
    opened = dt.datetime(2026, 10, 9, 2, 0, tzinfo=dt.UTC)  # 核实 due Sat 10-10 (调休 workday)
    client = await setup(now=opened)
    sup = await bearer(engine, Role.SUPERVISOR)
    (item,) = (await client.get("/api/v1/followups/overdue", headers=sup)).json()
    assert (item["due"], item["overdue"], item["escalation_level"]) == ("2026-10-10", True, 0)
    await run_once(engine, now=dt.datetime(2026, 10, 12, 2, 0, tzinfo=dt.UTC))
    (item,) = (
        await client.get("/api/v1/followups", headers=sup, params={"overdue": "true"})
    ).json()
    assert item["escalation_level"] == 1
    assert (
        await client.get("/api/v1/followups", headers=sup, params={"overdue": "false"})
    ).json() == []


async def test_a_late_case_shows_as_reissues(setup: Setup, engine: AsyncEngine) -> None:
    client = await setup()
    await store_cases(engine, [extra_case("C7", 2, "000202", "人社局", "09:42")])
    report = await run_once(engine)
    assert report.reissued == 2  # both presses tied to S4
    sup = await bearer(engine, Role.SUPERVISOR)
    reissues = (await client.get("/api/v1/correlation/reissues", headers=sup)).json()
    assert len(reissues) == 2 and all(r["changed"] == ["case_nos"] for r in reissues)
    own = await bearer(engine, Role.HALL_MANAGER, hall="H9")
    assert len((await client.get("/api/v1/correlation/reissues", headers=own)).json()) == 2
    other = await bearer(engine, Role.HALL_MANAGER, hall="H1")
    assert (await client.get("/api/v1/correlation/reissues", headers=other)).json() == []
    detail = (await client.get(f"/api/v1/evaluations/gw9/{reissues[0]['seq']}", headers=sup)).json()
    assert [v["version"] for v in detail["versions"]] == [1, 2]
    assert detail["versions"][1]["case_nos"] == ["C3", "C7"]
    assert [c["case_no"] for c in detail["current"]["cases"]] == ["C3", "C7"]
