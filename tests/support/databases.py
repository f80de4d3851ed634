"""Databases for central per test (a SQLite file, a PostgreSQL database): empty, or a copy of
a template filled once per session."""

from __future__ import annotations

import asyncio
import os
import queue
import shutil
import tempfile
import threading
import uuid
from collections.abc import Callable, Coroutine, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import pytest

PG_HOST = os.environ.get("HALLWATCH_TEST_PG_HOST", "127.0.0.1")
PG_PORT = int(os.environ.get("HALLWATCH_TEST_PG_PORT", "5432"))
PG_USER = os.environ.get("HALLWATCH_TEST_PG_USER", "postgres")


async def _admin(*statements: str) -> None:
    conn = await asyncpg.connect(host=PG_HOST, port=PG_PORT, user=PG_USER, database="postgres")
    try:
        for sql in statements:
            await conn.execute(sql)
    finally:
        await conn.close()


def postgres_available() -> bool:
    try:
        asyncio.run(_admin("SELECT 1"))
        return True
    except (OSError, asyncpg.PostgresError):
        return False


def pg_url(name: str) -> str:
    """The SQLAlchemy URL of the test server's database ``name``."""
    return f"postgresql+asyncpg://{PG_USER}@{PG_HOST}:{PG_PORT}/{name}"


# A test's commits do not wait for the WAL to reach the disk (2-4 ms a commit on this kind of
# machine, 0.1-0.2 ms without): a commit still returns only once it is done and visible, and
# what it could lose is lost only if the PostgreSQL server itself crashes, which no test does
# to the shared server (the failover test runs a pair of its own). Per database, so nothing
# else on the server changes; a copy does not inherit it, so every test database is set.
TEST_DATABASE_SETTINGS = "SET synchronous_commit = off"


def create_pg_database(name: str | None = None) -> tuple[str, str]:
    """A new empty database (named ``name``, or a fresh test name); returns (name, URL)."""
    name = name or f"hallwatch_test_{uuid.uuid4().hex[:12]}"
    asyncio.run(
        _admin(f'CREATE DATABASE "{name}"', f'ALTER DATABASE "{name}" {TEST_DATABASE_SETTINGS}')
    )
    return name, pg_url(name)


def copy_pg_database(source: str) -> tuple[str, str]:
    """A new database holding what ``source`` holds (no one may be connected to it); returns
    (name, SQLAlchemy URL)."""
    name = f"hallwatch_test_{uuid.uuid4().hex[:12]}"
    asyncio.run(
        _admin(
            f'CREATE DATABASE "{name}" TEMPLATE "{source}"',
            f'ALTER DATABASE "{name}" {TEST_DATABASE_SETTINGS}',
        )
    )
    return name, pg_url(name)


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


async def migrate(url: str) -> None:
    from central.store.db import make_engine
    from central.store.migrate import upgrade

    engine = make_engine(url)
    try:
        await upgrade(engine)
    finally:
        await engine.dispose()  # a template must have no connections left to be copied


@dataclass(frozen=True)
class Template:
    """What a test database starts with: ``fill`` brings an empty database there (and closes
    every connection it opened); ``key`` names that state within a session."""

    key: str
    fill: Callable[[str], Coroutine[object, object, None]]


AT_HEAD = Template("head", migrate)


class _Templates:
    """One database per template and kind, filled once per session; a test gets a copy (a
    file copy, ``CREATE DATABASE … TEMPLATE``) instead of running every migration and every
    seed step again (0.2-3 s for the migrations alone on a loaded machine)."""

    def __init__(self) -> None:
        self._dir: Path | None = None
        self._sqlite: dict[str, Path] = {}
        self._pg: dict[str, str] = {}

    def sqlite_copy(self, template: Template, target: Path) -> None:
        if template.key not in self._sqlite:
            if self._dir is None:
                self._dir = Path(tempfile.mkdtemp(prefix="hallwatch-templates-"))
            path = self._dir / f"{len(self._sqlite)}.db"
            asyncio.run(template.fill(f"sqlite+aiosqlite:///{path}"))
            self._sqlite[template.key] = path
        source = self._sqlite[template.key]
        for suffix in ("", "-wal"):  # the WAL is gone after the last close; copied if not
            if Path(f"{source}{suffix}").exists():
                shutil.copyfile(f"{source}{suffix}", f"{target}{suffix}")

    def pg_copy(self, template: Template) -> tuple[str, str]:
        if template.key not in self._pg:
            name, url = create_pg_database()
            asyncio.run(template.fill(url))
            self._pg[template.key] = name
        return copy_pg_database(self._pg[template.key])

    def finish(self) -> None:
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
        for name in self._pg.values():
            drop_pg_database(name)
        self._dir, self._sqlite, self._pg = None, {}, {}


_templates = _Templates()


def copy_pg_template(template: Template) -> tuple[str, str]:
    """A new PostgreSQL database holding a copy of ``template`` (filled once per session);
    returns (name, SQLAlchemy URL). The caller drops it (``drop_pg_database``)."""
    return _templates.pg_copy(template)


DATABASE_KINDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]


@contextmanager
def scratch_database(kind: str, tmp_path: Path, template: Template | None) -> Iterator[str]:
    """A database of ``kind`` ("sqlite" or "postgresql") for one test, empty or a copy of
    ``template``; yields its URL, dropped afterwards."""
    if kind == "sqlite":
        target = tmp_path / "central.db"
        if template is not None:
            _templates.sqlite_copy(template, target)
        yield f"sqlite+aiosqlite:///{target}"
        return
    if not postgres_available():
        pytest.fail("PostgreSQL is not reachable on 127.0.0.1:5432 (the test command starts it)")
    name, url = _templates.pg_copy(template) if template is not None else create_pg_database()
    try:
        yield url
    finally:
        drop_pg_database(name)


def finish_databases() -> None:
    """At the end of a session: drop the templates, wait for every drop."""
    _templates.finish()
    _dropper.finish()
