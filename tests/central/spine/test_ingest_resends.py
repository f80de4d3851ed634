"""Resent batches against real SQLite and PostgreSQL: what the store holds is read for a whole
group at once, and nothing of the comparison changes."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from sqlalchemy import event as sqlalchemy_event
from sqlalchemy.ext.asyncio import AsyncEngine

from central.spine.ingest import Ingestor
from central.spine.registry import register
from central.store.db import make_engine
from central.store.migrate import upgrade
from tests.central.spine.test_ingest import alarms, alarms_kinds, count, message, poisoned


@pytest.fixture
def database_at_head() -> bool:
    return True  # every test migrates first: start from the migrated template


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    eng = make_engine(database_url)
    await upgrade(eng)
    for n in range(1, 21):
        await register(eng, f"H{n}", f"gw{n}")
    yield eng
    await eng.dispose()


async def test_resent_windows_are_compared_in_two_statements_for_the_whole_group(
    engine: AsyncEngine,
) -> None:
    """Gateways that resend what is stored cost two look-ups per group, not two per batch; a
    gateway's later batch in the same group still sees what its earlier one stored, and other
    content under a stored seq is still caught."""
    ingestor = Ingestor(engine)
    gateways_ = [("H1", "gw1")] + [(f"H{n}", f"gw{n}") for n in range(2, 21)]
    await ingestor.ingest([message(range(1, 6), hall=h, gateway=g) for h, g in gateways_])
    statements: list[str] = []

    def counted(_conn: object, _cursor: object, sql: str, *_rest: object) -> None:
        statements.append(sql.split()[0].upper())

    sqlalchemy_event.listen(engine.sync_engine, "before_cursor_execute", counted)
    try:
        acks = await ingestor.ingest(
            [message(range(1, 6), hall=h, gateway=g) for h, g in gateways_]
        )
        resent = len(statements)
        statements.clear()
        overlapping = [
            message(range(6, 9), hall="H2", gateway="gw2"),
            message(range(7, 11), hall="H2", gateway="gw2"),  # 7, 8 stored by the one before
            poisoned(message(range(4, 7), hall="H3", gateway="gw3"), 0, ("body", "n"), 99),
        ]
        mixed = {a.gateway: a for a in await ingestor.ingest(overlapping)}
    finally:
        sqlalchemy_event.remove(engine.sync_engine, "before_cursor_execute", counted)
    assert sorted(a.committed_through for a in acks) == [5] * 20
    assert resent <= 7, statements  # lock (2), the two look-ups, the committed seqs, commit
    assert mixed["gw2"].committed_through == 10
    assert mixed["gw3"].committed_through == 6  # seq 4 is kept in quarantine, 5, 6 go on
    assert alarms_kinds(await alarms(engine, "gw3")) == {"seq_conflict": 1}
    assert await count(engine) == 100 + 5 + 1
