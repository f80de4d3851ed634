"""Settings for the dashboards' aggregate queries on PostgreSQL, for the rest of the caller's
transaction: no JIT compilation (over a year of rollups PostgreSQL spent seconds compiling
each statement, more than running it) and room to hash the groups in memory instead of
sorting them on disk. And building their answers without the cyclic garbage collector."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

WORK_MEM = "64MB"  # a year of 20,000 staff groups hashes in a few MB per worker


async def settle(conn: AsyncConnection) -> None:
    """Apply the settings on ``conn`` (nothing on SQLite)."""
    if conn.dialect.name == "postgresql":
        await conn.execute(text("SET LOCAL jit = off"))
        await conn.execute(text(f"SET LOCAL work_mem = '{WORK_MEM}'"))


@contextmanager
def collector_paused() -> Iterator[None]:
    """Build an answer of many small objects (20,000 groups × 14 ``Ratio`` objects) without
    the cyclic collector: they make no cycles, yet every few hundred allocations it passed over
    the growing answer, which doubled the time to build it. For synchronous code only (no
    ``await`` inside); the collector is back on after, if it was on."""
    was_on = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_on:
            gc.enable()
