"""Confirmed gaming, for the 通报 and the staff scorecard: only cases a supervisor confirmed
(their latest decision) count; open and dismissed ones never do.

Scope is the ``anomalies`` row of the access table: supervisors every hall, a hall manager the
hall and the halls below it; a role outside it (a department leader) sees none here.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Callable
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from central.gaming.casebook import Status, with_status
from central.security.access import Area, Reach, reach
from central.security.tokens import Principal


async def confirmed(
    conn: AsyncConnection,
    who: Principal,
    first: dt.date,
    last: dt.date,
    *,
    hall: str | None = None,
) -> list[dict[str, Any]]:
    """The confirmed cases whose period touches first … last, by hall, window, staff."""
    found = reach(who, Area.ANOMALIES)
    if found is Reach.NONE:
        return []
    status = with_status().subquery()
    query = (
        select(status)
        .where(
            status.c.status == Status.CONFIRMED.value,
            status.c.period_end >= first,
            status.c.period_start <= last,
        )
        .order_by(status.c.hall_id, status.c.window, status.c.staff, status.c.period_start)
    )
    if found is Reach.OWN_HALL:
        query = query.where(status.c.hall_id.in_(sorted(who.halls)))
    if hall is not None:
        query = query.where(status.c.hall_id == hall)
    rows = (await conn.execute(query)).all()
    return [
        {
            "id": r.id,
            "pattern": r.pattern,
            "hall": r.hall_id,
            "window": r.window,
            "staff": r.staff,
            "period_start": r.period_start,
            "period_end": r.period_end,
            "summary": r.summary,
            "p_value": r.p_value,
            "effect": r.effect,
            "effect_name": r.effect_name,
            "confirmed_at": r.decided_at,
            "note": r.decision_note,
        }
        for r in rows
    ]


def per_staff(items: list[dict[str, Any]]) -> Counter[tuple[str, str]]:
    """(hall, staff) → confirmed cases naming that staff member."""
    return Counter((i["hall"], i["staff"]) for i in items if i["staff"])


CSV_HEADERS = {
    "zh": [
        "大厅",
        "大厅名称",
        "窗口",
        "工号",
        "姓名",
        "线索类型",
        "起始",
        "截止",
        "p 值",
        "效应量",
        "概述",
        "核实时间",
        "核实意见",
        "线索编号",
    ],
    "en": [
        "hall",
        "hall name",
        "window",
        "staff",
        "name",
        "pattern",
        "from",
        "to",
        "p-value",
        "effect",
        "summary",
        "confirmed at",
        "note",
        "case id",
    ],
}


def csv_row(item: dict[str, Any], beijing: Callable[[dt.datetime | None], str]) -> list[Any]:
    """One confirmed case as a row of the 通报's ``gaming`` CSV."""
    p_value = item["p_value"]
    return [
        item["hall"],
        item.get("hall_name") or item["hall"],
        "" if item["window"] is None else item["window"],
        item["staff"] or "",
        item.get("staff_name") or "",
        item["pattern"],
        item["period_start"],
        item["period_end"],
        "" if p_value is None else f"{p_value:.2g}",
        f"{item['effect_name']} = {item['effect']:.2f}",
        item["summary"],
        beijing(item["confirmed_at"]),
        item["note"],
        item["id"],
    ]


__all__ = ["CSV_HEADERS", "confirmed", "csv_row", "per_staff"]
