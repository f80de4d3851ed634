"""Tables partitioned by month on PostgreSQL (the event store of a province; SQLite keeps plain
tables). The DDL is written here once, for the schema declaration (``create_all``), the
migration that converts an existing table, and the aggregator that makes months ahead.

The month partitions and the DEFAULT partition live in their own schema, ``event_months``, so
that the public schema lists the tables the code names. An event whose time falls in no month
partition (a clock years off, a month not created yet) goes to the DEFAULT partition: nothing
is refused. When its month is created later, its rows move out of the DEFAULT partition into
it in the same transaction.

Months are UTC calendar months, named ``<table>_YYYY_MM``."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import DDL, Table, event, text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

SCHEMA = "event_months"
# several aggregators may start together: one of them creates a month at a time
LOCK_KEY = 7_301_311  # pg_advisory_xact_lock key of partition changes
LOCK_TIMEOUT = "5s"  # give up a change rather than queue ingest behind its lock


def declare_partitioned(table: Table) -> None:
    """What ``create_all`` adds on PostgreSQL after ``CREATE TABLE … PARTITION BY RANGE``:
    the primary key with the partition key, and the DEFAULT partition."""
    key = ", ".join(c.name for c in table.primary_key.columns)
    for statement in (
        f"CREATE SCHEMA IF NOT EXISTS {SCHEMA}",
        f"ALTER TABLE {table.name} ADD CONSTRAINT {table.name}_pkey PRIMARY KEY ({key}, utc)",
        create_default(table.name),
    ):
        ddl = DDL(statement)  # type: ignore[no-untyped-call]  # untyped in SQLAlchemy
        event.listen(table, "after_create", ddl.execute_if(dialect="postgresql"))


def create_default(table: str) -> str:
    return f"CREATE TABLE IF NOT EXISTS {SCHEMA}.{table}_default PARTITION OF {table} DEFAULT"


def month_of(moment: dt.date) -> dt.date:
    return dt.date(moment.year, moment.month, 1)


def add_months(month: dt.date, count: int) -> dt.date:
    index = month.year * 12 + month.month - 1 + count
    return dt.date(index // 12, index % 12 + 1, 1)


def next_month(month: dt.date) -> dt.date:
    return add_months(month, 1)


def months_ahead(today: dt.date, ahead: int) -> list[dt.date]:
    """This month and the ``ahead`` months after it."""
    return [add_months(month_of(today), n) for n in range(ahead + 1)]


def partition_name(table: str, month: dt.date) -> str:
    return f"{table}_{month.year:04d}_{month.month:02d}"


def month_of_name(table: str, name: str) -> dt.date | None:
    found = re.fullmatch(rf"{re.escape(table)}_(\d{{4}})_(\d{{2}})", name)
    return None if found is None else dt.date(int(found[1]), int(found[2]), 1)


def _bound(month: dt.date) -> str:
    return f"'{month.isoformat()} 00:00:00+00'"


def month_statements(table: str, month: dt.date, default_has_rows: bool) -> list[str]:
    """Create one month's partition. Rows of that month already in the DEFAULT partition are
    moved into it first (PostgreSQL refuses a partition whose rows the DEFAULT holds)."""
    name = f"{SCHEMA}.{partition_name(table, month)}"
    low, high = _bound(month), _bound(next_month(month))
    bounds = f"FOR VALUES FROM ({low}) TO ({high})"
    if not default_has_rows:
        return [f"CREATE TABLE {name} PARTITION OF {table} {bounds}"]
    return [
        f"LOCK TABLE {SCHEMA}.{table}_default IN ACCESS EXCLUSIVE MODE",
        f"CREATE TABLE {name} (LIKE {table} INCLUDING DEFAULTS)",
        f"WITH moved AS (DELETE FROM {SCHEMA}.{table}_default WHERE utc >= {low} AND utc < {high}"
        f" RETURNING *) INSERT INTO {name} SELECT * FROM moved",
        f"ALTER TABLE {table} ATTACH PARTITION {name} {bounds}",
    ]


def default_rows_query(table: str, month: dt.date) -> str:
    low, high = _bound(month), _bound(next_month(month))
    return (
        f"SELECT EXISTS (SELECT 1 FROM {SCHEMA}.{table}_default"
        f" WHERE utc >= {low} AND utc < {high})"
    )


def existing_query(table: str) -> str:
    """The month tables of ``table`` in the partition schema, attached or not."""
    return (
        "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        f" WHERE n.nspname = '{SCHEMA}' AND c.relkind = 'r'"
        f" AND c.relname ~ '^{table}_[0-9]{{4}}_[0-9]{{2}}$'"
    )


def create_months_sync(conn: Connection, table: str, months: Iterable[dt.date]) -> list[str]:
    """The migration's way (a synchronous connection, inside its transaction)."""
    have = set(conn.execute(text(existing_query(table))).scalars())
    made: list[str] = []
    for month in sorted(set(months)):
        if partition_name(table, month) in have:
            continue
        moving = bool(conn.execute(text(default_rows_query(table, month))).scalar())
        for statement in month_statements(table, month, moving):
            conn.execute(text(statement))
        made.append(partition_name(table, month))
    return made


async def create_months(conn: AsyncConnection, table: str, months: Iterable[dt.date]) -> list[str]:
    """Create the months missing (none on SQLite); returns the partitions made."""
    if conn.dialect.name != "postgresql":
        return []
    await conn.execute(text(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'"))
    await conn.execute(text(f"SELECT pg_advisory_xact_lock({LOCK_KEY})"))
    return await conn.run_sync(lambda sync: create_months_sync(sync, table, months))


async def ensure_ahead(
    engine: AsyncEngine, today: dt.date, ahead: int = 2, table: str = "events"
) -> list[str]:
    """This month's partition and the next ``ahead`` months' (the aggregator, at start and
    daily)."""
    if engine.dialect.name != "postgresql":
        return []
    async with engine.begin() as conn:
        return await create_months(conn, table, months_ahead(today, ahead))


@dataclass(frozen=True)
class Partition:
    name: str
    month: dt.date | None  # None: the DEFAULT partition
    attached: bool
    rows: int  # PostgreSQL's estimate (reltuples), -1 when never analysed
    bytes: int  # table, indexes and TOAST


async def list_partitions(conn: AsyncConnection, table: str = "events") -> list[Partition]:
    """Every month table of ``table`` (attached, or detached and not yet archived) and the
    DEFAULT partition, oldest first; none on SQLite."""
    if conn.dialect.name != "postgresql":
        return []
    rows = await conn.execute(
        text(
            "SELECT c.relname, c.relispartition, c.reltuples::bigint,"
            " pg_total_relation_size(c.oid)"
            " FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE n.nspname = :schema AND c.relkind = 'r'"
            " AND (c.relname = :default OR c.relname ~ :pattern)"
        ),
        {
            "schema": SCHEMA,
            "default": f"{table}_default",
            "pattern": f"^{table}_[0-9]{{4}}_[0-9]{{2}}$",
        },
    )
    found = [
        Partition(name, month_of_name(table, name), attached, int(rows_), int(size))
        for name, attached, rows_, size in rows.all()
    ]
    return sorted(found, key=lambda p: (p.month is None, p.month or dt.date.min))
