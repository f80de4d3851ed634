"""A hall's opening hours and window roster (``HallSetup``), as the indicators need them.

Stored per hall in ``hall_setups`` (set with ``hallwatch-central correlation hall-setup`` or
``PUT /api/v1/halls/{hall}/setup``). A hall nobody configured gets the usual hours of a Chinese
service hall, 09:00–12:00 and 13:00–17:00, and a roster inferred from its cases: each window
belongs to the department whose cases it accepts most often (ties: the first by name).
"""

from __future__ import annotations

import datetime as dt
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from typing import Annotated, Any

from pydantic import BaseModel, Field, field_validator
from sqlalchemy import delete, insert, select
from sqlalchemy.ext.asyncio import AsyncConnection

from central.rules.indicators import HallSetup, OpeningPeriod
from central.store.schema_correlation import hall_setups

DEFAULT_OPENING = (
    OpeningPeriod(start=dt.time(9), end=dt.time(12)),
    OpeningPeriod(start=dt.time(13), end=dt.time(17)),
)


def infer_roster(cases: Iterable[tuple[int | None, str]]) -> dict[str, str]:
    """window → the department it accepts most cases for."""
    counts: defaultdict[int, Counter[str]] = defaultdict(Counter)
    for window, department in cases:
        if window is not None:
            counts[window][department] += 1
    return {
        str(w): min(c.items(), key=lambda kv: (-kv[1], kv[0]))[0] for w, c in sorted(counts.items())
    }


async def stored_setups(
    conn: AsyncConnection, halls: Sequence[str] | None = None
) -> dict[str, HallSetup]:
    query = select(hall_setups)
    if halls is not None:
        query = query.where(hall_setups.c.hall_id.in_(list(halls)))
    return {r.hall_id: HallSetup.model_validate(r.setup) for r in (await conn.execute(query)).all()}


def with_defaults(
    hall: str, stored: HallSetup | None, cases: Iterable[tuple[int | None, str]] = ()
) -> HallSetup:
    if stored is not None and stored.windows:
        return stored
    roster = infer_roster(cases)
    opening = stored.opening if stored is not None else DEFAULT_OPENING
    names = stored.staff if stored is not None else {}
    return HallSetup(hall=hall, opening=opening, windows=roster, staff=names)


async def staff_names(
    conn: AsyncConnection, halls: Sequence[str] | None = None
) -> dict[tuple[str, str], str]:
    """(hall, staff number) → name, where a hall's setup names its staff."""
    return {
        (hall, number): name
        for hall, setup in (await stored_setups(conn, halls)).items()
        for number, name in setup.staff.items()
    }


def name_of(names: dict[tuple[str, str], str], hall: str | None, staff: str | None) -> str | None:
    return None if hall is None or staff is None else names.get((hall, staff))


async def save_setup(conn: AsyncConnection, setup: HallSetup, now: dt.datetime) -> None:
    doc: dict[str, Any] = setup.model_dump(mode="json")
    await conn.execute(delete(hall_setups).where(hall_setups.c.hall_id == setup.hall))
    await conn.execute(insert(hall_setups).values(hall_id=setup.hall, setup=doc, updated_at=now))


TIME = r"^([01][0-9]|2[0-3]):[0-5][0-9](:[0-5][0-9])?$"


class OpeningText(BaseModel):
    start: str = Field(pattern=TIME, description="HH:MM, Beijing time")
    end: str = Field(pattern=TIME)

    @field_validator("start", "end", mode="before")
    @classmethod
    def _sexagesimal(cls, value: object) -> object:
        # YAML 1.1 reads an unquoted 13:00 as the base-60 integer 780
        if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 24 * 60:
            return f"{value // 60:02d}:{value % 60:02d}"
        return value


StaffNumber = Annotated[str, Field(pattern=r"^[0-9]{6}$")]
StaffName = Annotated[str, Field(min_length=1, max_length=32, pattern=r"^[^\x00]+$")]


class SetupText(BaseModel):
    """A hall's opening hours (on the calendar's working days) and window roster, as people
    write it (API body, the CLI's YAML file)."""

    hall: str = Field(min_length=1, max_length=64)
    opening: list[OpeningText] = Field(min_length=1, max_length=8)
    windows: dict[str, str] = Field(default_factory=dict, description="window → department")
    staff: dict[StaffNumber, StaffName] = Field(
        default_factory=dict,
        description="staff number → name (工作人员姓名), shown beside "
        "the number in lists and exports",
    )

    @field_validator("staff", mode="before")
    @classmethod
    def _quoted_numbers(cls, value: object) -> object:
        # YAML reads an unquoted 000101 as the octal integer 65: refuse rather than guess
        if isinstance(value, dict) and any(not isinstance(k, str) for k in value):
            raise ValueError("工号须加引号 / quote staff numbers in YAML ('000101': 王芳)")
        return value

    def to_setup(self) -> HallSetup:
        """Raises pydantic.ValidationError (overlapping or reversed periods)."""
        return HallSetup.model_validate(self.model_dump())

    @classmethod
    def of(cls, setup: HallSetup) -> SetupText:
        return cls(
            hall=setup.hall,
            windows=dict(setup.windows),
            staff=dict(setup.staff),
            opening=[
                OpeningText(start=p.start.strftime("%H:%M"), end=p.end.strftime("%H:%M"))
                for p in setup.opening
            ],
        )
