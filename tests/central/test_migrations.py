"""The migrations build exactly the schema the code declares, on SQLite and PostgreSQL."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from central.store.db import make_engine
from central.store.migrate import current_revision, upgrade
from central.store.tables import metadata


async def test_migrated_database_matches_the_declared_schema(database_url: str) -> None:
    engine = make_engine(database_url)
    await upgrade(engine)
    await upgrade(engine)  # idempotent
    async with engine.connect() as conn:
        diff = await conn.run_sync(
            lambda sync: compare_metadata(MigrationContext.configure(sync), metadata)
        )
    assert await current_revision(engine)
    await engine.dispose()
    # comments are documentation; SQLite does not store them
    diff = [d for d in diff if not (isinstance(d, list) and "comment" in str(d[0][0]))]
    assert diff == [], diff
