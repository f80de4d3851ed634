"""The registry of halls in memory, for the readers of every request (subtree scopes, names).

Each process keeps the tree it read last with the ``registry_version`` it read just before, and
per request reads only that one row: every registry write bumps it in its own transaction, so a
change made by any process applies at the next request everywhere. Subtrees are computed once
per hall and version.
"""

from __future__ import annotations

import weakref
from collections.abc import Mapping

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from central.reporting.registry import HallEntry, below_in, children_of, registry
from central.store.schema_halls import registry_version

NO_ROW = -1  # a database without the version row: it gains one at the first registry write


class Snapshot:
    """The registry as of ``version``: its entries, names and (memoized) subtrees."""

    def __init__(self, version: int, entries: Mapping[str, HallEntry]) -> None:
        self.version = version
        self.entries = entries
        self.names: Mapping[str, str] = {h: e.name for h, e in entries.items()}
        self._children = children_of(entries.values())
        self._subtrees: dict[str, frozenset[str]] = {}

    def subtree(self, hall: str) -> frozenset[str]:
        """``hall`` and every hall below it; a hall with no registry row is its own subtree."""
        found = self._subtrees.get(hall)
        if found is None:
            found = self._subtrees[hall] = frozenset(below_in(self._children, hall))
        return found


# one snapshot per database (a process may hold several engines: tests, tools)
_snapshots: weakref.WeakKeyDictionary[AsyncEngine, Snapshot] = weakref.WeakKeyDictionary()


async def current_version(conn: AsyncConnection) -> int:
    found = await conn.scalar(select(registry_version.c.version).where(registry_version.c.id == 1))
    return NO_ROW if found is None else int(found)


async def snapshot(conn: AsyncConnection) -> Snapshot:
    """The registry as committed now: the kept copy if the version row still says so, else
    read again. Never call it inside a transaction that writes the registry."""
    version = await current_version(conn)
    kept = _snapshots.get(conn.engine)
    if kept is not None and kept.version == version:
        return kept
    # read after the version: a write committed in between makes the next request read again
    fresh = Snapshot(version, await registry(conn))
    _snapshots[conn.engine] = fresh
    return fresh


async def hall_names(conn: AsyncConnection) -> Mapping[str, str]:
    """hall id → 名称, for the halls the registry names."""
    return (await snapshot(conn)).names


async def halls_under(conn: AsyncConnection, hall: str) -> frozenset[str]:
    return (await snapshot(conn)).subtree(hall)
