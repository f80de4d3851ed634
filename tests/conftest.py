"""Fixtures shared by every test: a private broker, central databases of both kinds."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.broker import Broker, free_port
from tests.support.databases import AT_HEAD, DATABASE_KINDS, finish_databases, scratch_database


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


@pytest.fixture(params=DATABASE_KINDS)
def database_url(
    request: pytest.FixtureRequest, tmp_path: Path, database_at_head: bool
) -> Iterator[str]:
    with scratch_database(request.param, tmp_path, AT_HEAD if database_at_head else None) as url:
        yield url
