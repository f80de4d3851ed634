"""Fixtures for the correlation tests: a migrated database of each kind with the generated
hall's gateway registered, and helpers to store a hall day the real way (ingest, case store)."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator, Sequence
from typing import Any

import pytest
from sqlalchemy import and_, select
from sqlalchemy.ext.asyncio import AsyncEngine

from central.cases.store import CaseRecord, Source, upsert
from central.rules.indicators import CaseStatus
from central.spine.ingest import Ingestor
from central.spine.registry import register
from central.store.db import make_engine
from central.store.migrate import upgrade
from central.store.schema_correlation import (
    correlation_heads,
    correlation_results,
    service_sessions,
)
from tests.central.correlation.hallday import CaseTruth, GenEvent, HallDay, messages


@pytest.fixture
def database_at_head() -> bool:
    return True  # these tests migrate first: start from the migrated template


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    eng = make_engine(database_url)
    await upgrade(eng)
    await register(eng, "H1", "gw1")
    yield eng
    await eng.dispose()


def case_record(c: CaseTruth, hall: str = "H1", **changes: Any) -> CaseRecord:
    fields: dict[str, Any] = {
        "case_no": c.case_no,
        "item_code": c.item_code,
        "item_name": "测试事项",
        "department": c.department,
        "hall": hall,
        "window": c.window,
        "staff": c.staff,
        "accepted_at": c.accepted_at,
        "legal_days": 10,
        "promised_days": 5,
        "completed_at": c.completed_at,
        "status": CaseStatus.COMPLETED if c.completed_at else CaseStatus.RUNNING,
        "suspensions": (),
        "applicant_masked": None,
        "applicant_digest": c.applicant,
    }
    fields.update(changes)
    return CaseRecord(**fields)


async def store_cases(engine: AsyncEngine, records: Sequence[CaseRecord]) -> None:
    await upsert(
        engine, list(enumerate(records)), source=Source.API, received_at=dt.datetime.now(dt.UTC)
    )


async def deliver(
    engine: AsyncEngine, day: HallDay, events: Sequence[GenEvent], shuffle_seed: int | None = None
) -> None:
    """Ingest as central's consumer would: a group of batches per transaction, in order or
    (``shuffle_seed``) out of order, gaps and all."""
    import random

    batches = messages(day, list(events))
    if shuffle_seed is not None:
        random.Random(shuffle_seed).shuffle(batches)
    ingestor = Ingestor(engine)
    for i in range(0, len(batches), 4):
        await ingestor.ingest(batches[i : i + 4])


async def current(engine: AsyncEngine) -> dict[int, Any]:
    """seq → the current correlation result row (one gateway in these tests)."""
    r, h = correlation_results, correlation_heads
    async with engine.connect() as conn:
        rows = (
            await conn.execute(
                select(r).select_from(
                    h.join(
                        r,
                        and_(
                            r.c.gateway_id == h.c.gateway_id,
                            r.c.seq == h.c.seq,
                            r.c.version == h.c.version,
                        ),
                    )
                )
            )
        ).all()
    return {row.seq: row for row in rows}


async def all_versions(engine: AsyncEngine) -> dict[int, list[Any]]:
    async with engine.connect() as conn:
        rows = (
            await conn.execute(
                select(correlation_results).order_by(
                    correlation_results.c.seq, correlation_results.c.version
                )
            )
        ).all()
    out: dict[int, list[Any]] = {}
    for row in rows:
        out.setdefault(row.seq, []).append(row)
    return out


async def sessions(engine: AsyncEngine) -> dict[str, Any]:
    async with engine.connect() as conn:
        return {r.session_id: r for r in (await conn.execute(select(service_sessions))).all()}
