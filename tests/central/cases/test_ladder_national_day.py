"""The 2026 National Day table end to end: cases fed through the API day by day as the approval
system would report them, the ladder job run for each day of the table, and the recorded steps
and the case API's current stage checked against the hand-made table.

The table, its cases and its expected steps and deadlines are the ones worked out by hand in
tests/central/rules/test_ladder_national_day_2026.py (imported, not re-derived): this test adds
the feed, the storage, the job and the API around the same facts.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import httpx
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from central.cases.ladder import run_once
from central.rules.timelimit import CaseClock, LadderConfig
from central.rules.workdays import WorkCalendar, business_date
from central.security.tokens import Role
from central.store.schema_cases import case_steps
from tests.central.cases.support import bearer
from tests.central.rules.test_ladder_national_day_2026 import (
    CASES,
    CELLS,
    CODES,
    DAYS,
    HAND_DEADLINES,
    HAND_STEPS,
)

CAL = WorkCalendar()
DEPARTMENT = {name: "市场监管局" if name in "ABCD" else "人社局" for name in CASES}


def number(name: str) -> str:
    return f"GQ2026-{name}"


def as_reported(name: str, clock: CaseClock, day: dt.date) -> dict[str, Any]:
    """What the approval system knows about the case at the close of ``day``."""
    happened = [s for s in clock.suspensions if business_date(s.start) <= day]
    suspensions = [
        {
            "start": s.start.isoformat(),
            "end": s.end.isoformat() if s.end and business_date(s.end) <= day else None,
            "reason": s.reason or "补正",
        }
        for s in happened
    ]
    done = clock.completed_at if clock.completed_on and clock.completed_on <= day else None
    status = "办结" if done else "暂停" if any(s["end"] is None for s in suspensions) else "在办"
    return {
        "case_no": number(name),
        "item_code": "330100-ND",
        "item_name": f"国庆样例 {name}",
        "department": DEPARTMENT[name],
        "hall": "H1" if name in "ACEG" else "H2",
        "window": 1 + "ABCDEFGH".index(name),
        "staff": "000101",
        "accepted_at": clock.accepted_at.isoformat(),
        "legal_days": clock.legal_days,
        "promised_days": clock.promised_days,
        "status": status,
        "completed_at": done.isoformat() if done else None,
        "suspensions": suspensions,
    }


async def test_every_step_and_stage_of_the_table_through_feed_job_and_api(
    client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    sup = await bearer(engine, Role.SUPERVISOR)
    leader = await bearer(engine, Role.DEPARTMENT_LEADER, department="人社局")
    recorded_total = 0
    for day, _ in DAYS:
        accepted = [n for n in sorted(CASES) if CASES[n].accepted_on <= day]
        rows = [as_reported(n, CASES[n], day) for n in accepted]
        if rows:
            fed = (await client.post("/api/v1/cases", headers=sup, json={"cases": rows})).json()
            assert fed["rejected"] == 0, fed
        run = await run_once(engine, day, CAL)
        recorded_total += run.steps_recorded
        again = await run_once(engine, day, CAL)
        assert again.steps_recorded == 0, day  # the same day twice adds nothing

        for name in sorted(CASES):
            code = CELLS[name][day]
            r = await client.get(f"/api/v1/cases/{number(name)}", headers=sup)
            if code == ".":
                assert r.status_code == 404, (name, day)
                continue
            detail = r.json()
            want_steps = [
                (stage.value, dt.date(2026, m, d).isoformat())
                for stage, (m, d) in HAND_STEPS[name]
                if dt.date(2026, m, d) <= day
            ]
            got_steps = [(s["stage"], s["on_date"]) for s in detail["steps"]]
            assert got_steps == want_steps, (name, day)
            assert not any(s["superseded"] for s in detail["steps"]), (name, day)
            ladder = detail["ladder"]
            assert (ladder["stage"], ladder["source"]) == (CODES[code].value, "job"), (name, day)
            # a completed case is settled: the job stops moving its as_of
            settled = CODES[code].is_done
            assert (
                (ladder["as_of"] <= day.isoformat())
                if settled
                else (ladder["as_of"] == day.isoformat())
            ), (name, day)

        # the list filtered by stage agrees with the table too (and with the leader's scope)
        for code in {CELLS[n][day] for n in CASES} - {"."}:
            listed = (
                await client.get("/api/v1/cases", headers=sup, params={"stage": CODES[code].value})
            ).json()["items"]
            assert sorted(i["case_no"] for i in listed) == sorted(
                number(n) for n in CASES if CELLS[n][day] == code
            ), (code, day)
            mine = (
                await client.get(
                    "/api/v1/cases", headers=leader, params={"stage": CODES[code].value}
                )
            ).json()["items"]
            assert sorted(i["case_no"] for i in mine) == sorted(
                number(n) for n in CASES if CELLS[n][day] == code and DEPARTMENT[n] == "人社局"
            ), (code, day)

        # overdue: a card or letter showing, or completed late
        late = (await client.get("/api/v1/cases", headers=sup, params={"overdue": "true"})).json()[
            "items"
        ]
        assert sorted(i["case_no"] for i in late) == sorted(
            number(n) for n in CASES if CELLS[n][day] in ("YC", "RC", "SL", "DL")
        ), day

    assert recorded_total == sum(len(s) for s in HAND_STEPS.values())
    async with engine.connect() as conn:
        stored = (await conn.execute(select(func.count()).select_from(case_steps))).scalar_one()
    assert stored == recorded_total
    for name, due in HAND_DEADLINES.items():
        ladder = (await client.get(f"/api/v1/cases/{number(name)}", headers=sup)).json()["ladder"]
        assert ladder["deadline"] == due.isoformat(), name
    # A on 10-28, counted by hand from the table's W column: working days after its 09-24
    # deadline are 09-28, 29, 30 (3), 10-08, 09, 10 (调休 Saturday), 12–16, 19–23, 26–28 (16)
    a = (await client.get(f"/api/v1/cases/{number('A')}", headers=sup)).json()["ladder"]
    assert (a["days_over"], a["overdue"], a["limit_days"]) == (19, True, 5)
    g = (await client.get(f"/api/v1/cases/{number('G')}", headers=sup)).json()["ladder"]
    assert (g["days_over"], g["overdue"]) == (-5, False)  # done after 2 of its 7 days


async def test_configured_thresholds_reach_the_recorded_steps(
    client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    # Case A with yellow light two working days before the deadline (hand: 09-22, deadline 09-24)
    sup = await bearer(engine, Role.SUPERVISOR)
    row = as_reported("A", CASES["A"], dt.date(2026, 9, 18))
    await client.post("/api/v1/cases", headers=sup, json={"cases": [row]})
    early = LadderConfig(
        yellow_light=-2, red_light=0, yellow_card=1, red_card=3, supervision_letter=5
    )
    for day in (dt.date(2026, 9, 21), dt.date(2026, 9, 22)):
        await run_once(engine, day, CAL, early)
    detail = (await client.get(f"/api/v1/cases/{number('A')}", headers=sup)).json()
    assert [(s["stage"], s["on_date"]) for s in detail["steps"]] == [
        ("blue", "2026-09-18"),
        ("yellow_light", "2026-09-22"),
    ]
