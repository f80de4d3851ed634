"""hallwatch-central events partitions | archive on PostgreSQL: a correlated hall-day's month
archived to a gzip COPY file whose SHA-256 the manifest holds, its rows gone from the database,
the other months kept, and the rollup-based indicators of the archived day unchanged."""

from __future__ import annotations

import asyncio
import datetime as dt
import gzip
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner

from central.cli import app
from central.correlation.config import CorrelationConfig
from central.correlation.job import run_once
from central.records.event_archive import read_manifest, sha256_of
from central.reporting import rollup_query
from central.rules.indicators import DateRange, Grouping
from central.rules.workdays import BUSINESS_TZ, WorkCalendar
from central.spine.ingest import Ingestor
from central.spine.registry import register
from central.store import partitions
from central.store.db import make_engine
from central.store.schema import events
from tests.central.correlation.conftest import deliver
from tests.central.correlation.hallday import RAPID_S, generate
from tests.central.spine.test_ingest import message
from tests.support.databases import AT_HEAD, scratch_database

pytestmark = pytest.mark.postgres

DAY = dt.date(2026, 10, 20)  # the archived month's hall-day
KEPT = dt.datetime(2026, 11, 3, 2, tzinfo=dt.UTC)  # an event of the month kept
CALENDAR = WorkCalendar()


@pytest.fixture
def url(tmp_path: Path) -> Iterator[str]:
    with scratch_database("postgresql", tmp_path, AT_HEAD) as found:
        yield found


async def _fill(url: str) -> None:
    """One hall-day ingested and correlated (rollups written), one event a month later."""
    engine = make_engine(url)
    try:
        await register(engine, "H1", "gw1")
        await register(engine, "H2", "gw2")
        day = generate(seed=3, windows=1, day=DAY)
        await deliver(engine, day, day.events)
        await Ingestor(engine).ingest([message([1], hall="H2", gateway="gw2", utc=KEPT)])
        evening = dt.datetime.combine(DAY, dt.time(20), tzinfo=BUSINESS_TZ)
        await run_once(engine, cfg=CorrelationConfig(rapid_repeat_s=RAPID_S), now=evening)
        # the months made after the events came (they waited in the DEFAULT partition)
        await partitions.ensure_ahead(engine, DAY, ahead=1)
    finally:
        await engine.dispose()


async def _state(url: str) -> tuple[dict[str, int], Any]:
    """Events per month (by utc) and the day's indicators from the rollups."""
    engine = make_engine(url)
    try:
        async with engine.connect() as conn:
            month = func.to_char(func.timezone("UTC", events.c.utc), "YYYY-MM")
            per_month: dict[str, int] = dict(
                (await conn.execute(select(month, func.count()).group_by(month))).all()
            )
            overview = await rollup_query.indicators(
                conn, DateRange(DAY, DAY), Grouping.HALL, CALENDAR
            )
            return {k: int(v) for k, v in per_month.items()}, overview
    finally:
        await engine.dispose()


def test_archive_writes_verifies_drops_and_the_rollups_still_answer(
    url: str, tmp_path: Path
) -> None:
    asyncio.run(_fill(url))
    config = tmp_path / "central.yaml"
    archive_dir = tmp_path / "archive"
    config.write_text(
        f"database_url: {url}\ndata_dir: {tmp_path / 'data'}\n"
        f"retention:\n  archive_dir: {archive_dir}\n"
    )
    counts, overview = asyncio.run(_state(url))
    assert counts["2026-10"] > 100 and counts["2026-11"] == 1
    assert overview and all(i.staffed_rate.denominator > 0 for i in overview.values())
    runner = CliRunner()

    listed = runner.invoke(app, ["events", "partitions", "-c", str(config)])
    assert listed.exit_code == 0, listed.output
    assert "events_2026_10" in listed.output and "events_2026_11" in listed.output

    dry = runner.invoke(app, ["events", "archive", "--before", "2026-11", "-c", str(config)])
    assert dry.exit_code == 0, dry.output
    assert "events_2026_10" in dry.output and "events_2026_11" not in dry.output
    assert asyncio.run(_state(url))[0] == counts and not archive_dir.exists()

    done = runner.invoke(
        app, ["events", "archive", "--before", "2026-11", "--yes", "-c", str(config)]
    )
    assert done.exit_code == 0, done.output
    (entry,) = read_manifest(archive_dir)
    archived = archive_dir / entry["file"]
    assert entry["month"] == "2026-10" and entry["rows"] == counts["2026-10"]
    assert sha256_of(archived) == entry["sha256"] and entry["sha256"] in done.output
    with gzip.open(archived, "rt", encoding="utf-8") as copy:
        lines = copy.read().splitlines()
    assert len(lines) == counts["2026-10"] and all("\tH1\t" in line for line in lines)

    after, overview_after = asyncio.run(_state(url))
    assert after == {"2026-11": 1}, "the archived month's rows are gone, the next one kept"
    assert overview_after == overview, "the dashboards' rollups answer as before"
    listed = runner.invoke(app, ["events", "partitions", "-c", str(config)])
    assert "events_2026_10" not in listed.output and "events_2026_11" in listed.output
    bad = runner.invoke(app, ["events", "archive", "--before", "2026-13", "-c", str(config)])
    assert bad.exit_code == 2

    verified = runner.invoke(app, ["events", "verify-archive", "-c", str(config)])
    assert verified.exit_code == 0 and "1 archived month(s) match" in verified.output
    tampered = bytearray(archived.read_bytes())
    tampered[-9] ^= 0x01  # one bit of the gzip trailer's CRC
    archived.write_bytes(bytes(tampered))
    verified = runner.invoke(app, ["events", "verify-archive", "-c", str(config)])
    assert verified.exit_code == 1 and "events_2026_10.copy.gz" in verified.output
