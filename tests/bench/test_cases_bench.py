"""Case feed and ladder job figures on both databases (``./run.sh bench``, or
``pytest -m bench tests/bench/test_cases_bench.py -s``).

- a 5,000-case batch through POST /api/v1/cases: first as new cases, then the same again
  (all unchanged), then every case revised;
- the ladder job over 20,000 open cases accepted over the previous 60 days: the nightly run
  (every case moves to a new day) and the re-run of the same day (nothing to do), as a full
  scan and as the every-few-minutes run does it (``since``, through indexes);
- the longest the event loop was held during the nightly run (the ingest loop shares it).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from central.api.app import create_app
from central.cases import ladder
from central.cases.context import CaseContext
from central.cases.masking import ApplicantMasker, load_or_create_salt
from central.cases.model import validate_row
from central.cases.store import CaseRecord, Source, upsert
from central.rules.timelimit import LadderConfig
from central.rules.workdays import BUSINESS_TZ, WorkCalendar
from central.security.tokens import Role, create_token
from central.store.db import make_engine
from central.store.migrate import upgrade
from hallkit.clock import utc_now

pytestmark = pytest.mark.bench

BATCH = 5000
OPEN_CASES = 20_000


def row(i: int, **over: Any) -> dict[str, Any]:
    accepted = dt.datetime(2026, 8, 1, 9, tzinfo=BUSINESS_TZ) + dt.timedelta(minutes=17 * i)
    return {
        "case_no": f"B-{i:06d}",
        "item_code": f"3301-{i % 50:03d}",
        "item_name": "食品经营许可",
        "department": f"部门{i % 12}",
        "hall": f"H{i % 20}",
        "window": i % 30 + 1,
        "staff": f"{i % 400:06d}",
        "accepted_at": accepted.isoformat(),
        "legal_days": 20,
        "promised_days": 5 + i % 10,
        "status": "在办",
        "applicant": {"name": "王小明", "phone": "13812345678"},
        **over,
    }


async def _monitor(stop: asyncio.Event, worst: list[float]) -> None:
    while not stop.is_set():
        t = time.perf_counter()
        await asyncio.sleep(0.01)
        worst.append(time.perf_counter() - t - 0.01)


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
async def test_case_feed_and_ladder_figures(
    kind: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    if kind == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path / 'central.db'}"
        drop = None
    else:
        from tests.support.databases import create_pg_database

        name, url = await asyncio.to_thread(create_pg_database)
        drop = name
    engine = make_engine(url)
    try:
        await upgrade(engine)
        masker = ApplicantMasker(load_or_create_salt(tmp_path / "data"))
        app = create_app(engine)
        app.state.cases = CaseContext(masker, WorkCalendar(), LadderConfig())
        headers = {"Authorization": f"Bearer {await create_token(engine, Role.SUPERVISOR)}"}
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://central", timeout=600
        ) as client:
            rows = [row(i) for i in range(BATCH)]
            for label, batch in (
                ("new", rows),
                ("unchanged", rows),
                ("revised", [{**r, "window": 99} for r in rows]),
            ):
                t = time.perf_counter()
                out = (
                    await client.post("/api/v1/cases", headers=headers, json={"cases": batch})
                ).json()
                took = time.perf_counter() - t
                assert out["rejected"] == 0
                print(
                    f"\n[{kind}] POST {BATCH} cases ({label}): {took:.2f} s, "
                    f"{BATCH / took:,.0f} cases/s"
                )

        # 20,000 open cases over 60 days, stored directly (the feed is measured above)
        base = dt.datetime(2026, 8, 1, 9, tzinfo=BUSINESS_TZ)
        records = []
        for i in range(OPEN_CASES):
            accepted = base + dt.timedelta(minutes=4 * i)
            case = validate_row(row(BATCH + i, accepted_at=accepted.isoformat()))
            records.append((i, CaseRecord.from_input(case, masker)))
        for i in range(0, OPEN_CASES, BATCH):
            await upsert(engine, records[i : i + BATCH], source=Source.API, received_at=utc_now())
        cal = WorkCalendar()
        for label, day, since in (
            ("first", dt.date(2026, 9, 29), None),
            ("nightly", dt.date(2026, 9, 30), None),
            ("same day again, full scan", dt.date(2026, 9, 30), None),
            ("same day again, since the last run", dt.date(2026, 9, 30), utc_now()),
        ):
            stop = asyncio.Event()
            worst: list[float] = []
            monitor = asyncio.create_task(_monitor(stop, worst))
            t = time.perf_counter()
            run = await ladder.run_once(engine, day, cal, since=since)
            took = time.perf_counter() - t
            stop.set()
            await monitor
            print(
                f"[{kind}] ladder {label} {day}: {run.cases:,} cases, "
                f"{run.steps_recorded:,} steps in {took:.2f} s; event loop held at most "
                f"{max(worst, default=0) * 1000:.0f} ms"
            )
    finally:
        await engine.dispose()
        if drop is not None:
            from tests.support.databases import drop_pg_database

            await asyncio.to_thread(drop_pg_database, drop)
