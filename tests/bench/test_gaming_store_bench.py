"""Gaming detection through the store: one busy hall-week of the detector's simulator written
into the tables correlation fills, then the time to load its facts and to run the job over it
(the real detector, no baseline weeks), on SQLite and PostgreSQL. Invitations are not written
(no evaluator.invite events), so the timing patterns see no delays; the figure is the load.

Run: .venv/bin/pytest -m bench -s tests/bench/test_gaming_store_bench.py
"""

from __future__ import annotations

import datetime as dt
import time
from typing import Any

import pytest
from sqlalchemy import insert

from central.config import AnomaliesConfig
from central.gaming import facts_store, job
from central.gaming.model import Facts, Pattern
from central.store.db import make_engine
from central.store.migrate import upgrade
from central.store.schema import cases
from central.store.schema_correlation import (
    correlation_days,
    correlation_heads,
    correlation_results,
    service_sessions,
)
from tests.bench.figures import OUTPUT, record_ms
from tests.central.gaming.hallweek import BUSY, HallSpec, Seed, hall_week

pytestmark = pytest.mark.bench
MONDAY = dt.date(2026, 11, 23)


def _rows(facts: Facts, now: dt.datetime) -> dict[Any, list[dict[str, Any]]]:
    results = [
        {
            "gateway_id": p.gateway_id, "seq": p.seq, "version": 1, "supersedes": None,
            "hall_id": p.hall_id, "business_day": p.business_day, "window": p.window,
            "addr": p.window, "dev_seq": 0, "key": p.key, "evaluated_at": p.at,
            "time_source": "synced", "session_id": p.session_id, "ticket": None,
            "staff": p.staff, "case_nos": list(p.case_nos), "confidence": 1.0,
            "flags": list(p.flags), "counted": p.counted,
            "basis": "invitation" if p.invited else "none", "citizen": p.citizen,
            "computed_at": now, "digest": "0" * 64,
        }
        for p in facts.presses
    ]  # fmt: skip
    heads = [
        {k: r[k] for k in ("gateway_id", "seq", "version", "hall_id", "business_day")}
        for r in results
    ]
    sessions: list[dict[str, Any]] = [
        {
            "session_id": s.session_id, "hall_id": s.hall_id, "business_day": s.business_day,
            "ticket": s.session_id[-8:], "service": s.service, "window": s.window,
            "staff": s.staff, "outcome": "finished", "called_at": s.called_at,
            "started_at": s.started_at, "ended_at": s.ended_at, "next_call_at": s.next_call_at,
            "machine_times": {}, "recalls": 0, "case_nos": list(s.case_nos),
        }
        for s in facts.sessions
    ]  # fmt: skip
    case_rows = [
        {
            "case_no": c.case_no, "revision": 1, "item_code": c.item_code,
            "item_name": c.item_code, "department": c.department, "hall_id": c.hall_id,
            "window": c.window, "staff": c.staff, "accepted_at": c.accepted_at,
            "legal_days": c.legal_days, "promised_days": c.promised_days,
            "completed_at": c.completed_at, "status": c.status,
            "applicant_digest": c.applicant_digest, "received_at": now, "source": "api",
        }
        for c in {c.case_no: c for c in facts.cases}.values()
    ]  # fmt: skip
    days = [
        {
            "hall_id": facts.hall_id, "business_day": d, "run_at": now, "sessions": 0,
            "evaluations": 0, "new_versions": 0,
        }
        for d in sorted({p.business_day for p in facts.presses})
    ]  # fmt: skip
    return {
        correlation_results: results,
        correlation_heads: heads,
        service_sessions: sessions,
        cases: case_rows,
        correlation_days: days,
    }


async def test_a_busy_hall_week_loads_and_is_detected_through_the_store(
    database_url: str,
) -> None:
    store = "postgresql" if database_url.startswith("postgresql") else "sqlite"
    spec = HallSpec("B0", *BUSY)
    facts = hall_week(
        spec, MONDAY, seed=7, seeds=[Seed(Pattern.DISTRIBUTION_SHIFT, 3, 0.9, "good")]
    )
    engine = make_engine(database_url)
    await upgrade(engine)
    now = dt.datetime.now(dt.UTC)
    async with engine.begin() as conn:
        for table, rows in _rows(facts, now).items():
            for i in range(0, len(rows), 500):
                await conn.execute(insert(table), rows[i : i + 500])
    results = OUTPUT / "bench-results.json"
    try:
        t0 = time.perf_counter()
        async with engine.connect() as conn:
            loaded = await facts_store.load(conn, "B0", facts.period)
        load_s = time.perf_counter() - t0
        assert len(loaded.presses) == len(facts.presses)
        assert len(loaded.sessions) == len(facts.sessions)
        t0 = time.perf_counter()
        report = await job.run_once(engine, [facts.period], cfg=AnomaliesConfig(baseline_weeks=0))
        run_s = time.perf_counter() - t0
        print(
            f"\n{store}: a busy hall-week ({len(facts.presses)} presses, {len(facts.sessions)} "
            f"sessions, {len(loaded.cases)} cases) loads in {load_s * 1000:.0f} ms; the job "
            f"(load, detect, open) in {run_s * 1000:.0f} ms, {report.anomalies} anomalies, "
            f"{report.opened} cases opened over {len(report.detected)} hall-weeks {report.marked}"
        )
        record_ms(results, f"gaming facts load, busy hall-week ({store})", load_s)
        record_ms(results, f"gaming job, busy hall-week ({store})", run_s)
    finally:
        await engine.dispose()
