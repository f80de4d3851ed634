"""抽查 in the 月度通报 and the findings list: per department, how many cases were drawn out of
how many finished, how many call-backs reached the citizen, and which cases they contradicted.

The month of an audit is the month its cases were finished (the sample's month), so the
bulletin of November shows November's sample, whenever its call-backs were made.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from sqlalchemy.ext.asyncio import AsyncConnection

from central.audits import store
from central.security.access import Area, Reach, reach
from central.security.tokens import Principal


@dataclass(frozen=True, slots=True)
class Finding:
    task_id: int
    case_no: str
    department: str
    hall: str
    discrepancies: list[str]
    note: str
    entered_at: dt.datetime


@dataclass(slots=True)
class DepartmentAudit:
    department: str
    population: int | None  # finished in the month (None: the caller sees part of it only)
    sampled: int = 0
    called: int = 0  # tasks with a call-back entered
    reached: int = 0  # … whose latest call-back reached the citizen (completed call-backs)
    discrepancies: int = 0
    case_nos: list[str] = field(default_factory=list)  # the cases with a finding


@dataclass(frozen=True, slots=True)
class AuditSection:
    month: str
    drawn: bool
    seed: str | None
    departments: list[DepartmentAudit]


CSV_HEADERS = {
    "zh": ["部门", "办结件数", "抽取件数", "已录入回访", "完成回访", "发现问题", "问题办件"],
    "en": [
        "department",
        "finished",
        "drawn",
        "call-backs entered",
        "completed call-backs",
        "findings",
        "cases with findings",
    ],
}


def csv_rows(section: AuditSection | None) -> list[list[object]]:
    """The section's rows for the bulletin's CSV (none before the month is drawn)."""
    return [
        [
            d.department,
            "" if d.population is None else d.population,
            d.sampled,
            d.called,
            d.reached,
            d.discrepancies,
            " ".join(d.case_nos),
        ]
        for d in (section.departments if section is not None else [])
    ]


async def findings(conn: AsyncConnection, who: Principal, month: str, area: Area) -> list[Finding]:
    found = []
    for row in await store.tasks(conn, who, month, area=area):
        if row.cb_discrepancies:
            latest = await store.callbacks(conn, row.id)
            found.append(
                Finding(
                    task_id=row.id,
                    case_no=row.case_no,
                    department=row.department,
                    hall=row.hall_id,
                    discrepancies=list(row.cb_discrepancies),
                    note=latest[-1].note,
                    entered_at=row.cb_entered_at,
                )
            )
    return found


async def section(conn: AsyncConnection, who: Principal, month: str, area: Area) -> AuditSection:
    """The bulletin's audit section within ``who``'s reach in ``area`` (the bulletin's own)."""
    sample = await store.sample_of(conn, month)
    if sample is None:
        return AuditSection(month, False, None, [])
    whole = reach(who, area)
    by_department: dict[str, DepartmentAudit] = {}
    if whole is Reach.EVERY_HALL:
        for name, doc in sample.departments.items():
            by_department[name] = DepartmentAudit(name, int(doc["population"]))
    elif whole is Reach.OWN_DEPARTMENT and who.department in sample.departments:
        doc = sample.departments[who.department]
        by_department[who.department] = DepartmentAudit(who.department, int(doc["population"]))
    for row in await store.tasks(conn, who, month, area=area):
        item = by_department.setdefault(row.department, DepartmentAudit(row.department, None))
        item.sampled += 1
        item.called += row.cb_id is not None
        item.reached += bool(row.cb_reached)
        if row.cb_discrepancies:
            item.discrepancies += 1
            item.case_nos.append(row.case_no)
    return AuditSection(month, True, sample.seed, [by_department[k] for k in sorted(by_department)])
