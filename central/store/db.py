"""Engine creation and the few statements that differ between SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Table, event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

DEFAULT_URL = "sqlite+aiosqlite:///var/central/central.db"
CONNECT_TIMEOUT_S = 10.0  # PostgreSQL: per host tried


def make_engine(url: str = DEFAULT_URL, **kwargs: Any) -> AsyncEngine:
    if url.startswith("sqlite"):
        engine = create_async_engine(url, **kwargs)

        @event.listens_for(engine.sync_engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            # WAL: the API reads while ingest writes. FULL: a commit survives a power cut,
            # because the ack we send after it lets the gateway delete its copy.
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=FULL")
            cur.execute("PRAGMA busy_timeout=10000")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

        return engine
    kwargs.setdefault("pool_size", 10)
    # a connection found dead (the primary lost, a failover) is replaced before use, and a
    # host that does not answer costs seconds, not asyncpg's default minute, before the next
    # host of a multi-host URL is tried (docs/province.md, losing the PostgreSQL primary)
    kwargs.setdefault("pool_pre_ping", True)
    kwargs["connect_args"] = {"timeout": CONNECT_TIMEOUT_S, **kwargs.get("connect_args", {})}
    return create_async_engine(url, **kwargs)


def insert_ignore(engine_or_dialect: Any, table: Table) -> Any:
    """INSERT … ON CONFLICT DO NOTHING for the engine's dialect."""
    name = getattr(engine_or_dialect, "name", None) or engine_or_dialect.dialect.name
    if name == "postgresql":
        return postgresql.insert(table).on_conflict_do_nothing()
    return sqlite.insert(table).on_conflict_do_nothing()
