"""The ladder job's own behaviour: what it looks at, late data, unknown years and the site
calendar, withdrawn cases, the lock between aggregator processes, the schedule."""

from __future__ import annotations

import asyncio
import datetime as dt
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from central.cases import ladder
from central.cases.context import CaseContext
from central.cases.model import validate_row
from central.cases.store import CaseRecord, Source, upsert
from central.rules.workdays import BUSINESS_TZ, WorkCalendar
from central.security.tokens import Role
from hallkit.clock import utc_now
from tests.central.cases.support import bearer, case

CAL = WorkCalendar()
D = dt.date


async def stages(
    client: httpx.AsyncClient, headers: dict[str, str], case_no: str
) -> list[tuple[str, str, bool]]:
    detail = (await client.get(f"/api/v1/cases/{case_no}", headers=headers)).json()
    return [(s["stage"], s["on_date"], s["superseded"]) for s in detail["steps"]]


async def test_a_second_run_for_the_same_day_looks_at_nothing(
    client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    sup = await bearer(engine, Role.SUPERVISOR)
    rows = [case(f"J-{i}", accepted_at=f"2026-09-{14 + i} 10:00") for i in range(5)]
    await client.post("/api/v1/cases", headers=sup, json={"cases": rows})
    first = await ladder.run_once(engine, D(2026, 9, 17), CAL)
    # J-4 is accepted on 09-18, after the day the job runs for
    assert (first.cases, first.failed, first.skipped) == (4, {}, False)
    assert (await ladder.run_once(engine, D(2026, 9, 17), CAL)).cases == 0
    # the next day every open case moves on; a revised one is looked at again the same day
    assert (await ladder.run_once(engine, D(2026, 9, 18), CAL)).cases == 5
    await client.post(
        "/api/v1/cases",
        headers=sup,
        json={"cases": [case("J-0", accepted_at="2026-09-14 10:00", staff="000777")]},
    )
    assert (await ladder.run_once(engine, D(2026, 9, 18), CAL)).cases == 1


async def test_later_runs_look_only_at_new_revised_and_open_cases(
    client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    sup = await bearer(engine, Role.SUPERVISOR)
    await client.post(
        "/api/v1/cases",
        headers=sup,
        json={
            "cases": [
                case("I-0"),
                case("I-1"),
                case("I-2", status="办结", completed_at="2026-09-18 16:00"),
            ]
        },
    )
    assert (await ladder.run_once(engine, D(2026, 9, 21), CAL)).cases == 3
    mark = utc_now()
    await client.post("/api/v1/cases", headers=sup, json={"cases": [case("I-3")]})
    same_day = await ladder.run_once(engine, D(2026, 9, 21), CAL, since=mark)
    assert same_day.cases == 1  # the new case only
    next_day = await ladder.run_once(engine, D(2026, 9, 22), CAL, since=utc_now())
    assert next_day.cases == 3  # the open ones move on; the completed I-2 is settled
    detail = (await client.get("/api/v1/cases/I-3", headers=sup)).json()
    assert detail["ladder"]["as_of"] == "2026-09-22"


async def test_a_late_reported_suspension_supersedes_recorded_steps(
    client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    sup = await bearer(engine, Role.SUPERVISOR)
    # accepted Mon 09-14, promised 5: counted 15(1) 16(2) 17(3) 18(4) 20(5, 调休 Sunday)
    row = case("L-1", accepted_at="2026-09-14 09:00", legal_days=10, promised_days=5)
    await client.post("/api/v1/cases", headers=sup, json={"cases": [row]})
    for day in range(14, 19):
        await ladder.run_once(engine, D(2026, 9, day), CAL)
    assert await stages(client, sup, "L-1") == [
        ("blue", "2026-09-14", False),
        ("yellow_light", "2026-09-18", False),
    ]
    # the approval system reports, late, a 补正 from 09-16 10:00 to 09-18 15:00: 17 and 18 do
    # not count, so on 09-18 the case is blue again (2 of 5 days used)
    late = {
        **row,
        "suspensions": [{"start": "2026-09-16 10:00", "end": "2026-09-18 15:00", "reason": "补正"}],
    }
    out = (await client.post("/api/v1/cases", headers=sup, json={"cases": [late]})).json()
    assert out["revised"] == 1
    await ladder.run_once(engine, D(2026, 9, 18), CAL)
    assert await stages(client, sup, "L-1") == [
        ("blue", "2026-09-14", False),
        ("suspended", "2026-09-16", False),
        ("yellow_light", "2026-09-18", True),  # recorded at the time, no longer so
        ("blue", "2026-09-18", False),
    ]
    detail = (await client.get("/api/v1/cases/L-1", headers=sup)).json()
    # hand: counted 15(1) 16(2) 20(3) 21(4) 22(5) → deadline Tue 09-22
    assert (detail["ladder"]["stage"], detail["ladder"]["deadline"]) == ("blue", "2026-09-22")


async def test_withdrawn_case_stops_the_ladder(
    client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    sup = await bearer(engine, Role.SUPERVISOR)
    row = case("W-1", accepted_at="2026-09-14 09:00", legal_days=2, promised_days=None)
    await client.post("/api/v1/cases", headers=sup, json={"cases": [row]})
    await ladder.run_once(engine, D(2026, 9, 15), CAL)
    await client.post("/api/v1/cases", headers=sup, json={"cases": [{**row, "status": "撤件"}]})
    await ladder.run_once(engine, D(2026, 9, 16), CAL)
    assert (await ladder.run_once(engine, D(2026, 9, 30), CAL)).cases == 0
    detail = (await client.get("/api/v1/cases/W-1", headers=sup)).json()
    assert detail["ladder"]["stage"] is None and detail["status"] == "withdrawn"
    assert [s["stage"] for s in detail["steps"]] == ["blue", "yellow_light"]


async def test_next_year_needs_the_site_calendar(
    client: httpx.AsyncClient, engine: AsyncEngine, context: CaseContext, tmp_path: Path
) -> None:
    # accepted Mon 2026-12-28 with 5 working days: the deadline lies in 2027, which
    # chinese-calendar 1.11 does not know
    record = CaseRecord.from_input(
        validate_row(case("Y-1", accepted_at="2026-12-28 09:00", legal_days=5, promised_days=None)),
        context.masker,
    )
    await upsert(engine, [(0, record)], source=Source.API, received_at=utc_now())
    run = await ladder.run_once(engine, D(2027, 1, 4), CAL)
    assert "Y-1" in run.failed and "2027" in run.failed["Y-1"]
    assert "节假日安排未知" in run.failed["Y-1"]

    site = tmp_path / "calendar.yaml"
    site.write_text(
        "source: test\nyears: [2027]\nholidays:\n  - name: 元旦\n    date: 2027-01-01\n",
        encoding="utf-8",
    )
    calendar = ladder.calendar_from(site)
    run = await ladder.run_once(engine, D(2027, 1, 4), calendar)
    assert run.failed == {} and run.steps_recorded == 2
    sup = await bearer(engine, Role.SUPERVISOR)
    # the API computes with its own context's calendar; the stored stage is the job's
    detail = (await client.get("/api/v1/cases/Y-1", headers=sup)).json()
    # hand: 12-29(1) 30(2) 31(3), 01-01 元旦, weekend, 01-04(4) → yellow light, deadline 01-05
    assert (detail["ladder"]["stage"], detail["ladder"]["deadline"]) == (
        "yellow_light",
        "2027-01-05",
    )


async def test_another_process_holding_a_share_makes_the_run_skip_its_halls(
    client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    if engine.dialect.name != "postgresql":
        pytest.skip("SQLite serves one aggregator process; the lock is PostgreSQL's")
    sup = await bearer(engine, Role.SUPERVISOR)
    await client.post("/api/v1/cases", headers=sup, json={"cases": [case("K-1")]})
    hall = case("K-1")["hall"]
    async with engine.connect() as other:
        # the share of halls K-1's hall falls in, as PostgreSQL hashes it
        share = await other.scalar(
            text("SELECT (hashtext(:h) & 2147483647) % :n"), {"h": hall, "n": ladder.SHARES}
        )
        key = {"c": ladder.LOCK_CLASS, "s": share}
        assert await other.scalar(text("SELECT pg_try_advisory_lock(:c, :s)"), key)
        held = await ladder.run_once(engine, D(2026, 9, 21), CAL)
        assert held.skipped and held.cases == 0
        assert held.skipped_shares == {share}
        assert held.done_shares == set(range(ladder.SHARES)) - {share}
        await other.execute(text("SELECT pg_advisory_unlock(:c, :s)"), key)
    free = await ladder.run_once(engine, D(2026, 9, 21), CAL)
    assert not free.skipped and free.cases == 1


def test_schedule_runs_every_interval_and_just_after_midnight() -> None:
    def at(h: int, m: int, s: int = 0) -> dt.datetime:
        return dt.datetime(2026, 10, 9, h, m, s, tzinfo=BUSINESS_TZ)

    assert ladder.seconds_to_next_run(at(10, 0), 120) == 120
    assert ladder.seconds_to_next_run(at(23, 59), 120) == 90  # 60 s to 00:00, then 30
    assert ladder.seconds_to_next_run(at(23, 59, 59), 600) == 31
    # the business day is Beijing's even when the host clock is UTC
    utc = dt.datetime(2026, 10, 9, 15, 59, tzinfo=dt.UTC)  # 23:59 in Beijing
    assert ladder.seconds_to_next_run(utc, 120) == 90


async def test_run_forever_records_the_steps_of_a_new_case(
    client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    sup = await bearer(engine, Role.SUPERVISOR)
    await client.post("/api/v1/cases", headers=sup, json={"cases": [case("R-1")]})
    job = asyncio.create_task(ladder.run_forever(engine, CAL, every_s=1))
    try:
        for _ in range(100):
            detail = (await client.get("/api/v1/cases/R-1", headers=sup)).json()
            if detail["steps"] and detail["ladder"]["source"] == "job":
                break
            await asyncio.sleep(0.1)
    finally:
        job.cancel()
        with pytest.raises(asyncio.CancelledError):
            await job
    # 09-18 + 5 working days was 09-24; by now (after 2026-10) the letter is long due
    assert detail["ladder"]["source"] == "job"
    assert detail["steps"][-1]["stage"] == "supervision_letter"


async def test_ladder_command_runs_the_job_for_a_given_day(
    client: httpx.AsyncClient, engine: AsyncEngine, database_url: str, tmp_path: Path
) -> None:
    sup = await bearer(engine, Role.SUPERVISOR)
    await client.post("/api/v1/cases", headers=sup, json={"cases": [case("C-1")]})
    cfg = tmp_path / "central.yaml"
    cfg.write_text(
        f"database_url: {database_url}\ndata_dir: {tmp_path / 'data'}\n"
        "rules:\n  ladder:\n    yellow_light: -2\n",
        encoding="utf-8",
    )
    cli = [str(Path(sys.executable).parent / "hallwatch-central"), "cases", "ladder"]
    # accepted 09-18 with 5 days: deadline 09-24; two working days before it is 09-22
    out = await asyncio.to_thread(
        subprocess.run,
        [*cli, "--today", "2026-09-22", "-c", str(cfg)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert "2026-09-22: 1 cases looked at, 2 steps recorded" in out.stdout
    detail = (await client.get("/api/v1/cases/C-1", headers=sup)).json()
    assert [(s["stage"], s["on_date"]) for s in detail["steps"]] == [
        ("blue", "2026-09-18"),
        ("yellow_light", "2026-09-22"),
    ]
    bad = await asyncio.to_thread(
        subprocess.run,
        [*cli, "--today", "22.09.2026", "-c", str(cfg)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert bad.returncode == 2
