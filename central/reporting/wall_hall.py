"""The 大屏's drill-down into one hall: its departments and windows with their states, and the
cases running late. Read from the store for one hall (every query narrowed to it)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from central.reporting import wall_store
from central.reporting.halls import stored_setups, with_defaults
from central.reporting.wall import (
    TREND_DAYS,
    HallLive,
    KeyCounts,
    days_back,
    hall_state,
    lights_doc,
    rate,
)
from central.rules.indicators import Ratio
from central.rules.timelimit import LadderStage
from central.rules.workdays import day_start
from central.store.schema import cases
from central.store.schema_cases import case_ladder

OVERDUE_SHOWN = 20
# the lights a drill-down lists, worst first
LATE = (
    LadderStage.SUPERVISION_LETTER,
    LadderStage.RED_CARD,
    LadderStage.YELLOW_CARD,
    LadderStage.RED_LIGHT,
)


async def hall_detail(
    conn: AsyncConnection, hall: str, name: str, live: HallLive, today: dt.date
) -> dict[str, Any]:
    first = days_back(today, TREND_DAYS)[0]
    by_department = await wall_store.open_stages(conn, hall, by=cases.c.department)
    by_window = await wall_store.open_stages(conn, hall, by=cases.c.window)
    window_today = await wall_store.keys_by_window(conn, today, today, hall)
    window_30d = await wall_store.keys_by_window(conn, first, today, hall)
    ontime = await wall_store.ontime_by(conn, first, today, by=cases.c.department, hall=hall)
    staff = await wall_store.window_staff(conn, hall, today)
    stored = (await stored_setups(conn, [hall])).get(hall)
    accepted = (
        await conn.execute(
            select(cases.c.window, cases.c.department).where(
                cases.c.hall_id == hall, cases.c.accepted_at >= day_start(first)
            )
        )
    ).all()
    setup = with_defaults(hall, stored, [(w, d) for w, d in accepted])
    late = (
        await conn.execute(
            select(cases.c.case_no, cases.c.item_name, case_ladder.c.stage)
            .join(case_ladder, case_ladder.c.case_no == cases.c.case_no)
            .where(
                cases.c.hall_id == hall,
                case_ladder.c.settled.is_(False),
                case_ladder.c.stage.in_([s.value for s in LATE]),
            )
        )
    ).all()
    return detail_doc(
        hall=hall,
        name=name,
        live=live,
        by_department=by_department,
        by_window={int(w): s for w, s in by_window.items() if w is not None},
        window_today=window_today,
        window_30d=window_30d,
        ontime={d: r for (_, d), r in ontime.items()},
        roster={int(w): d for w, d in setup.windows.items() if w.isdigit()},
        staff_names={w: setup.staff.get(number) for w, number in staff.items()},
        late=[(no, item, stage) for no, item, stage in late],
    )


def detail_doc(
    *,
    hall: str,
    name: str,
    live: HallLive,
    by_department: Mapping[str, Mapping[str, int]],
    by_window: Mapping[int, Mapping[str, int]],
    window_today: Mapping[tuple[str, int], KeyCounts],
    window_30d: Mapping[tuple[str, int], KeyCounts],
    ontime: Mapping[str, Ratio],
    roster: Mapping[int, str],
    staff_names: Mapping[int, str | None],
    late: list[tuple[str, str, str]],
) -> dict[str, Any]:
    """The drill-down's JSON on plain values (the contract's ``/api/v1/wall/hall/{id}``)."""

    def state(stages: Mapping[str, int]) -> str:
        return hall_state(
            stages, gateways=live.gateways, online=live.online, open_now=live.open_now
        ).value

    department_keys: dict[str, KeyCounts] = {}
    for (_, window), counts in window_30d.items():
        if window in roster:
            d = roster[window]
            department_keys[d] = department_keys.get(d, KeyCounts()) + counts
    departments = sorted(set(by_department) | set(ontime) | set(department_keys))
    windows = sorted(set(roster) | set(by_window) | {w for _, w in window_today})
    order = {s.value: i for i, s in enumerate(LATE)}
    return {
        "hall_id": hall,
        "name": name,
        "state": live.state.value,
        "departments": [
            {
                "id": d,
                "name": d,
                "state": state(by_department.get(d, {})),
                **_counts(by_department.get(d, {})),
                "satisfaction_30d": rate(department_keys.get(d, KeyCounts()).satisfaction),
                "ontime_30d": rate(ontime.get(d, Ratio(0, 0))),
            }
            for d in departments
        ],
        "windows": [
            {
                "window": w,
                "staff_name": staff_names.get(w),
                "state": state(by_window.get(w, {})),
                "evaluations_today": window_today.get((hall, w), KeyCounts()).counted,
                "bad_today": window_today.get((hall, w), KeyCounts()).bad,
            }
            for w in windows
        ],
        "cases_overdue": [
            {"case_no": no, "item": item, "light": stage}
            for no, item, stage in sorted(late, key=lambda c: (order.get(c[2], 9), c[0]))[
                :OVERDUE_SHOWN
            ]
        ],
    }


def _counts(stages: Mapping[str, int]) -> dict[str, Any]:
    doc = lights_doc(stages)
    return {"lights": doc["lights"], "cards": doc["cards"]}
