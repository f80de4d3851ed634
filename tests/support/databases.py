"""Databases for central: a SQLite file, or a fresh PostgreSQL database per test."""

from __future__ import annotations

import asyncio
import os
import queue
import shutil
import tempfile
import threading
import uuid
from pathlib import Path

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


def _drop_now(name: str) -> None:
    asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


class _Dropper:
    """Drops used databases on a thread of its own. PostgreSQL 15 forces a checkpoint for every
    DROP DATABASE (0.4-5 s on a loaded machine), which the test that used the database need not
    wait for; the session waits for the last drops at its end (``finish_databases``)."""

    def __init__(self) -> None:
        self._names: queue.Queue[str] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def drop(self, name: str) -> None:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="pg-drop", daemon=True)
                self._thread.start()
        self._names.put(name)

    def _run(self) -> None:
        while True:
            name = self._names.get()
            try:
                _drop_now(name)
            except (OSError, asyncpg.PostgresError):
                pass  # the database stays behind; its name says it is a test's
            finally:
                self._names.task_done()

    def finish(self) -> None:
        self._names.join()


_dropper = _Dropper()


def drop_pg_database(name: str) -> None:
    """Drop the database soon, off the caller's time (see ``_Dropper``)."""
    _dropper.drop(name)


async def _migrate(url: str) -> None:
    from central.store.db import make_engine
    from central.store.migrate import upgrade

    engine = make_engine(url)
    try:
        await upgrade(engine)
    finally:
        await engine.dispose()  # a template must have no connections left to be copied


class _Templates:
    """One database of each kind migrated to the head once per session; tests that migrate
    first get a copy (a file copy, ``CREATE DATABASE … TEMPLATE``) instead of running every
    migration again (0.2-3 s each on a loaded machine)."""

    def __init__(self) -> None:
        self._sqlite: Path | None = None
        self._pg: str | None = None

    def sqlite_copy(self, target: Path) -> str:
        if self._sqlite is None:
            path = Path(tempfile.mkdtemp(prefix="hallwatch-template-")) / "central.db"
            asyncio.run(_migrate(f"sqlite+aiosqlite:///{path}"))
            self._sqlite = path
        for suffix in ("", "-wal"):  # the WAL is gone after the last close; copied if not
            if Path(f"{self._sqlite}{suffix}").exists():
                shutil.copyfile(f"{self._sqlite}{suffix}", f"{target}{suffix}")
        return f"sqlite+aiosqlite:///{target}"

    def pg_copy(self) -> tuple[str, str]:
        if self._pg is None:
            name, url = create_pg_database()
            asyncio.run(_migrate(url))
            self._pg = name
        name = f"hallwatch_test_{uuid.uuid4().hex[:12]}"
        asyncio.run(_admin(f'CREATE DATABASE "{name}" TEMPLATE "{self._pg}"'))
        return name, f"postgresql+asyncpg://{PG_USER}@{PG_HOST}:{PG_PORT}/{name}"

    def finish(self) -> None:
        if self._sqlite is not None:
            shutil.rmtree(self._sqlite.parent, ignore_errors=True)
            self._sqlite = None
        if self._pg is not None:
            drop_pg_database(self._pg)
            self._pg = None


_templates = _Templates()


def migrated_sqlite_database(target: Path) -> str:
    """A SQLite file at ``target`` holding the newest schema; returns its URL."""
    return _templates.sqlite_copy(target)


def migrated_pg_database() -> tuple[str, str]:
    """A new database holding the newest schema; returns (name, SQLAlchemy URL)."""
    return _templates.pg_copy()


def finish_databases() -> None:
    """At the end of a session: drop the templates, wait for every drop."""
    _templates.finish()
    _dropper.finish()
