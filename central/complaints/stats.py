"""The complaint indicators (central/rules/INDICATORS.md): 投诉数 and 投诉按时办结率, per hall,
per department or overall, over complaints received in a date range.

投诉按时办结率 = complaints answered (已答复 or 已办结) by their reply deadline ÷ complaints
due: those accepted for handling (not 不予受理) whose reply deadline has passed or that have
been answered. A complaint still open and not yet due counts in neither."""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from central.complaints.model import ANSWERED_STATES, ComplaintState
from central.complaints.store import scope_clause
from central.security.tokens import Principal
from central.store.schema_complaints import complaints

Grouping = Literal["hall", "department", "all"]
UNKNOWN = ""  # the group of complaints with no hall (or no department yet)


@dataclass(frozen=True, slots=True)
class ComplaintStat:
    group: str  # hall id, department, or "" (unknown / overall)
    received: int  # 投诉数
    rejected: int  # 不予受理
    open: int
    overdue: int  # open past the reply deadline
    due: int  # 投诉按时办结率's denominator
    on_time: int  # … and numerator

    @property
    def on_time_rate(self) -> float | None:
        return None if self.due == 0 else self.on_time / self.due


def summarise(rows: Iterable[Any], today: dt.date, group_of: Any) -> list[ComplaintStat]:
    """Pure: rows need state, reply_due, replied_on."""
    counts: dict[str, list[int]] = defaultdict(lambda: [0] * 6)
    for row in rows:
        c = counts[group_of(row) or UNKNOWN]
        state = ComplaintState(row.state)
        answered = state in ANSWERED_STATES
        late = today > row.reply_due
        c[0] += 1
        c[1] += state is ComplaintState.REJECTED
        c[2] += state.open
        c[3] += state.open and late
        if state is not ComplaintState.REJECTED and (answered or late):
            c[4] += 1
            c[5] += answered and row.replied_on is not None and row.replied_on <= row.reply_due
    return [ComplaintStat(g, *v) for g, v in sorted(counts.items())]


async def stats(
    conn: AsyncConnection,
    who: Principal,
    first: dt.date,
    last: dt.date,
    today: dt.date,
    grouping: Grouping = "all",
    hall: str | None = None,
) -> list[ComplaintStat]:
    c = complaints.c
    query = select(c.hall_id, c.department, c.state, c.reply_due, c.replied_on).where(
        scope_clause(who), c.received_on >= first, c.received_on <= last
    )
    if hall is not None:
        query = query.where(c.hall_id == hall)
    rows = (await conn.execute(query)).all()
    if grouping == "hall":
        return summarise(rows, today, lambda r: r.hall_id)
    if grouping == "department":
        return summarise(rows, today, lambda r: r.department)
    return summarise(rows, today, lambda r: UNKNOWN) or [ComplaintStat(UNKNOWN, 0, 0, 0, 0, 0, 0)]


CSV_HEADERS = {
    "zh": [
        "承办部门",
        "投诉数",
        "不予受理",
        "未办结",
        "逾期未答复",
        "应按时答复",
        "按时答复",
        "投诉按时办结率",
    ],
    "en": [
        "department",
        "received",
        "rejected",
        "open",
        "overdue",
        "due",
        "on_time",
        "on_time_rate",
    ],
}


def csv_rows(found: Iterable[ComplaintStat]) -> list[list[object]]:
    """The 通报's CSV part ``complaints``: one row per department (\"\": not routed yet)."""
    return [
        [
            s.group, s.received, s.rejected, s.open, s.overdue, s.due, s.on_time,
            "" if s.on_time_rate is None else f"{s.on_time_rate * 100:.1f}%",
        ]
        for s in found
    ]  # fmt: skip
