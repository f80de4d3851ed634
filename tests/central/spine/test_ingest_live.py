"""A live lane's batches (``hw/v1/H/G/live``) against real SQLite and PostgreSQL: read as
events, stored beyond the gateway's gap until its backlog arrives, and exactly once when two
aggregators hold the gateway's live and drain partitions."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import replace

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from central.spine.ingest import Ingestor
from central.spine.reading import Incoming
from central.spine.registry import register
from central.store.db import make_engine
from central.store.migrate import upgrade
from central.store.schema import events, pending_ranges
from protocols import topics
from tests.central.spine.test_ingest import count, message


@pytest.fixture
def database_at_head() -> bool:
    return True  # every test migrates first: start from the migrated template


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    eng = make_engine(database_url)
    await upgrade(eng)
    await register(eng, "H1", "gw1")
    yield eng
    await eng.dispose()


def live(seqs: range, gateway: str = "gw1") -> Incoming:
    """A live lane's batch: the same envelope on the gateway's live topic."""
    msg = message(seqs, gateway=gateway)
    return replace(msg, topic=topics.topic("H1", gateway, topics.Channel.LIVE))


async def test_a_live_batch_read_before_its_backlog_is_stored_once_and_merged(
    engine: AsyncEngine,
) -> None:
    ingestor = Ingestor(engine)
    (ack,) = await ingestor.ingest([live(range(11, 21)), message(range(1, 11))])  # one group
    assert ack.committed_through == 20
    (ack,) = await ingestor.ingest([live(range(31, 41))])  # beyond a gap: kept, not acked
    assert ack.committed_through == 20
    (ack,) = await ingestor.ingest([message(range(21, 41))])  # the drain, the lane again
    assert ack.committed_through == 40 and await count(engine) == 40
    async with engine.connect() as conn:
        assert (await conn.execute(select(func.count()).select_from(pending_ranges))).scalar() == 0


async def test_two_aggregators_reading_a_gateways_live_and_drain_store_once(
    engine: AsyncEngine,
) -> None:
    """On the cluster a gateway's live and drain partitions may belong to two aggregators:
    their transactions meet on the gateway's row and its (gateway, seq) key."""
    drain, lane = Ingestor(engine), Ingestor(engine)
    for first in range(1, 201, 50):  # the lane runs 50 ahead of the drain, then both resend
        await asyncio.gather(
            drain.ingest([message(range(first, first + 50))]),
            lane.ingest([live(range(first + 50, first + 100))]),
        )
    (ack,) = await drain.ingest([message(range(1, 251))])
    assert ack.committed_through == 250
    async with engine.connect() as conn:
        seqs = (await conn.execute(select(events.c.seq).order_by(events.c.seq))).scalars()
        assert list(seqs) == list(range(1, 251))
