"""The registry of halls (``halls`` table): names and the province → city → county → township
tree that scopes and pages follow.

A hall id with no registry row still works everywhere: it shows its id and is its own subtree,
so an empty registry changes nothing.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Iterable, Mapping
from enum import StrEnum
from typing import Annotated, Any

from pydantic import BaseModel, Field, field_validator
from sqlalchemy import ColumnElement, delete, insert, select, true, update
from sqlalchemy.ext.asyncio import AsyncConnection

from central.store.schema_halls import halls, registry_version
from protocols.topics import ID_PATTERN


class Level(StrEnum):
    PROVINCE = "province"
    CITY = "city"
    COUNTY = "county"
    TOWNSHIP = "township"

    @property
    def rank(self) -> int:
        return list(Level).index(self)


LEVEL_WORDS: dict[str, Level] = {
    "省": Level.PROVINCE,
    "省级": Level.PROVINCE,
    "市": Level.CITY,
    "市级": Level.CITY,
    "县": Level.COUNTY,
    "县级": Level.COUNTY,
    "区": Level.COUNTY,
    "区县": Level.COUNTY,
    "乡镇": Level.TOWNSHIP,
    "乡": Level.TOWNSHIP,
    "镇": Level.TOWNSHIP,
    "街道": Level.TOWNSHIP,
}

# HH:MM-HH:MM periods separated by commas (either width) or semicolons
PERIOD = r"([01][0-9]|2[0-3]):[0-5][0-9]-([01][0-9]|2[0-3]):[0-5][0-9]"
OPENING = rf"^({PERIOD}([,;，；] ?{PERIOD})*)?$"

HallKey = Annotated[str, Field(pattern=f"^{ID_PATTERN}$")]


class HallEntry(BaseModel):
    """One hall of the registry, as the API and the CSV import take it."""

    hall_id: HallKey
    name: str = Field(min_length=1, max_length=128, pattern=r"^[^\x00-\x1f]+$", description="名称")
    level: Level
    parent_id: HallKey | None = Field(default=None, description="the hall one level up")
    region_code: str = Field(pattern=r"^([0-9]{6}|[0-9]{12})$", description="行政区划代码")
    address: str = Field(default="", max_length=512, pattern=r"^[^\x00-\x1f]*$")
    opening_hours: str = Field(
        default="",
        max_length=128,
        pattern=OPENING,
        description="办公时间, e.g. 09:00-12:00,13:00-17:00",
    )

    @field_validator("level", mode="before")
    @classmethod
    def _chinese_level(cls, value: object) -> object:
        if isinstance(value, str):
            word = value.strip()
            return LEVEL_WORDS.get(word, word.lower())
        return value

    @field_validator("parent_id", mode="before")
    @classmethod
    def _blank_parent(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value


def tree_errors(entries: Mapping[str, HallEntry]) -> dict[str, str]:
    """hall id → why its place in the tree is wrong (unknown parent, a level that does not
    descend, a cycle); empty when the tree holds."""
    errors: dict[str, str] = {}
    for hall, entry in entries.items():
        if entry.parent_id is None:
            continue
        parent = entries.get(entry.parent_id)
        if entry.parent_id == hall:
            errors[hall] = "上级不能是自己 / a hall cannot be its own parent"
        elif parent is None:
            errors[hall] = f"上级大厅 {entry.parent_id} 不存在 / no parent hall {entry.parent_id!r}"
        elif parent.level.rank >= entry.level.rank:
            errors[hall] = (
                f"级别须低于上级 / a {entry.level} hall cannot sit under "
                f"the {parent.level} hall {entry.parent_id!r}"
            )
    # levels strictly descend along every edge, so no cycle survives the checks above
    return errors


def children_of(entries: Iterable[HallEntry]) -> dict[str, list[str]]:
    found: defaultdict[str, list[str]] = defaultdict(list)
    for entry in entries:
        if entry.parent_id is not None:
            found[entry.parent_id].append(entry.hall_id)
    return found


def below_in(children: Mapping[str, Iterable[str]], hall: str) -> set[str]:
    """``hall`` and every hall below it in a parent → children index."""
    found = {hall}
    todo = [hall]
    while todo:
        for child in children.get(todo.pop(), ()):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def subtree(entries: Mapping[str, HallEntry], hall: str) -> set[str]:
    """``hall`` and every hall below it; a hall with no registry row is its own subtree."""
    return below_in(children_of(entries.values()), hall)


async def registry(conn: AsyncConnection) -> dict[str, HallEntry]:
    """The registry as stored now (``registry_cache`` keeps it in memory for readers)."""
    rows = (await conn.execute(select(halls).order_by(halls.c.hall_id))).mappings().all()
    return {r["hall_id"]: HallEntry.model_validate(dict(r)) for r in rows}


# a query's halls: one hall, a set of them (an account's subtree), or None for every hall
Halls = str | frozenset[str] | None


def hall_clause(column: Any, hall: Halls) -> ColumnElement[bool]:
    if hall is None:
        return true()
    if isinstance(hall, str):
        return column == hall  # type: ignore[no-any-return]
    return column.in_(sorted(hall))  # type: ignore[no-any-return]


HALL_NAME_DOC = "大厅名称 from the registry of halls; the hall id for a hall not registered"


def display_name(names: Mapping[str, str], hall: str) -> str:
    """What people read for ``hall``: its registered name, or its id."""
    return names.get(hall, hall)


class RegistryError(ValueError):
    """The entries would break the tree; ``problems`` maps each hall to why."""

    def __init__(self, problems: dict[str, str]) -> None:
        super().__init__("; ".join(f"{h}: {why}" for h, why in sorted(problems.items())))
        self.problems = problems


async def bump_version(conn: AsyncConnection) -> None:
    """Tell every process's cached registry it is stale, in the caller's transaction (on
    PostgreSQL the row lock also makes concurrent registry writes take turns)."""
    bumped = await conn.execute(
        update(registry_version)
        .where(registry_version.c.id == 1)
        .values(version=registry_version.c.version + 1)
    )
    if bumped.rowcount == 0:  # a database made without the migration's first row
        await conn.execute(insert(registry_version).values(id=1, version=1))


async def put_halls(conn: AsyncConnection, entries: Iterable[HallEntry], now: dt.datetime) -> None:
    """Add or replace ``entries`` (in the caller's transaction) if the whole tree still holds
    afterwards; RegistryError and nothing written otherwise."""
    new = {e.hall_id: e for e in entries}
    if not new:
        return
    await bump_version(conn)  # first: the tree is checked against what no one else is writing
    merged = {**await registry(conn), **new}
    problems = tree_errors(merged)
    if problems:
        raise RegistryError(problems)
    await conn.execute(delete(halls).where(halls.c.hall_id.in_(list(new))))
    await conn.execute(
        insert(halls),
        [{**e.model_dump(mode="json"), "updated_at": now} for e in new.values()],
    )
