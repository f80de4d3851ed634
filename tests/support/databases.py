"""Databases for central: a SQLite file, or a fresh PostgreSQL database per test."""

from __future__ import annotations

import asyncio
import os
import uuid

import asyncpg

PG_HOST = os.environ.get("HALLWATCH_TEST_PG_HOST", "127.0.0.1")
PG_PORT = int(os.environ.get("HALLWATCH_TEST_PG_PORT", "5432"))
PG_USER = os.environ.get("HALLWATCH_TEST_PG_USER", "postgres")


async def _admin(sql: str) -> None:
    conn = await asyncpg.connect(host=PG_HOST, port=PG_PORT, user=PG_USER, database="postgres")
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def postgres_available() -> bool:
    try:
        asyncio.run(_admin("SELECT 1"))
        return True
    except (OSError, asyncpg.PostgresError):
        return False


def create_pg_database() -> tuple[str, str]:
    """A new empty database; returns (name, SQLAlchemy URL)."""
    name = f"hallwatch_test_{uuid.uuid4().hex[:12]}"
    asyncio.run(_admin(f'CREATE DATABASE "{name}"'))
    return name, f"postgresql+asyncpg://{PG_USER}@{PG_HOST}:{PG_PORT}/{name}"


def drop_pg_database(name: str) -> None:
    asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
