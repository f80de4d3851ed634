"""Dashboards over a province's year from the daily rollups, on PostgreSQL (``./run.sh bench``,
or ``pytest -m bench tests/bench/test_year_dashboard_bench.py -s``). Figures are printed and
written to test-output/bench-year-dashboard.json; nothing is timed against a limit.

``HALLWATCH_BENCH_HALLS`` (2,000) halls × ``HALLWATCH_BENCH_DAYS`` (365) days of rollup rows
generated in SQL at a realistic size (per hall-day: the hall, 4 departments, 8 windows, 10 staff
members; 评价率 rows alike; the monthly rows summed from them as the job keeps them), plus the
day's live data the answers also read: 50 open cases per hall with their ladder rows, one online
gateway per hall, and the day's evaluator presses (95 per hall, as in 190k sessions of a day).
Timed (best of ``HALLWATCH_BENCH_REPEAT``, 3): the overview (today), the indicators API's
computation by hall, by department and by staff over a day, a month and the year, and the
monthly 通报 of this month (to date) and the last.

Generating the data takes minutes: ``HALLWATCH_BENCH_KEEP_DB=<name>`` keeps the database under
that name and a later run reuses it (migrated to head; only what is missing is generated).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import os
import time
from pathlib import Path

import asyncpg
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from central.api.overview import _build
from central.reporting import bulletin, rollup_query
from central.reporting.rollups import VALUE_COLUMNS
from central.rules.indicators import DateRange, Grouping
from central.rules.workdays import BUSINESS_TZ, WorkCalendar
from central.security.tokens import Principal, Role
from central.store.db import make_engine
from central.store.migrate import upgrade
from central.store.schema_rollups import BAD_KEYS, PAIRS
from tests.support.databases import create_pg_database, drop_pg_database, pg_url

pytestmark = pytest.mark.bench

HALLS = int(os.environ.get("HALLWATCH_BENCH_HALLS", "2000"))
DAYS = int(os.environ.get("HALLWATCH_BENCH_DAYS", "365"))
TODAY = dt.date(2026, 12, 4)  # a Friday
# each answer timed this many times, the best kept (the machine is shared)
REPEAT = int(os.environ.get("HALLWATCH_BENCH_REPEAT", "3"))
RESULTS = Path(__file__).resolve().parents[2] / "test-output" / "bench-year-dashboard.json"
GROUPS = """
    SELECT 'hall' AS grouping, '' AS department, '' AS "window", '' AS staff
    UNION ALL SELECT 'department', 'dep' || d, '', '' FROM generate_series(0, 3) d
    UNION ALL SELECT 'window', 'dep' || (w % 4), w::text, '' FROM generate_series(1, 8) w
    UNION ALL SELECT 'staff', '', '', lpad(s::text, 4, '0') FROM generate_series(1, 10) s
"""
# a figure of a plausible size for each column: 95 evaluations, 40 cases, 480 minutes …
VALUE = {
    "on_time": ("18 + (random() * 2)::int", "20"),
    "handling": ("(random() * 60)::int", "20"),
    "promise": ("(random() * 50)::int", "200"),
    "speedup": ("(random() * 80)::int", "200"),
    "early": ("(random() * 10)::int", "20"),
    "same_day": ("(random() * 20)::int", "40"),
    "satisfied": ("90 + (random() * 5)::int", "95"),
    "wait": ("random() * 1500", "95"),
    "no_show": ("(random() * 5)::int", "100"),
    "staffed": ("random() * 3000", "3360"),
    "covered": ("3360", "3360"),
}


def _rollup_sql() -> str:
    columns = [f"{p}_{side}" for p in PAIRS for side in "nd"]
    values = [VALUE[p][i] for p in PAIRS for i in (0, 1)]
    bad = [f"bad_{k}" for k in BAD_KEYS]
    return (
        'INSERT INTO indicator_rollups (hall_id, business_day, grouping, department, "window", '
        f"staff, {', '.join(columns)}, overdue_completed, {', '.join(bad)}, evaluated) "
        "SELECT 'H' || h, CAST(:first AS date) + d, g.grouping, g.department, g.\"window\", "
        f"g.staff, "
        f"{', '.join(values)}, (random() * 2)::int, "
        f"{', '.join('(random() * 2)::int' for _ in bad)}, {SAME_DAY_EVALUATED} "
        f"FROM generate_series(0, :halls - 1) h, generate_series(0, :days - 1) d, ({GROUPS}) g"
    )


# 评价率: most cases are evaluated on their acceptance day (folded into the rollup rows); in
# one hall of ten some are evaluated the next day (rows of rollup_evaluated)
SAME_DAY_EVALUATED = "(random() * 30)::int"
EVALUATED = (
    'INSERT INTO rollup_evaluated (hall_id, accepted_day, grouping, department, "window", staff, '
    "before_day, after_day, cases) SELECT 'H' || h, CAST(:first AS date) + d, g.grouping, "
    'g.department, g."window", g.staff, NULL, CAST(:first AS date) + d + 1, '
    "(random() * 3)::int FROM generate_series(0, :halls - 1, 10) h, "
    f"generate_series(0, :days - 1) d, ({GROUPS}) g"
)
# a database kept from before the fold: its same-day rows become the rollup rows' column
FOLD = (
    f"UPDATE indicator_rollups SET evaluated = {SAME_DAY_EVALUATED}",
    "TRUNCATE rollup_evaluated, indicator_rollups_monthly, rollup_evaluated_monthly",
)
# the windows each hall saw per month, with the days (as the job keeps them)
WINDOW_DAYS = (
    'INSERT INTO rollup_window_days (hall_id, month, "window", department, days) '
    "SELECT hall_id, date_trunc('month', business_day)::date AS m, \"window\", department, "
    "sum(1 << (extract(day FROM business_day)::int - 1)) FROM indicator_rollups "
    "WHERE grouping = 'window' GROUP BY hall_id, m, \"window\", department"
)
GATEWAYS = (
    "INSERT INTO gateways (gateway_id, hall_id, registered_at, committed_through, last_batch_at, "
    "online) SELECT 'gw' || h, 'H' || h, now(), 0, now(), true "
    "FROM generate_series(0, :halls - 1) h"
)
CASES = (
    'INSERT INTO cases (case_no, revision, item_code, item_name, department, hall_id, "window", '
    "staff, accepted_at, legal_days, promised_days, status, received_at, source) "
    "SELECT 'C' || h || '-' || c, 1, 'ITEM', '事项', 'dep' || (c % 4), 'H' || h, 1 + c % 8, "
    "lpad((1 + c % 10)::text, 4, '0'), "
    "CAST(:today_start AS timestamptz) - make_interval(days => c), 10, 5, "
    "'running', now(), 'api' FROM generate_series(0, :halls - 1) h, generate_series(0, 49) c"
)
LADDER = (
    "INSERT INTO case_ladder (case_no, revision, rules_digest, as_of, stage, deadline, days_over, "
    "overdue, settled, updated_at) SELECT case_no, 1, 'bench', CAST(:today AS date), 'blue', "
    "(accepted_at + interval '14 days')::date, 0, false, false, now() FROM cases"
)
PRESSES = (
    "INSERT INTO events (gateway_id, seq, hall_id, kind, utc, mono_ns, boot, synced, body, "
    "received_at) SELECT 'gw' || h, s, 'H' || h, 'evaluator.key', "
    "CAST(:today_start AS timestamptz) + interval '9 hours' + make_interval(secs => s * 200), "
    "s, 'b', true, "
    "json_build_object('addr', 1 + s % 8, 'window', 1 + s % 8, 'key', 1 + s % 6, "
    "'dev_seq', s, 'marks', json_build_array()), now() "
    "FROM generate_series(0, :halls - 1) h, generate_series(1, 95) s"
)


def _monthly_sql() -> str:
    sums = ", ".join(f"sum({c})" for c in VALUE_COLUMNS)
    return (
        'INSERT INTO indicator_rollups_monthly (hall_id, month, grouping, department, "window", '
        f"staff, {', '.join(VALUE_COLUMNS)}) SELECT hall_id, "
        "date_trunc('month', business_day)::date AS m, grouping, department, \"window\", staff, "
        f'{sums} FROM indicator_rollups GROUP BY hall_id, m, grouping, department, "window", staff'
    )


EVALUATED_MONTHLY = (
    'INSERT INTO rollup_evaluated_monthly (hall_id, month, grouping, department, "window", '
    "staff, before_day, after_day, cases) SELECT hall_id, date_trunc('month', accepted_day)::date "
    'AS m, grouping, department, "window", staff, NULL, '
    "(date_trunc('month', accepted_day) + interval '1 month - 1 day')::date AS e, sum(cases) "
    'FROM rollup_evaluated GROUP BY hall_id, m, e, grouping, department, "window", staff'
)


async def _prepare(engine: AsyncEngine, skip: tuple[str, ...] = ()) -> dict[str, float]:
    await upgrade(engine)
    async with engine.connect() as conn:
        filled = (await conn.execute(text("SELECT count(*) FROM gateways"))).scalar()
    if filled:  # a kept database (HALLWATCH_BENCH_KEEP_DB) already holds the data
        skip = (*skip, "rollups", "window_days", "gateways", "cases", "ladder", "presses")
        async with engine.begin() as conn:
            unfolded = await conn.execute(
                text("SELECT 1 FROM rollup_evaluated WHERE after_day = accepted_day LIMIT 1")
            )
            if unfolded.first() is None:
                skip = (*skip, "evaluated", "monthly", "evaluated_monthly")
            else:
                for sql in FOLD:
                    await conn.execute(text(sql))
    first = TODAY - dt.timedelta(days=DAYS - 1)
    start = dt.datetime.combine(TODAY, dt.time(0), tzinfo=dt.timezone(dt.timedelta(hours=8)))
    params = {"halls": HALLS, "days": DAYS, "first": first, "today": TODAY, "today_start": start}
    took = {}
    for name, sql in (
        ("rollups", _rollup_sql()),
        ("evaluated", EVALUATED),
        ("monthly", _monthly_sql()),
        ("evaluated_monthly", EVALUATED_MONTHLY),
        ("window_days", WINDOW_DAYS),
        ("gateways", GATEWAYS),
        ("cases", CASES),
        ("ladder", LADDER),
        ("presses", PRESSES),
    ):
        if name in skip:
            continue
        t0 = time.perf_counter()
        async with engine.begin() as conn:
            await conn.execute(text(sql), params)
        took[name] = time.perf_counter() - t0
    async with engine.connect() as conn:
        await conn.execution_options(isolation_level="AUTOCOMMIT")
        await conn.execute(text("VACUUM ANALYZE"))
    return took


async def _timed(work: object) -> float:
    """The best of ``REPEAT`` runs (the machine is shared)."""
    best = float("inf")
    for _ in range(REPEAT):
        t0 = time.perf_counter()
        await work()  # type: ignore[operator]
        best = min(best, time.perf_counter() - t0)
    return best


async def _bench(url: str) -> dict[str, object]:
    engine = make_engine(url)
    calendar = WorkCalendar()
    try:
        prepared = await _prepare(engine)
        async with engine.connect() as conn:
            rows = (await conn.execute(text("SELECT count(*) FROM indicator_rollups"))).scalar()
        spans = {
            "day": DateRange(TODAY, TODAY),
            "month": DateRange(TODAY.replace(day=1), TODAY),
            "year": DateRange(TODAY - dt.timedelta(days=DAYS - 1), TODAY),
        }
        figures: dict[str, float] = {}
        supervisor = Principal(Role.SUPERVISOR)
        figures["overview_today"] = await _timed(lambda: _build(engine, supervisor, TODAY))
        for span_name, span in spans.items():
            for by in (Grouping.HALL, Grouping.DEPARTMENT, Grouping.STAFF):

                async def query(span: DateRange = span, by: Grouping = by) -> None:
                    async with engine.connect() as conn:
                        await rollup_query.indicators(conn, span, by, calendar)

                figures[f"indicators_{by.value}_{span_name}"] = await _timed(query)
        now = dt.datetime.combine(TODAY, dt.time(18), tzinfo=BUSINESS_TZ)
        for month in (f"{TODAY:%Y-%m}", f"{TODAY.replace(day=1) - dt.timedelta(days=1):%Y-%m}"):

            async def monthly(month: str = month) -> None:
                await bulletin.build(engine, supervisor, month, calendar, now)

            figures[f"bulletin_{month}"] = await _timed(monthly)
        return {
            "halls": HALLS,
            "days": DAYS,
            "rollup_rows": rows,
            "prepare_s": prepared,
            "seconds": figures,
        }
    finally:
        await engine.dispose()


@pytest.mark.timeout(2 * 3600)  # generating ~17 million rollup rows takes minutes
def test_year_dashboard() -> None:
    kept = os.environ.get("HALLWATCH_BENCH_KEEP_DB")
    if kept:
        name, url = kept, pg_url(kept)
        with contextlib.suppress(asyncpg.DuplicateDatabaseError):
            create_pg_database(kept)
    else:
        name, url = create_pg_database()
    try:
        result = asyncio.run(_bench(url))
    finally:
        if not kept:
            drop_pg_database(name)
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2))
    print(f"\n{HALLS} halls × {DAYS} days, {result['rollup_rows']:,} rollup rows (PostgreSQL)")
    for label, seconds in result["seconds"].items():  # type: ignore[attr-defined]
        print(f"  {label:32s} {seconds * 1000:9.1f} ms")
