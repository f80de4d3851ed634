"""Role scope and shared query pieces of the correlation routes (evaluations, sessions,
follow-up, indicators).

Who reaches what is central.security.access's table: supervisors every hall; hall managers their own
hall; department leaders the evaluations correlated to their department's cases and what
follows from them; technicians none of it (people's work, not devices). Something outside the
caller's scope answers exactly like something that does not exist.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import HTTPException, Query, Request, status
from sqlalchemy import ColumnElement, and_, exists, select
from sqlalchemy.ext.asyncio import AsyncEngine

from central.reporting.registry import Halls, hall_clause
from central.rules.workdays import WorkCalendar
from central.security.access import REFUSED, Area, Reach, reach
from central.security.tokens import Principal
from central.store.schema import cases
from central.store.schema_correlation import (
    correlation_case_links,
    correlation_heads,
    correlation_results,
)

MAX_RANGE_DAYS = 366
EARLIEST, LATEST = dt.date(2000, 1, 1), dt.date(2099, 12, 31)  # outside: nobody's records


# the business-day range every list route takes (``from`` is a Python keyword)
FromDay = Annotated[dt.date | None, Query(alias="from", description="first business day")]
ToDay = Annotated[dt.date | None, Query(description="last business day (default today)")]


@dataclass(frozen=True, slots=True)
class Scope:
    hall: str | None  # only this hall
    department: str | None  # only what is correlated to this department's cases
    halls: frozenset[str] | None = None  # only these (a hall manager's subtree), if no hall

    @property
    def reach(self) -> Halls:
        """The halls as one filter (None: every hall)."""
        return self.hall if self.hall is not None else self.halls

    def narrow(self, column: Any) -> ColumnElement[bool]:
        return hall_clause(column, self.reach)


def scope_of(who: Principal, hall: str | None, area: Area = Area.EVALUATIONS) -> Scope:
    """The caller's reach in ``area`` (central.security.access) as a hall and department filter."""
    found = reach(who, area)
    if found is Reach.OWN_HALL:  # the hall and every hall below it
        if hall is not None and hall not in who.halls:
            raise HTTPException(status.HTTP_403_FORBIDDEN, "无权查看该大厅 / not your hall")
        if hall is None and who.below:
            return Scope(None, None, who.halls)
        return Scope(hall or who.hall, None)
    if found is Reach.OWN_DEPARTMENT:
        return Scope(hall, who.department)
    if found is Reach.EVERY_HALL:
        return Scope(hall, None)
    raise HTTPException(status.HTTP_403_FORBIDDEN, REFUSED)


def period(first: dt.date | None, last: dt.date | None) -> tuple[dt.date, dt.date]:
    today = dt.datetime.now(dt.UTC).astimezone(dt.timezone(dt.timedelta(hours=8))).date()
    last = last or today
    first = first or last
    if last < first:
        raise HTTPException(422, "结束日期早于开始日期 / 'to' is before 'from'")
    if first < EARLIEST or last > LATEST:
        raise HTTPException(
            422,
            f"日期须在 {EARLIEST} 至 {LATEST} 之间 / dates must lie "
            f"between {EARLIEST} and {LATEST}",
        )
    if (last - first).days >= MAX_RANGE_DAYS:
        raise HTTPException(
            422, f"日期范围不超过 {MAX_RANGE_DAYS} 天 / at most {MAX_RANGE_DAYS} days per request"
        )
    return first, last


def current_join() -> Any:
    r, h = correlation_results, correlation_heads
    return h.join(
        r, and_(r.c.gateway_id == h.c.gateway_id, r.c.seq == h.c.seq, r.c.version == h.c.version)
    )


def linked_to_department(department: str) -> ColumnElement[bool]:
    """The current result of the row in hand is linked to one of the department's cases."""
    h, links = correlation_heads, correlation_case_links
    return exists(
        select(1)
        .select_from(links.join(cases, cases.c.case_no == links.c.case_no))
        .where(
            links.c.gateway_id == h.c.gateway_id,
            links.c.seq == h.c.seq,
            links.c.version == h.c.version,
            cases.c.department == department,
        )
    )


def calendar_for(request: Request, engine: AsyncEngine) -> WorkCalendar:
    """The site calendar the case context was built with, else chinese-calendar alone."""
    from central.cases.context import bound

    context = getattr(request.app.state, "cases", None) or bound(engine)
    return context.calendar if context is not None else WorkCalendar()


def encode_cursor(*values: Any) -> str:
    raw = json.dumps(
        [v.isoformat() if isinstance(v, dt.datetime | dt.date) else v for v in values]
    ).encode()
    return base64.urlsafe_b64encode(raw).decode()


def decode_cursor(text: str, n: int) -> list[Any]:
    try:
        values = json.loads(base64.urlsafe_b64decode(text.encode()))
        if not isinstance(values, list) or len(values) != n:
            raise ValueError("wrong shape")
        return values
    except (ValueError, TypeError) as exc:
        raise HTTPException(422, "无效的分页游标 / invalid cursor") from exc
