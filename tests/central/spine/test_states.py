"""Gateway states kept in memory and written together, on real SQLite and PostgreSQL."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from central.spine.ingest import Ingestor
from central.spine.reading import Incoming
from central.spine.registry import register
from central.spine.states import StateBook
from central.store.db import make_engine
from central.store.migrate import upgrade
from central.store.schema import gateways, quarantine
from protocols.envelope import GatewayState

BOOT = "ab" * 16
T0 = datetime(2026, 11, 20, 1, 2, 3, tzinfo=UTC)


@pytest.fixture
def database_at_head() -> bool:
    return True  # every test migrates first: start from the migrated template


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    eng = make_engine(database_url)
    await upgrade(eng)
    for n in range(1, 6):
        await register(eng, f"H{n}", f"gw{n}")
    yield eng
    await eng.dispose()


def state(
    gateway: str, hall: str, *, online: bool = True, at: datetime = T0, **health: Any
) -> Incoming:
    doc = {
        "v": 1,
        "hall": hall,
        "gateway": gateway,
        "boot": BOOT,
        "online": online,
        "utc": "2026-11-20T01:02:03Z",
        "synced": True,
        "software": "x",
        "health": health,
    }
    return Incoming(f"hw/v1/{hall}/{gateway}/state", json.dumps(doc).encode(), at)


async def rows(engine: AsyncEngine) -> dict[str, tuple[bool | None, Any, datetime | None]]:
    async with engine.connect() as conn:
        found = await conn.execute(
            select(gateways.c.gateway_id, gateways.c.online, gateways.c.state, gateways.c.state_at)
        )
        return {r.gateway_id: (r.online, r.state, r.state_at) for r in found}


async def quarantined(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        return int((await conn.execute(select(func.count()).select_from(quarantine))).scalar() or 0)


async def test_many_gateways_states_are_written_in_one_go(engine: AsyncEngine) -> None:
    ingestor = Ingestor(engine)
    stored = await ingestor.ingest_states(
        [
            state(f"gw{n}", f"H{n}", online=n % 2 == 1, at=T0 + timedelta(seconds=n))
            for n in (1, 2, 3)
        ]
    )
    assert [s.gateway if s else None for s in stored] == ["gw1", "gw2", "gw3"]
    found = await rows(engine)
    assert [found[f"gw{n}"][0] for n in (1, 2, 3)] == [True, False, True]
    assert found["gw2"][2] == T0 + timedelta(seconds=2)
    assert found["gw2"][1]["gateway"] == "gw2"
    assert found["gw4"][2] is None  # sent nothing


async def test_a_refused_state_is_quarantined_and_the_others_are_written(
    engine: AsyncEngine,
) -> None:
    ingestor = Ingestor(engine)
    stored = await ingestor.ingest_states(
        [
            state("gw1", "H1"),
            state("gw2", "H1"),  # gw2 belongs to H2
            state("gw9", "H9"),  # not registered
            Incoming("hw/v1/H3/gw3/state", b"{not json", T0),
            state("gw4", "H4"),
        ]
    )
    assert [s is not None for s in stored] == [True, False, False, False, True]
    assert await quarantined(engine) == 3
    found = await rows(engine)
    assert found["gw1"][0] is True and found["gw4"][0] is True
    assert found["gw2"][2] is None and found["gw3"][2] is None


async def test_a_state_the_store_cannot_hold_costs_only_its_own_gateway(
    engine: AsyncEngine,
) -> None:
    ingestor = Ingestor(engine)
    odd = state("gw2", "H2", evaluator="a\x00b", n=2**70)
    stored = await ingestor.ingest_states([state("gw1", "H1"), odd, state("gw3", "H3")])
    assert stored[0] is not None and stored[2] is not None
    found = await rows(engine)
    assert found["gw1"][0] is True and found["gw3"][0] is True
    # the odd one is either stored or quarantined, never lost silently nor raised
    assert (stored[1] is None and await quarantined(engine) == 1) or (
        stored[1] is not None and found["gw2"][0] is True
    )


async def test_the_book_keeps_only_the_latest_state_of_each_gateway(engine: AsyncEngine) -> None:
    book = StateBook(Ingestor(engine))
    await book.offer(state("gw1", "H1", online=True, at=T0))
    await book.offer(state("gw2", "H2", online=True, at=T0))
    await book.offer(state("gw1", "H1", online=False, at=T0 + timedelta(seconds=10)))  # its will
    assert book.waiting == 2 and book.replaced == 1
    assert await book.flush() == 2
    assert book.waiting == 0 and await book.flush() == 0
    found = await rows(engine)
    assert found["gw1"][:1] == (False,) and found["gw1"][2] == T0 + timedelta(seconds=10)
    assert found["gw2"][0] is True


async def test_states_not_written_for_a_transient_failure_wait_for_the_next_flush(
    engine: AsyncEngine,
) -> None:
    ingestor = Ingestor(engine)
    book = StateBook(ingestor)
    failing = True
    original = ingestor.ingest_states

    async def flaky(messages: Sequence[Incoming]) -> list[GatewayState | None]:
        if failing:
            raise ConnectionError("database away")
        return await original(messages)

    ingestor.ingest_states = flaky  # type: ignore[method-assign]
    await book.offer(state("gw1", "H1", online=True, at=T0))
    with pytest.raises(ConnectionError):
        await book.flush()
    await book.offer(state("gw2", "H2", online=True, at=T0))
    failing = False
    assert await book.flush() == 2
    found = await rows(engine)
    assert found["gw1"][0] is True and found["gw2"][0] is True
