"""Engine creation and the few statements that differ between SQLite and PostgreSQL."""

from __future__ import annotations

import json
from operator import itemgetter
from typing import Any

import asyncpg
from sqlalchemy import JSON, Table, event
from sqlalchemy import exc as sa_exc
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

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


def dialect_insert(engine_or_dialect: Any, table: Table) -> Any:
    """The dialect's own INSERT (with ``on_conflict_do_nothing`` / ``_do_update`` and
    ``excluded``), for an engine, a connection's dialect or a dialect name."""
    name = (
        engine_or_dialect
        if isinstance(engine_or_dialect, str)
        else getattr(engine_or_dialect, "name", None) or engine_or_dialect.dialect.name
    )
    return postgresql.insert(table) if name == "postgresql" else sqlite.insert(table)


def insert_ignore(engine_or_dialect: Any, table: Table) -> Any:
    """INSERT … ON CONFLICT DO NOTHING for the engine's dialect."""
    return dialect_insert(engine_or_dialect, table).on_conflict_do_nothing()


class JsonText(str):
    """A JSON document already serialized, for a JSON column filled by ``copy_fresh``."""


def _json_text(value: Any) -> str:
    return value if isinstance(value, JsonText) else json.dumps(value)


async def copy_fresh(conn: AsyncConnection, table: Table, rows: list[dict[str, Any]]) -> None:
    """PostgreSQL: rows the caller knows are not stored yet, in one ``COPY`` inside the
    connection's open transaction (per batch, not per row: the server neither parses nor plans
    a statement per row). A row already stored is an ``IntegrityError`` here, never skipped:
    the caller that cannot rule that out inserts with ``insert_ignore`` instead.

    JSON columns are given as text (the driver's codec, set by SQLAlchemy, takes ``str``): a
    ``JsonText`` value as it is, any other serialized here."""
    if not rows:
        return
    raw = (await conn.get_raw_connection()).driver_connection
    assert raw is not None
    if not raw.is_in_transaction():  # COPY alone would commit on its own
        raise RuntimeError("copy_fresh runs inside a transaction that has run a statement")
    names = list(rows[0])
    pick = itemgetter(*names)
    records = [pick(row) for row in rows] if len(names) > 1 else [(pick(r),) for r in rows]
    for index, name in enumerate(names):
        if isinstance(table.c[name].type, JSON):
            records = [(*r[:index], _json_text(r[index]), *r[index + 1 :]) for r in records]
    statement = f"COPY {table.name}"
    try:
        await raw.copy_records_to_table(table.name, records=records, columns=names)
    except asyncpg.UniqueViolationError as exc:
        raise sa_exc.IntegrityError(statement, None, exc) from exc
    except (asyncpg.PostgresConnectionError, asyncpg.InterfaceError, OSError) as exc:
        # the connection is gone: as SQLAlchemy says of a dead connection
        raise sa_exc.DisconnectionError(f"{statement}: {exc}") from exc
    except asyncpg.PostgresError as exc:
        raise sa_exc.DBAPIError(statement, None, exc) from exc
