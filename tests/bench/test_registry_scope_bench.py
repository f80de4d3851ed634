"""Subtree scope figures on both databases (``./run.sh bench``, or
``pytest -m bench tests/bench/test_registry_scope_bench.py -s``): a registry of HALLS halls (a
province, its cities, counties and townships) and the per-request cost of resolving a city
account's subtree and the halls' names: read from the halls table every request (how it was)
against the kept copy checked by the ``registry_version`` row. Printed and recorded in
test-output/bench-registry-scope.json; nothing is timed against a limit.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from central.reporting.registry import HallEntry, Level, put_halls, registry, subtree
from central.reporting.registry_cache import hall_names
from central.security.tokens import Principal, Role, with_subtree
from central.store.db import make_engine
from central.store.migrate import upgrade
from central.store.schema_halls import halls
from hallkit.clock import utc_now
from tests.bench.figures import record_ms

pytestmark = pytest.mark.bench

HALLS = 2000
CITIES, COUNTIES_PER_CITY = 11, 9  # 1 + 11 + 99 counties + 1,889 townships
REQUESTS = 200
RESULTS = Path(__file__).resolve().parents[2] / "test-output" / "bench-registry-scope.json"


def tree() -> list[HallEntry]:
    def entry(hall: str, level: Level, parent: str | None) -> HallEntry:
        return HallEntry(
            hall_id=hall,
            name=f"{hall}政务服务中心",
            level=level,
            parent_id=parent,
            region_code="330000",
        )

    found = [entry("P", Level.PROVINCE, None)]
    counties: list[str] = []
    for c in range(CITIES):
        found.append(entry(f"C{c}", Level.CITY, "P"))
        for k in range(COUNTIES_PER_CITY):
            counties.append(f"C{c}-K{k}")
            found.append(entry(counties[-1], Level.COUNTY, f"C{c}"))
    for t in range(HALLS - len(found)):
        parent = counties[t % len(counties)]
        found.append(entry(f"{parent}-T{t}", Level.TOWNSHIP, parent))
    return found


def record(name: str, seconds: float) -> None:
    record_ms(RESULTS, name, seconds, unit="ms per request", digits=3)


async def per_request(call: Callable[[], Awaitable[object]]) -> float:
    await call()  # warm: the kept copy is read once
    start = time.perf_counter()
    for _ in range(REQUESTS):
        await call()
    return (time.perf_counter() - start) / REQUESTS


async def read_every_time(engine: AsyncEngine, hall: str) -> frozenset[str]:
    """What each request did before: the whole halls table, then the subtree."""
    async with engine.connect() as conn:
        return frozenset(subtree(await registry(conn), hall))


async def names_every_time(engine: AsyncEngine) -> dict[str, str]:
    async with engine.connect() as conn:
        return dict((await conn.execute(select(halls.c.hall_id, halls.c.name))).all())


async def names_kept(engine: AsyncEngine) -> object:
    async with engine.connect() as conn:
        return await hall_names(conn)


async def test_subtree_scope_figures(database_url: str) -> None:
    kind = database_url.split("+")[0]  # sqlite | postgresql
    engine = make_engine(database_url)
    try:
        await upgrade(engine)
        entries = tree()
        assert len(entries) == HALLS
        async with engine.begin() as conn:
            await put_halls(conn, entries, utc_now())
        city = Principal(role=Role.HALL_MANAGER, hall="C0")
        expected = await read_every_time(engine, "C0")
        assert (await with_subtree(engine, city)).halls == expected
        before = await per_request(lambda: read_every_time(engine, "C0"))
        after = await per_request(lambda: with_subtree(engine, city))
        names_before = await per_request(lambda: names_every_time(engine))
        names_after = await per_request(lambda: names_kept(engine))
        label = f"{kind}, {HALLS} halls, a city of {len(expected)}"
        record(f"{label}: subtree read from the halls table", before)
        record(f"{label}: subtree kept, version row checked", after)
        record(f"{kind}, {HALLS} halls: names read from the halls table", names_before)
        record(f"{kind}, {HALLS} halls: names kept, version row checked", names_after)
    finally:
        await engine.dispose()
