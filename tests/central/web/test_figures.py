"""Overview, drill-down and the monthly bulletin over the seeded province: the figures the
rules give, and each role's scope."""

from __future__ import annotations

import csv
import io
from typing import Any

from central.security.tokens import Role
from tests.central.web.conftest import Site, logged_in
from tests.central.web.seed import MARKET, POLICE, SOCIAL


def _by_hall(overview: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {h["hall"]: h for h in overview["halls"]}


async def test_overview_shows_every_hall_with_its_lights_rates_and_gateways(site: Site) -> None:
    async with logged_in(site, "jiancha") as c:
        data = (await c.get("/api/v1/overview")).json()
    halls = _by_hall(data)
    assert set(halls) == {"H1", "H2", "H3"}
    h1, h2, h3 = halls["H1"], halls["H2"], halls["H3"]
    assert h1["lights"] == {
        "blue": 6,
        "yellow_light": 1,
        "red_light": 1,
        "yellow_card": 1,
        "red_card": 1,
        "supervision_letter": 0,
        "suspended": 0,
    }
    assert (h2["lights"]["supervision_letter"], h2["lights"]["yellow_light"]) == (1, 1)
    assert (h1["gateways_online"], h3["gateways"], h3["gateways_online"]) == (1, 1, 0)
    assert (h1["offline"], h3["offline"], data["halls_offline"]) == (False, True, 1)
    # H1 today: keys 1, 2, 3, 1, 4 counted (the NO_SESSION press is not) → 3/5 satisfied
    assert h1["satisfaction_today"] == {"numerator": 3, "denominator": 5, "value": 0.6}
    # H1's four cases accepted today, each evaluated through its service
    assert h1["evaluation_rate_today"]["numerator"] == 4
    assert h1["evaluation_rate_today"]["denominator"] == 4
    assert (h1["suspicious_today"], h1["suspicious_open"]) == (1, 1)
    assert h2["suspicious_today"] == 1
    assert data["correlated"] is True and data["figures_problem"] is None


async def test_overview_for_a_hall_manager_and_a_department_leader(site: Site) -> None:
    async with logged_in(site, "h2-guanli") as c:
        mine = (await c.get("/api/v1/overview")).json()
    assert [h["hall"] for h in mine["halls"]] == ["H2"]
    async with logged_in(site, "shichang-lingdao") as c:
        theirs = (await c.get("/api/v1/overview")).json()
    (h1,) = theirs["halls"]  # 市场监管局 works in H1 only
    assert h1["hall"] == "H1" and h1["gateways"] is None  # no gateway state for them
    # their open cases only: SJ-001…004 and today's SJ-201…203
    assert sum(h1["lights"].values()) == 7 and h1["lights"]["red_card"] == 0
    # their evaluations only: A001–A003 (keys 1, 2, 3)
    assert h1["satisfaction_today"]["denominator"] == 3


async def test_drilldown_goes_hall_department_window_staff(site: Site) -> None:
    today = site.seed.today.isoformat()
    async with logged_in(site, "jiancha") as c:
        top = (await c.get(f"/api/v1/drilldown?first={today}&last={today}")).json()
        assert top["level"] == "hall"
        assert {g["hall"] for g in top["groups"]} >= {"H1", "H2"}
        hall = (await c.get(f"/api/v1/drilldown?first={today}&last={today}&hall=H1")).json()
        assert hall["level"] == "department"
        departments = {g["department"]: g for g in hall["groups"]}
        assert set(departments) == {MARKET, SOCIAL}
        market = departments[MARKET]["indicators"]["satisfaction_rate"]
        assert (market["numerator"], market["denominator"]) == (2, 3)
        windows = (
            await c.get(f"/api/v1/drilldown?first={today}&last={today}&hall=H1&department={MARKET}")
        ).json()
        assert windows["level"] == "window"
        assert {g["window"] for g in windows["groups"]} == {"1", "2"}
        staff = (
            await c.get(
                f"/api/v1/drilldown?first={today}&last={today}&hall=H1&department={MARKET}&window=1"
            )
        ).json()
        assert staff["level"] == "staff" and [g["staff"] for g in staff["groups"]] == ["100231"]
        end = (
            await c.get(
                f"/api/v1/drilldown?first={today}&last={today}&hall=H1"
                f"&department={MARKET}&window=1&staff=100231"
            )
        ).json()
        assert end["level"] == "case" and end["groups"] == []
        assert end["total"]["satisfaction_rate"]["denominator"] == 3
        (day,) = end["trend"]
        assert day["indicators"]["satisfaction_rate"]["numerator"] == 2


async def test_drilldown_ranks_by_satisfaction(site: Site) -> None:
    today = site.seed.today.isoformat()
    async with logged_in(site, "jiancha") as c:
        top = (await c.get(f"/api/v1/drilldown?first={today}&last={today}")).json()
    ranks = {g["hall"]: g["satisfaction_rank"] for g in top["groups"]}
    # H1 3/5 = 60 %, H2: C001 key 2, C002 key 5, D001 key 1 → 2/3 = 67 %
    assert ranks["H2"] == 1 and ranks["H1"] == 2


async def test_drilldown_scope(site: Site) -> None:
    async with logged_in(site, "h2-guanli") as c:
        assert (await c.get("/api/v1/drilldown?hall=H1")).status_code == 403
        top = (await c.get("/api/v1/drilldown")).json()
        assert {g["hall"] for g in top["groups"]} == {"H2"}
    async with logged_in(site, "shichang-lingdao") as c:
        refused = await c.get(f"/api/v1/drilldown?hall=H1&department={SOCIAL}")
        assert refused.status_code == 403
        hall = (await c.get("/api/v1/drilldown?hall=H1")).json()
        assert [g["department"] for g in hall["groups"]] == [MARKET]
    async with logged_in(site, "yunwei") as c:
        assert (await c.get("/api/v1/drilldown")).status_code == 403


async def test_bulletin_per_hall_and_department_with_overdue_and_bad_reviews(site: Site) -> None:
    month = site.seed.today.strftime("%Y-%m")
    async with logged_in(site, "jiancha") as c:
        b = (await c.get(f"/api/v1/bulletin?month={month}")).json()
    assert b["correlated"] is True
    departments = {(g["hall"], g["department"]): g for g in b["departments"]}
    assert set(departments) >= {("H1", MARKET), ("H1", SOCIAL), ("H2", POLICE)}
    overdue = {c["case_no"]: c for c in b["overdue_cases"]}
    # open past the deadline: the yellow card, the red card, the supervision letter; and the
    # case completed late this month
    assert {"SJ-004", "RS-001", "GA-001", "RS-101"} <= set(overdue)
    assert overdue["GA-001"]["stage"] == "supervision_letter"
    bad = {(r["hall"], r["window"], r["key"]): r for r in b["bad_reviews"]}
    assert set(bad) == {("H1", 1, 3), ("H1", 3, 4), ("H2", 1, 5)}
    assert bad[("H1", 1, 3)]["followup_state"] == "created"
    assert bad[("H1", 1, 3)]["case_nos"] == ["SJ-203"]
    on_time = departments[("H1", SOCIAL)]["indicators"]["on_time_rate"]
    assert on_time["value"] == 0.0  # RS-101 completed late, its only completion
    assert departments[("H1", MARKET)]["on_time_rank"] == 1


async def test_bulletin_csv_is_utf8_with_bom_and_opens_as_a_table(site: Site) -> None:
    month = site.seed.today.strftime("%Y-%m")
    async with logged_in(site, "jiancha") as c:
        reply = await c.get(f"/api/v1/bulletin.csv?month={month}")
        overdue = await c.get(f"/api/v1/bulletin.csv?month={month}&part=overdue")
        english = await c.get(f"/api/v1/bulletin.csv?month={month}&part=bad_reviews&lang=en")
    assert reply.headers["content-type"].startswith("text/csv")
    assert "attachment" in reply.headers["content-disposition"]
    assert reply.content.startswith(b"\xef\xbb\xbf")
    rows = list(csv.reader(io.StringIO(reply.content.decode("utf-8-sig"))))
    assert rows[0][:4] == ["级别", "大厅", "大厅名称", "部门"]
    levels = [r[0] for r in rows[1:]]
    assert levels[0] == "合计" and "大厅" in levels and "部门" in levels
    market = next(r for r in rows if r[1] == "H1" and r[3] == MARKET)
    assert market[2] == "H1"  # no registry row: the hall shows its id
    assert market[rows[0].index("群众满意率")] == "66.7%"
    overdue_rows = list(csv.reader(io.StringIO(overdue.content.decode("utf-8-sig"))))
    assert {"GA-001", "RS-101"} <= {r[0] for r in overdue_rows[1:]}
    english_rows = list(csv.reader(io.StringIO(english.content.decode("utf-8-sig"))))
    assert english_rows[0][0] == "evaluated at" and len(english_rows) == 4


async def test_bulletin_scope(site: Site) -> None:
    month = site.seed.today.strftime("%Y-%m")
    async with logged_in(site, "shichang-lingdao") as c:
        b = (await c.get(f"/api/v1/bulletin?month={month}")).json()
    assert {g["department"] for g in b["departments"]} == {MARKET}
    assert {c["department"] for c in b["overdue_cases"]} == {MARKET}
    assert {tuple(r["case_nos"]) for r in b["bad_reviews"]} == {("SJ-203",)}
    async with logged_in(site, "h2-guanli") as c:
        b = (await c.get(f"/api/v1/bulletin?month={month}")).json()
        csv_text = (await c.get(f"/api/v1/bulletin.csv?month={month}")).text
    assert {g["hall"] for g in b["halls"]} == {"H2"}
    assert "H1" not in csv_text
    async with site.client() as c:
        headers = await site.bearer(Role.TECHNICIAN)
        assert (await c.get(f"/api/v1/bulletin?month={month}", headers=headers)).status_code == 403
        supervisor = await site.bearer(Role.SUPERVISOR)
        future = await c.get("/api/v1/bulletin?month=2099-01", headers=supervisor)
        assert future.status_code == 422


async def test_technicians_get_the_halls_but_no_suspicious_evaluations(site: Site) -> None:
    async with logged_in(site, "yunwei") as c:
        data = (await c.get("/api/v1/overview")).json()
    assert {h["hall"] for h in data["halls"]} == {"H1", "H2", "H3"}
    assert data["suspicious_today"] is None
    assert all(h["suspicious_today"] is None for h in data["halls"])
    assert _by_hall(data)["H3"]["offline"] is True


async def test_open_overdue_cases_are_listed_whatever_their_acceptance_date(site: Site) -> None:
    """The analysis page's hall and department case lists: accepted in the range, plus every
    open overdue case (SJ-004 yellow card, RS-001 red card, accepted days ago); the groups
    count them too."""
    today = site.seed.today.isoformat()
    async with logged_in(site, "jiancha") as c:
        in_range = (
            await c.get(
                "/api/v1/cases", params={"hall": "H1", "accepted_from": today, "accepted_to": today}
            )
        ).json()["items"]
        assert not {"SJ-004", "RS-001"} & {x["case_no"] for x in in_range}
        overdue = (
            await c.get("/api/v1/cases", params={"hall": "H1", "open": "true", "overdue": "true"})
        ).json()["items"]
        assert sorted(x["case_no"] for x in overdue) == ["RS-001", "SJ-004"]
        assert all(x["ladder"]["overdue"] and x["status"] == "running" for x in overdue)
        market = (
            await c.get(
                "/api/v1/cases",
                params={"hall": "H1", "department": MARKET, "open": "true", "overdue": "true"},
            )
        ).json()
        assert [x["case_no"] for x in market["items"]] == ["SJ-004"]
        # done late (RS-101) is overdue but not open; open on-time cases are not overdue
        closed = (
            await c.get("/api/v1/cases", params={"hall": "H1", "open": "false", "overdue": "true"})
        ).json()["items"]
        assert [x["case_no"] for x in closed] == ["RS-101"]
        hall = (await c.get(f"/api/v1/drilldown?first={today}&last={today}&hall=H1")).json()
        assert hall["total"]["overdue_open"] == 2
        assert "staffed_coverage" in hall["total"]
        departments = {g["department"]: g["indicators"]["overdue_open"] for g in hall["groups"]}
        assert departments == {MARKET: 1, SOCIAL: 1}


async def test_case_lists_name_the_staff_where_the_hall_setup_does(site: Site) -> None:
    async with site.client() as c:
        headers = await site.bearer(Role.SUPERVISOR)
        setup = (await c.get("/api/v1/halls/H1/setup", headers=headers)).json()
        setup["staff"] = {"100232": "赵敏"}
        assert (
            await c.put("/api/v1/halls/H1/setup", headers=headers, json=setup)
        ).status_code == 200
        items = (
            await c.get(
                "/api/v1/cases",
                headers=headers,
                params={"hall": "H1", "open": "true", "overdue": "true"},
            )
        ).json()["items"]
        assert {(x["case_no"], x["staff"], x["staff_name"]) for x in items} == {
            ("SJ-004", "100232", "赵敏"),
            ("RS-001", "100241", None),
        }
        one = (await c.get("/api/v1/cases/SJ-004", headers=headers)).json()
        assert one["staff_name"] == "赵敏"
