"""Which halls and departments central knows, so an account is never scoped to a typo.

A hall is known once the registry of halls lists it, a gateway is registered for it, its setup
is stored, or cases name it; a department once cases or a hall's window roster name it."""

from __future__ import annotations

import difflib

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from central.store.schema import cases, gateways
from central.store.schema_correlation import hall_setups
from central.store.schema_halls import halls
from hallkit.login.accounts import AccountError

NEAR_MATCHES = 5


async def known_halls(engine: AsyncEngine) -> set[str]:
    async with engine.connect() as conn:
        found: set[str] = set()
        for column in (halls.c.hall_id, gateways.c.hall_id, hall_setups.c.hall_id, cases.c.hall_id):
            found.update((await conn.execute(select(column).distinct())).scalars())
    return found


async def known_departments(engine: AsyncEngine) -> set[str]:
    async with engine.connect() as conn:
        found = set((await conn.execute(select(cases.c.department).distinct())).scalars())
        for setup in (await conn.execute(select(hall_setups.c.setup))).scalars():
            windows = setup.get("windows", {}) if isinstance(setup, dict) else {}
            found.update(str(d) for d in windows.values())
    return found


def _refusal(what_zh: str, what: str, value: str, known: set[str]) -> AccountError:
    near = difflib.get_close_matches(value, sorted(known), n=NEAR_MATCHES, cutoff=0.4)
    if near:
        hint = f"相近的有 / did you mean: {', '.join(near)}"
    elif known:
        hint = f"已知的有 / known: {', '.join(sorted(known)[:10])}" + (
            " …" if len(known) > 10 else ""
        )
    else:
        hint = f"中心尚不知道任何{what_zh} / central knows no {what} yet"
    return AccountError(f"{what_zh} {value} 不存在 / no such {what} {value!r}; {hint}")


async def check_scope_exists(engine: AsyncEngine, hall: str | None, department: str | None) -> None:
    """AccountError naming the near matches if the hall or department is not known."""
    if hall is not None:
        halls = await known_halls(engine)
        if hall not in halls:
            raise _refusal("大厅", "hall", hall, halls)
    if department is not None:
        departments = await known_departments(engine)
        if department not in departments:
            raise _refusal("部门", "department", department, departments)
