"""The migrations build exactly the schema the code declares, on SQLite and PostgreSQL, along one
line of revisions: a fresh database (``create_all``) and a migrated one are identical."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import ForeignKeyConstraint, inspect
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from central.store.db import make_engine
from central.store.migrate import MIGRATIONS, current_revision, upgrade
from central.store.tables import metadata
from tests.support.databases import create_pg_database, drop_pg_database

MERGE = "merge_heads"  # the revision that joined the lines grown from 0001 and 0002_cases


def _scripts() -> ScriptDirectory:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    return ScriptDirectory.from_config(cfg)


@pytest.fixture
def other_database_url(database_url: str, tmp_path: Path) -> Iterator[str]:
    """A second empty database of the same kind as ``database_url``."""
    if database_url.startswith("sqlite"):
        yield f"sqlite+aiosqlite:///{tmp_path / 'fresh.db'}"
        return
    name, url = create_pg_database()
    try:
        yield url
    finally:
        drop_pg_database(name)


def _schema(sync: Connection) -> dict[str, Any]:
    """What a database says about central's tables, in a comparable form: columns (name, type,
    nullability, default), primary keys, foreign keys, indexes, unique constraints."""
    inspector = inspect(sync)
    tables: dict[str, Any] = {}
    for name in sorted(inspector.get_table_names()):
        if name == "alembic_version":
            continue
        tables[name] = {
            # by name: a column a migration added comes last in its table, and that is fine;
            # without comments: documentation, which SQLite does not store
            "columns": sorted(
                (
                    c["name"],
                    str(c["type"]),
                    c["nullable"],
                    str(c.get("default")),
                    c.get("autoincrement"),
                )
                for c in inspector.get_columns(name)
            ),
            "primary_key": inspector.get_pk_constraint(name)["constrained_columns"],
            "foreign_keys": sorted(
                (fk["constrained_columns"], fk["referred_table"], fk["referred_columns"])
                for fk in inspector.get_foreign_keys(name)
            ),
            "indexes": sorted(
                (ix["name"], ix["column_names"], bool(ix["unique"]))
                for ix in inspector.get_indexes(name)
            ),
            "unique": sorted(
                (uq["name"], uq["column_names"]) for uq in inspector.get_unique_constraints(name)
            ),
        }
    return tables


async def _reflect(engine: AsyncEngine) -> dict[str, Any]:
    async with engine.connect() as conn:
        return await conn.run_sync(_schema)


def test_the_migrations_form_one_line_with_one_head() -> None:
    heads = _scripts().get_heads()
    assert len(heads) == 1, f"several Alembic heads {heads}: add a merge revision"


async def test_migrated_database_matches_the_declared_schema(database_url: str) -> None:
    engine = make_engine(database_url)
    await upgrade(engine)
    await upgrade(engine)  # idempotent
    async with engine.connect() as conn:
        diff = await conn.run_sync(
            lambda sync: compare_metadata(MigrationContext.configure(sync), metadata)
        )
    assert await current_revision(engine) == _scripts().get_current_head()
    dialect = engine.dialect.name
    await engine.dispose()
    # comments are documentation; SQLite does not store them
    diff = [d for d in diff if not (isinstance(d, list) and "comment" in str(d[0][0]))]
    # Alembic compares without a constraint's ddl_if: one declared for another store is not here
    diff = [d for d in diff if not (isinstance(d, tuple) and for_another_store(d[1], dialect))]
    assert diff == [], diff


def for_another_store(item: object, dialect: str) -> bool:
    """A constraint Alembic reports (its own copy) that the schema declares for another store."""
    if not isinstance(item, ForeignKeyConstraint) or item.table is None:
        return False
    columns = set(item.column_keys)
    declared = metadata.tables[item.table.name].constraints
    return any(
        isinstance(c, ForeignKeyConstraint)
        and set(c.column_keys) == columns
        and c._ddl_if is not None
        and c._ddl_if.dialect not in (None, dialect)
        for c in declared
    )


async def test_fresh_database_and_migrated_database_are_identical(
    database_url: str, other_database_url: str
) -> None:
    migrated = make_engine(database_url)
    await upgrade(migrated)
    fresh = make_engine(other_database_url)
    async with fresh.begin() as conn:
        await conn.run_sync(metadata.create_all)
    try:
        assert await _reflect(fresh) == await _reflect(migrated)
    finally:
        await migrated.dispose()
        await fresh.dispose()


async def test_a_database_at_the_joined_heads_upgrades_to_the_one_head(database_url: str) -> None:
    # deployed databases stand at the heads the merge revision joined: the merge changes none of
    # their tables, and they reach the one head from there
    scripts = _scripts()
    merge = scripts.get_revision(MERGE)
    assert merge is not None and merge.is_merge_point
    joined = tuple(merge.down_revision or ())
    engine = make_engine(database_url)
    try:
        for revision in joined:
            await upgrade(engine, revision)
        assert await current_revision(engine) == ",".join(sorted(joined))
        before = await _reflect(engine)
        await upgrade(engine, MERGE)
        assert await current_revision(engine) == MERGE
        assert await _reflect(engine) == before
        await upgrade(engine)
        assert await current_revision(engine) == scripts.get_current_head()
    finally:
        await engine.dispose()
