"""A migrated central store of each kind for the outbox and feed tests."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from central.store.db import make_engine
from central.store.migrate import upgrade


@pytest.fixture
def database_at_head() -> bool:
    return True  # these tests migrate first: start from the migrated template


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    eng = make_engine(database_url)
    await upgrade(eng)
    try:
        yield eng
    finally:
        await eng.dispose()
