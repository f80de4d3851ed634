"""Settings for the dashboards' aggregate queries on PostgreSQL, for the rest of the caller's
transaction: no JIT compilation (over a year of rollups PostgreSQL spent seconds compiling
each statement, more than running it) and room to hash the groups in memory instead of
sorting them on disk."""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

WORK_MEM = "64MB"  # a year of 20,000 staff groups hashes in a few MB per worker


async def settle(conn: AsyncConnection) -> None:
    """Apply the settings on ``conn`` (nothing on SQLite)."""
    if conn.dialect.name == "postgresql":
        await conn.execute(text("SET LOCAL jit = off"))
        await conn.execute(text(f"SET LOCAL work_mem = '{WORK_MEM}'"))
