"""Fixtures for the case tests: a migrated database of each kind, the case context, the API."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from central.api.app import create_app
from central.cases.context import CaseContext
from central.cases.masking import ApplicantMasker, load_or_create_salt
from central.rules.timelimit import LadderConfig
from central.rules.workdays import WorkCalendar
from central.store.db import make_engine
from central.store.migrate import upgrade


@pytest.fixture
def database_at_head() -> bool:
    return True  # these tests migrate first: start from the migrated template


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    eng = make_engine(database_url)
    await upgrade(eng)
    yield eng
    await eng.dispose()


@pytest.fixture
def context(tmp_path: Path) -> CaseContext:
    return CaseContext(
        ApplicantMasker(load_or_create_salt(tmp_path / "data")), WorkCalendar(), LadderConfig()
    )


@pytest.fixture
async def client(engine: AsyncEngine, context: CaseContext) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(engine)
    app.state.cases = context
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://central") as c:
        yield c
