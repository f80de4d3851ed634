"""Events partitioned by month on PostgreSQL: the migration converts a stored table, an event in
a month without a partition is kept (DEFAULT partition) and moved when its month is made, and
each (gateway, seq) stays stored once across months: a resend with the same content changes
nothing, with other content (even a time in another month) is caught."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from sqlalchemy import inspect, text
from sqlalchemy.ext.asyncio import AsyncEngine

from central.records import event_archive
from central.spine.ingest import Ingestor
from central.spine.registry import register
from central.store import partitions
from central.store.db import make_engine
from central.store.migrate import upgrade
from tests.central.spine.test_ingest import alarms, alarms_kinds, count, message, poisoned
from tests.support.databases import AT_HEAD, scratch_database

pytestmark = pytest.mark.postgres

BEFORE = "rollups_evaluated_folded"  # the revision before events were partitioned
UTC = dt.UTC


def _at(year: int, month: int, day: int = 10) -> dt.datetime:
    return dt.datetime(year, month, day, 2, 3, 4, tzinfo=UTC)


@pytest.fixture
def empty_url(tmp_path: Path) -> Iterator[str]:
    with scratch_database("postgresql", tmp_path, None) as url:
        yield url


@pytest.fixture
def head_url(tmp_path: Path) -> Iterator[str]:
    with scratch_database("postgresql", tmp_path, AT_HEAD) as url:
        yield url


@pytest.fixture
async def engine(head_url: str) -> AsyncIterator[AsyncEngine]:
    eng = make_engine(head_url)
    await register(eng, "H1", "gw1")
    yield eng
    await eng.dispose()


async def rows_in(engine: AsyncEngine, partition: str) -> int:
    async with engine.connect() as conn:
        found = await conn.execute(text(f"SELECT count(*) FROM {partitions.SCHEMA}.{partition}"))
        return int(found.scalar_one())


async def months(engine: AsyncEngine) -> dict[str, bool]:
    async with engine.connect() as conn:
        return {p.name: p.attached for p in await partitions.list_partitions(conn)}


async def test_migration_moves_three_months_of_events_into_month_partitions(
    empty_url: str,
) -> None:
    engine = make_engine(empty_url)
    try:
        await upgrade(engine, BEFORE)
        await register(engine, "H1", "gw1")
        ingestor = Ingestor(engine)
        for first, month in ((1, 9), (4, 10), (7, 11)):  # three events in each month
            seqs = range(first, first + 3)
            (ack,) = await ingestor.ingest([message(seqs, utc=_at(2026, month))])
            assert ack.committed_through == first + 2
        await upgrade(engine)
        assert await months(engine) == {
            "events_2026_09": True,
            "events_2026_10": True,
            "events_2026_11": True,
            "events_default": True,
        }
        for name in ("events_2026_09", "events_2026_10", "events_2026_11"):
            assert await rows_in(engine, name) == 3
        assert await rows_in(engine, "events_default") == 0 and await count(engine) == 9
        async with engine.connect() as conn:
            key = await conn.run_sync(lambda s: inspect(s).get_pk_constraint("events"))
        assert key["constrained_columns"] == ["gateway_id", "seq", "utc"]
        # the stored events answer for their seqs as before: resent, nothing changes
        ingestor = Ingestor(engine)
        (ack,) = await ingestor.ingest([message(range(3, 6), utc=_at(2026, 10))])
        assert ack.committed_through == 9 and await count(engine) == 9
        assert alarms_kinds(await alarms(engine, "gw1")) == {"seq_conflict": 1}  # seq 3 is Sep's
    finally:
        await engine.dispose()


async def test_an_event_without_its_month_is_kept_then_moved_when_the_month_is_made(
    engine: AsyncEngine,
) -> None:
    ingestor = Ingestor(engine)
    far = _at(2031, 5)
    (ack,) = await ingestor.ingest([message(range(1, 4), utc=far)])
    assert ack.committed_through == 3
    assert await rows_in(engine, "events_default") == 3
    made = await partitions.ensure_ahead(engine, far.date(), ahead=1)
    assert made == ["events_2031_05", "events_2031_06"]
    assert await partitions.ensure_ahead(engine, far.date(), ahead=1) == []  # made once
    assert await rows_in(engine, "events_default") == 0
    assert await rows_in(engine, "events_2031_05") == 3
    (ack,) = await ingestor.ingest([message(range(1, 4), utc=far)])
    assert ack.committed_through == 3 and await count(engine) == 3
    assert await alarms(engine, "gw1") == {}


async def test_seq_resent_across_months_is_stored_once_and_other_content_is_caught(
    engine: AsyncEngine,
) -> None:
    await partitions.ensure_ahead(engine, dt.date(2030, 1, 1), ahead=1)
    ingestor = Ingestor(engine)
    january, february = _at(2030, 1, 31), _at(2030, 2, 1)
    spanning = [message([1, 2], utc=january), message([3, 4], utc=february)]
    (ack,) = await ingestor.ingest(spanning)  # one ack per gateway and group
    assert ack.committed_through == 4
    assert await rows_in(engine, "events_2030_01") == 2
    assert await rows_in(engine, "events_2030_02") == 2
    (ack,) = await ingestor.ingest([message([1, 2], utc=january)])
    assert ack.committed_through == 4 and await count(engine) == 4
    assert await alarms(engine, "gw1") == {}
    # seq 2 again, its time in another month (the partition key differs, so the primary
    # key alone would not see it): caught as other content, not stored twice
    moved = poisoned(message([1, 2], utc=january), 1, ("utc",), "2030-02-05T00:00:00Z")
    (ack,) = await ingestor.ingest([moved])
    assert ack.committed_through == 4 and await count(engine) == 4
    assert alarms_kinds(await alarms(engine, "gw1")) == {"seq_conflict": 1}
    # and into a month without a partition (the DEFAULT one): caught too
    far = poisoned(message([3, 4], utc=february), 0, ("utc",), "2044-01-01T00:00:00Z")
    await ingestor.ingest([far])
    assert await count(engine) == 4 and await rows_in(engine, "events_default") == 0


async def test_the_daily_pass_makes_months_ahead_and_archives_past_the_policy(
    engine: AsyncEngine, tmp_path: Path
) -> None:
    await partitions.ensure_ahead(engine, dt.date(2031, 5, 1), ahead=1)
    ingestor = Ingestor(engine)
    await ingestor.ingest([message([1, 2], utc=_at(2031, 5)), message([3], utc=_at(2031, 6))])
    # July 15th keeping one month before the current one: May goes, June stays
    done = await event_archive.maintain(engine, dt.date(2031, 7, 15), 1, tmp_path)
    assert [(a.partition, a.rows) for a in done] == [("events_2031_05", 2)]
    assert await months(engine) == {
        "events_2031_06": True,
        "events_2031_07": True,
        "events_2031_08": True,
        "events_2031_09": True,
        "events_default": True,
    }
    assert await count(engine) == 1
    assert (tmp_path / "events_2031_05.copy.gz").exists()


def test_months_ahead_names_and_the_retention_cutoff_cross_years() -> None:
    assert partitions.months_ahead(dt.date(2026, 11, 30), 2) == [
        dt.date(2026, 11, 1),
        dt.date(2026, 12, 1),
        dt.date(2027, 1, 1),
    ]
    assert event_archive.retention_cutoff(dt.date(2027, 1, 15), 2) == dt.date(2026, 11, 1)
    assert partitions.partition_name("events", dt.date(2027, 1, 1)) == "events_2027_01"
    assert partitions.month_of_name("events", "events_2027_01") == dt.date(2027, 1, 1)
    assert partitions.month_of_name("events", "events_default") is None
