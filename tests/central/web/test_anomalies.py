"""Anomaly cases (异常线索) end to end on SQLite and PostgreSQL: the job loads a hall-day's
facts from the seeded store, a detector (a stand-in here: the real one is tested on plain
values beside it) reports anomalies, the job opens each once; supervisors decide them as
records, a dismissed case never reopens, hall managers see their hall's, and only confirmed
cases reach the 通报 and the staff scorecard."""

from __future__ import annotations

import asyncio
import datetime as dt

from sqlalchemy import select

from central.gaming import job
from central.gaming.model import Anomaly, Facts, InvitationEnd, JSONValue, Pattern, Period
from central.store.schema_gaming import anomaly_day_queue, anomaly_decisions
from tests.central.web.conftest import Site, logged_in

SUBJECTS = {"H1": (1, "100231", Pattern.KEY_STREAK), "H2": (1, "200101", Pattern.INSTANT_PRESS)}
seen: list[Facts] = []
# as long as the detector's own descriptions get (PostgreSQL would refuse a short column)
METHOD = "exact binomial test, one-sided; " + "against the hall's baseline; " * 10


def stand_in(batch: list[Facts]) -> list[Anomaly]:
    """One anomaly per seeded hall, over the presses of one window (and, in H1, the press the
    camera saw with nobody at the window)."""
    seen.extend(batch)
    found = []
    for facts in batch:
        if facts.hall_id not in SUBJECTS:
            continue
        window, staff, pattern = SUBJECTS[facts.hall_id]
        refs: list[JSONValue] = [
            [p.gateway_id, p.seq] for p in facts.presses if p.window in (window, 2)
        ]
        found.append(
            Anomaly(
                pattern=pattern,
                hall_id=facts.hall_id,
                window=window,
                staff=staff,
                period=facts.period,
                p_value=0.0004,
                effect=3.5,
                effect_name="ratio",
                method=METHOD,
                summary="该窗口按键模式明显偏离本大厅基线",
                evidence={"presses": refs, "baseline": {"hall_rate": 0.01, "window_rate": 0.2}},
            )
        )
    return found


async def test_cases_open_once_are_decided_as_records_and_only_confirmed_ones_count(
    site: Site,
) -> None:
    seen.clear()
    day = Period.day(site.seed.today)
    first = await job.run_once(site.engine, [day], detect=stand_in)
    assert first.opened == 2 and first.marked == {"day": 2}, first
    # the facts came from the store: invited presses timed from their invitation, sessions
    # with how the invitation ended, the cases with the ladder's verdict
    h1 = next(f for f in seen if f.hall_id == "H1")
    timed = [p for p in h1.presses if p.seconds_after_invitation is not None]
    assert timed and all(p.invited and (p.seconds_after_invitation or 0) >= 0 for p in timed)
    assert {s.invitation_end for s in h1.sessions if s.invited} == {InvitationEnd.PRESSED}
    assert any(p.citizen == "absent" for p in h1.presses)
    assert {c.case_no for c in h1.cases} >= {"SJ-201", "SJ-202", "SJ-203"}
    assert (await job.run_once(site.engine, [day], detect=stand_in)).opened == 0  # same facts

    async with logged_in(site, "jiancha") as client:
        listed = (await client.get("/api/v1/anomalies")).json()
        assert listed["total"] == 2 and listed["counts"] == {"key_streak": 1, "instant_press": 1}
        ids = {a["hall"]: a["id"] for a in listed["items"]}
        detail = (await client.get(f"/api/v1/anomalies/{ids['H1']}")).json()
        assert detail["status"] == "open" and detail["p_value"] == 0.0004
        assert detail["evidence"]["baseline"] == {"hall_rate": 0.01, "window_rate": 0.2}
        presses = detail["presses"]
        assert presses and all(p["at"] and p["key"] for p in presses)
        assert "absent" in {p["citizen"] for p in presses}
        headers = {"X-CSRF-Token": client.cookies.get("hw_central_csrf") or ""}

        async def decide(hall: str, decision: str, supersedes: int | None = None) -> int:
            body = {"decision": decision, "note": f"{hall} 核实", "supersedes": supersedes}
            reply = await client.post(
                f"/api/v1/anomalies/{ids[hall]}/decisions", json=body, headers=headers
            )
            return reply.status_code if reply.status_code != 201 else reply.json()["id"]

        empty = {"decision": "confirmed", "note": ""}
        url = f"/api/v1/anomalies/{ids['H1']}/decisions"
        assert (await client.post(url, json=empty, headers=headers)).status_code == 422
        await decide("H1", "dismissed")
        h2_first = await decide("H2", "dismissed")
        assert await decide("H2", "confirmed") == 409  # stale: it names no current decision
        await decide("H2", "confirmed", supersedes=h2_first)
        assert (
            await job.run_once(site.engine, [day], detect=stand_in)
        ).opened == 0  # never reopens
        status = {
            a["hall"]: a["status"]
            for a in (await client.get("/api/v1/anomalies?status=all")).json()["items"]
        }
        assert status == {"H1": "dismissed", "H2": "confirmed"}
        assert (await client.get("/api/v1/anomalies?status=open")).json()["total"] == 0

        month = site.seed.today.isoformat()[:7]
        gaming = (await client.get(f"/api/v1/bulletin?month={month}")).json()["gaming"]
        assert [(g["hall"], g["staff"], g["pattern"]) for g in gaming] == [
            ("H2", "200101", "instant_press")
        ]
        csv = await client.get(f"/api/v1/bulletin.csv?month={month}&part=gaming")
        lines = csv.content.decode("utf-8-sig").splitlines()
        assert lines[0].startswith("大厅,大厅名称,窗口,工号") and len(lines) == 2, lines
        assert lines[1].startswith("H2,") and "instant_press" in lines[1] and "H2 核实" in lines[1]
        today = site.seed.today.isoformat()
        drill = (
            await client.get(f"/api/v1/drilldown?hall=H2&window=1&first={today}&last={today}")
        ).json()
        assert {(g["staff"], g["confirmed_anomalies"]) for g in drill["groups"]} == {("200101", 1)}
    async with site.engine.connect() as conn:
        rows = (await conn.execute(select(anomaly_decisions).order_by("id"))).all()
    assert [(r.generation, r.decision) for r in rows] == [
        (1, "dismissed"),
        (1, "dismissed"),
        (2, "confirmed"),
    ]  # the first decisions are still there, unchanged

    async with logged_in(site, "h2-guanli") as client:
        mine = (await client.get("/api/v1/anomalies?status=all")).json()
        assert [a["hall"] for a in mine["items"]] == ["H2"]
        assert (await client.get(f"/api/v1/anomalies/{ids['H1']}")).status_code == 404
        assert (await client.get("/api/v1/anomalies?hall=H1")).status_code == 403
        body = {"decision": "dismissed", "note": "x"}
        headers = {"X-CSRF-Token": client.cookies.get("hw_central_csrf") or ""}
        reply = await client.post(
            f"/api/v1/anomalies/{ids['H2']}/decisions", json=body, headers=headers
        )
        assert reply.status_code == 403  # supervisors decide
    async with logged_in(site, "shichang-lingdao") as client:
        assert (await client.get("/api/v1/anomalies")).status_code == 403


def test_a_day_is_due_after_the_small_hours_and_a_week_once_complete() -> None:
    beijing = dt.timezone(dt.timedelta(hours=8))
    monday_3am = dt.datetime(2026, 12, 7, 3, tzinfo=beijing)
    assert job.due(monday_3am, 2) == {
        "day": Period.day(dt.date(2026, 12, 6)),
        "week": Period.iso_week(dt.date(2026, 11, 30)),
    }
    monday_1am = dt.datetime(2026, 12, 7, 1, tzinfo=beijing)
    assert job.due(monday_1am, 2) == {
        "day": Period.day(dt.date(2026, 12, 5)),
        "week": Period.iso_week(dt.date(2026, 11, 23)),
    }


async def test_a_hall_period_that_fails_waits_for_its_retry_without_holding_the_batch(
    site: Site,
) -> None:
    def fails_on_h1(batch: list[Facts]) -> list[Anomaly]:
        if any(f.hall_id == "H1" for f in batch):
            raise RuntimeError("H1's facts break the detector")
        return stand_in(batch)

    day = Period.day(site.seed.today)
    report = await job.run_once(site.engine, [day], detect=fails_on_h1)
    assert [hall for hall, _ in report.detected] == ["H2"] and report.opened == 1
    async with site.engine.connect() as conn:
        left = (await conn.execute(select(anomaly_day_queue.c.hall_id))).scalars().all()
    assert left == ["H1"]  # queued again, for a later try


async def test_aggregators_scheduling_at_once_queue_each_period_once(site: Site) -> None:
    """Every aggregator runs the schedule; side by side they neither fail on the period's
    mark nor queue its hall-periods twice."""
    beijing = dt.timezone(dt.timedelta(hours=8))
    now = dt.datetime.combine(site.seed.today + dt.timedelta(days=1), dt.time(3), beijing)
    runs = await asyncio.gather(*(job.schedule(site.engine, now, 2) for _ in range(4)))
    assert sum(run.get("day", 0) for run in runs) == len({"H1", "H2"})  # the seeded halls
    async with site.engine.connect() as conn:
        queued = (await conn.execute(select(anomaly_day_queue))).all()
    assert sorted(r.hall_id for r in queued) == ["H1", "H2"]
    assert {r.generation for r in queued} == {1}  # marked once each, not bumped by a rival
