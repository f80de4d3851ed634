"""What people read beside ids: halls by the registry's 名称, staff by the hall setup's names.

One load per request for the rows it answers with; routes put ``hall_name`` (always: the id for
a hall not registered) and ``staff_name`` (null where no setup names the person) beside ids.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncConnection

from central.reporting import halls as setups
from central.reporting.registry import display_name
from central.reporting.registry_cache import hall_names

STAFF_NAME_DOC = "工作人员姓名 (hall setup); null where the setup does not name the person"


@dataclass(frozen=True, slots=True)
class Names:
    halls: Mapping[str, str]
    staff: dict[tuple[str, str], str]

    def hall(self, hall: str) -> str:
        return display_name(self.halls, hall)

    def person(self, hall: str | None, staff: str | None) -> str | None:
        return setups.name_of(self.staff, hall, staff)


async def names_for(conn: AsyncConnection, halls: Iterable[str] | None) -> Names:
    """The names of ``halls`` (None: every hall) and of the staff their setups list."""
    if halls is None:
        staff = await setups.staff_names(conn)
    else:
        wanted = sorted(set(halls))
        staff = await setups.staff_names(conn, wanted) if wanted else {}
    return Names(await hall_names(conn), staff)
