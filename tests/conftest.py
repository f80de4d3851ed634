"""Fixtures shared by every test: a private broker, central databases of both kinds."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.broker import Broker, free_port
from tests.support.databases import (
    create_pg_database,
    drop_pg_database,
    finish_databases,
    migrated_pg_database,
    migrated_sqlite_database,
    postgres_available,
)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--soak", action="store_true", help="run the long soak variants")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--soak"):
        return
    skip = pytest.mark.skip(reason="long soak: run with --soak")
    for item in items:
        if "soak" in item.keywords:
            item.add_marker(skip)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    finish_databases()  # the templates, and the last tests' databases dropped in the background


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    b = Broker(free_port(), tmp_path / "broker").start()
    try:
        yield b
    finally:
        b.stop()


@pytest.fixture
def database_at_head() -> bool:
    """Whether ``database_url`` starts at the newest schema instead of empty. A module or
    folder whose tests all migrate first overrides this with True: they then get a copy of a
    template migrated once per session."""
    return False


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database_url(
    request: pytest.FixtureRequest, tmp_path: Path, database_at_head: bool
) -> Iterator[str]:
    if request.param == "sqlite":
        target = tmp_path / "central.db"
        yield (
            migrated_sqlite_database(target)
            if database_at_head
            else f"sqlite+aiosqlite:///{target}"
        )
        return
    if not postgres_available():
        pytest.fail("PostgreSQL is not reachable on 127.0.0.1:5432 (the test command starts it)")
    name, url = migrated_pg_database() if database_at_head else create_pg_database()
    try:
        yield url
    finally:
        drop_pg_database(name)
