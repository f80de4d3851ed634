"""月度通报: the monthly bulletin per department and hall — indicators, rankings, bad reviews
and overdue cases — as a document, and as CSV that Excel opens (UTF-8 with a BOM).

Gaming (异常线索) is listed only once a supervisor confirmed it (``central.gaming.confirmed``).
Built within the caller's scope (a hall manager's bulletin is the hall's, a department
leader's the department's). A month still running is reported up to today.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import and_, or_, select
from sqlalchemy.ext.asyncio import AsyncEngine

from central.audits import report as audit_report
from central.complaints import stats as complaint_csv
from central.complaints.stats import ComplaintStat
from central.complaints.stats import stats as complaint_stats
from central.gaming import confirmed as confirmed_gaming
from central.reporting import bulletin_figures, halls, scorecard
from central.reporting.registry import display_name
from central.reporting.registry_cache import hall_names
from central.rules.indicators import DateRange, Grouping, GroupKey, Indicators, Ratio
from central.rules.scale import DeviceKey
from central.rules.timelimit import LadderStage
from central.rules.workdays import WorkCalendar, business_date, day_start
from central.security.access import Area
from central.security.tokens import Principal, Role
from central.store.schema import cases
from central.store.schema_cases import case_ladder
from central.store.schema_correlation import correlation_heads, correlation_results, followups

MAX_LIST = 500  # bad reviews / overdue cases listed in one bulletin (the CSV says if cut)


def month_range(month: str, today: dt.date) -> DateRange:
    """'2026-11' → 2026-11-01 … 2026-11-30, or … today while the month runs."""
    year, number = (int(p) for p in month.split("-"))
    first = dt.date(year, number, 1)
    following = dt.date(year + number // 12, number % 12 + 1, 1)
    last = following - dt.timedelta(days=1)
    if first > today:
        raise ValueError("月份尚未开始 / that month has not begun")
    return DateRange(first, min(last, today))


@dataclass(frozen=True, slots=True)
class Ranked:
    indicators: Indicators
    satisfaction_rank: int | None  # None: no evaluations
    on_time_rank: int | None  # None: nothing completed with a deadline


def _rank(
    groups: Sequence[Indicators], value: Callable[[Indicators], float | None]
) -> list[int | None]:
    """Competition ranking (1, 2, 2, 4) by value, highest first; no-data groups unranked.
    By position in ``groups`` (10,000 groups of a province: no hashing of their keys)."""
    scored = sorted(
        ((v, i) for i, g in enumerate(groups) if (v := value(g)) is not None), key=lambda p: -p[0]
    )
    ranks: list[int | None] = [None] * len(groups)
    for n, (v, i) in enumerate(scored):
        ranks[i] = ranks[scored[n - 1][1]] if n and scored[n - 1][0] == v else n + 1
    return ranks


def ranked(result: dict[GroupKey, Indicators]) -> list[Ranked]:
    groups = scorecard.sorted_groups(result)
    satisfaction = _rank(groups, lambda g: g.satisfaction_rate.value)
    on_time = _rank(groups, lambda g: g.on_time_rate.value)
    return [Ranked(*ranks) for ranks in zip(groups, satisfaction, on_time, strict=True)]


async def _overdue_cases(
    engine: AsyncEngine, who: Principal, period: DateRange
) -> tuple[list[dict[str, Any]], bool]:
    """Cases overdue in the month: completed late in it, or open past the deadline at its end
    (as the ladder job last saw them)."""
    lad = case_ladder.c
    end = day_start(period.last + dt.timedelta(days=1))
    query = (
        select(cases, lad.stage, lad.deadline, lad.days_over)
        .join(case_ladder, lad.case_no == cases.c.case_no)
        .where(
            scorecard.case_scope(who),
            lad.overdue.is_(True),
            cases.c.accepted_at < end,
            or_(
                and_(cases.c.completed_at >= day_start(period.first), cases.c.completed_at < end),
                cases.c.completed_at.is_(None),
            ),
        )
        .order_by(cases.c.hall_id, cases.c.department, lad.days_over.desc(), cases.c.case_no)
        .limit(MAX_LIST + 1)
    )
    async with engine.connect() as conn:
        rows = (await conn.execute(query)).all()
    items = [
        {
            "case_no": r.case_no,
            "item_name": r.item_name,
            "department": r.department,
            "hall": r.hall_id,
            "window": r.window,
            "staff": r.staff,
            "accepted_at": r.accepted_at,
            "deadline": r.deadline,
            "days_over": r.days_over,
            "completed_at": r.completed_at,
            "stage": r.stage,
            "stage_label": LadderStage(r.stage).label if r.stage else None,
        }
        for r in rows[:MAX_LIST]
    ]
    return items, len(rows) > MAX_LIST


async def _bad_reviews(
    engine: AsyncEngine, who: Principal, period: DateRange
) -> tuple[list[dict[str, Any]], bool]:
    """Counted bad reviews (keys 3–6) evaluated in the month, with their follow-up state."""
    results, heads = correlation_results, correlation_heads
    query = (
        select(
            results,
            followups.c.state.label("fu_state"),
            followups.c.due.label("fu_due"),
            followups.c.escalation_level.label("fu_level"),
        )
        .join(
            heads,
            and_(
                heads.c.gateway_id == results.c.gateway_id,
                heads.c.seq == results.c.seq,
                heads.c.version == results.c.version,
            ),
        )
        .outerjoin(
            followups,
            and_(followups.c.gateway_id == results.c.gateway_id, followups.c.seq == results.c.seq),
        )
        .where(
            results.c.business_day >= period.first,
            results.c.business_day <= period.last,
            results.c.counted.is_(True),
            results.c.key >= 3,
            scorecard.hall_scope(who, results.c.hall_id),
        )
        .order_by(results.c.evaluated_at, results.c.gateway_id, results.c.seq)
    )
    async with engine.connect() as conn:
        department_cases: set[str] | None = None
        if who.role is Role.DEPARTMENT_LEADER:
            department_cases = {
                r.case_no
                for r in await conn.execute(
                    select(cases.c.case_no).where(scorecard.case_scope(who))
                )
            }
        rows = (await conn.execute(query)).all()
    items = []
    for r in rows:
        linked = [str(c) for c in r.case_nos or []]
        if department_cases is not None and not department_cases.intersection(linked):
            continue
        items.append(
            {
                "gateway": r.gateway_id,
                "seq": r.seq,
                "hall": r.hall_id,
                "window": r.window,
                "staff": r.staff,
                "key": r.key,
                "reason": DeviceKey(r.key).label,
                "evaluated_at": r.evaluated_at,
                "case_nos": linked,
                "followup_state": r.fu_state,
                "followup_due": r.fu_due,
                "escalation_level": r.fu_level,
            }
        )
    return items[:MAX_LIST], len(items) > MAX_LIST


@dataclass(frozen=True, slots=True)
class Bulletin:
    month: str
    period: DateRange
    generated_at: dt.datetime
    correlated: bool
    halls: list[Ranked]
    departments: list[Ranked]
    overall: Indicators | None
    bad_reviews: list[dict[str, Any]]
    bad_reviews_cut: bool
    overdue_cases: list[dict[str, Any]]
    overdue_cases_cut: bool
    hall_names: Mapping[str, str] = field(default_factory=dict)  # the registry's 名称 by hall id
    gaming: list[dict[str, Any]] = field(default_factory=list)  # confirmed anomaly cases
    audits: audit_report.AuditSection | None = None  # 抽查: the month's sample and findings
    # 投诉数 and 投诉按时办结率 per department the complaints were routed to (INDICATORS.md)
    complaints: list[ComplaintStat] = field(default_factory=list)


async def build(
    engine: AsyncEngine, who: Principal, month: str, calendar: WorkCalendar, now: dt.datetime
) -> Bulletin:
    period = month_range(month, business_date(now))
    names: dict[tuple[str, str], str] | None = None
    if who.role is Role.DEPARTMENT_LEADER:
        by_group, names = await bulletin_figures.from_facts(engine, who, period, calendar)
    else:
        by_group = await bulletin_figures.from_rollups(engine, who, period, calendar)
    bad, bad_cut = await _bad_reviews(engine, who, period)
    overdue, overdue_cut = await _overdue_cases(engine, who, period)
    async with engine.connect() as conn:
        registered = await hall_names(conn)
        gaming = await confirmed_gaming.confirmed(conn, who, period.first, period.last)
        audits = await audit_report.section(conn, who, month, Area.EVALUATIONS)
        if names is None:
            listed = {item["hall"] for item in (*bad, *overdue, *gaming)}
            names = await halls.staff_names(conn, sorted(listed))
        complained = await complaint_stats(
            conn, who, period.first, period.last, business_date(now), "department"
        )
    for item in (*bad, *overdue, *gaming):
        item["staff_name"] = names.get((item["hall"], item["staff"] or ""))
        item["hall_name"] = display_name(registered, item["hall"])
    return Bulletin(
        month=month,
        period=period,
        generated_at=now,
        correlated=await scorecard.correlated(engine, period),
        halls=ranked(by_group[Grouping.HALL]),
        departments=ranked(by_group[Grouping.DEPARTMENT]),
        overall=next(iter(by_group[Grouping.ALL].values()), None),
        bad_reviews=bad,
        bad_reviews_cut=bad_cut,
        overdue_cases=overdue,
        overdue_cases_cut=overdue_cut,
        hall_names=registered,
        gaming=gaming,
        audits=audits,
        complaints=[c for c in complained if c.received],
    )


# ------------------------------------------------------------------------------------- CSV


def percent(r: Ratio) -> str:
    """'92.5%' (Excel reads it as a number); empty when there is no data."""
    v = r.value
    return "" if v is None else f"{v * 100:.1f}%"


def _num(r: Ratio, digits: int = 1) -> str:
    v = r.value
    return "" if v is None else f"{v:.{digits}f}"


def _count(r: Ratio) -> str:
    return f"{r.numerator:g}/{r.denominator:g}" if r.denominator else ""


HEADERS = {
    "indicators": {
        "zh": [
            "级别",
            "大厅",
            "大厅名称",
            "部门",
            "满意率排名",
            "按时办结率排名",
            "群众满意率",
            "评价数",
            "差评数",
            "差评率",
            "评价率",
            "按时办结率",
            "按时办结/办结",
            "平均办理时长（工作日）",
            "超时件数",
            "提前办结率",
            "现场办结率",
            "承诺提速率",
            "办理提速率",
            "平均等候（分钟）",
            "过号率",
            "在岗率",
        ],
        "en": [
            "level",
            "hall",
            "hall name",
            "department",
            "satisfaction rank",
            "on-time rank",
            "satisfaction",
            "evaluations",
            "bad reviews",
            "bad-review rate",
            "evaluation rate",
            "on-time rate",
            "on time/completed",
            "avg handling (working days)",
            "overdue",
            "early completion",
            "same-day completion",
            "promise speed-up",
            "handling speed-up",
            "avg wait (min)",
            "no-show rate",
            "staffed rate",
        ],
    },
    "bad_reviews": {
        "zh": [
            "评价时间",
            "大厅",
            "大厅名称",
            "窗口",
            "工号",
            "姓名",
            "差评原因",
            "关联办件",
            "整改状态",
            "整改期限",
            "督办级别",
            "网关",
            "序号",
        ],
        "en": [
            "evaluated at",
            "hall",
            "hall name",
            "window",
            "staff",
            "name",
            "reason",
            "cases",
            "follow-up state",
            "due",
            "escalation level",
            "gateway",
            "seq",
        ],
    },
    "overdue": {
        "zh": [
            "办件编号",
            "事项名称",
            "部门",
            "大厅",
            "大厅名称",
            "窗口",
            "工号",
            "姓名",
            "受理时间",
            "办理期限",
            "超期工作日",
            "办结时间",
            "预警状态",
        ],
        "en": [
            "case",
            "item",
            "department",
            "hall",
            "hall name",
            "window",
            "staff",
            "name",
            "accepted at",
            "deadline",
            "working days over",
            "completed at",
            "ladder stage",
        ],
    },
}
HEADERS["gaming"] = confirmed_gaming.CSV_HEADERS  # confirmed 异常线索 (central.gaming.confirmed)
HEADERS["audits"] = audit_report.CSV_HEADERS  # 抽查回访 (central.audits.report)
HEADERS["complaints"] = complaint_csv.CSV_HEADERS  # 网上投诉 per department
REASON_EN = {3: "bad attitude", 4: "took too long", 5: "unfamiliar with the business", 6: "other"}
LEVEL = {
    "zh": {"all": "合计", "hall": "大厅", "department": "部门"},
    "en": {"all": "total", "hall": "hall", "department": "department"},
}


def _beijing(moment: dt.datetime | None) -> str:
    if moment is None:
        return ""
    return moment.astimezone(dt.timezone(dt.timedelta(hours=8))).strftime("%Y-%m-%d %H:%M")


def _indicator_row(
    level: str, lang: str, item: Ranked | None, ind: Indicators, names: Mapping[str, str]
) -> list[Any]:
    g = ind.group
    return [
        LEVEL[lang][level],
        g.hall or "",
        "" if g.hall is None else display_name(names, g.hall),
        g.department or "",
        "" if item is None or item.satisfaction_rank is None else item.satisfaction_rank,
        "" if item is None or item.on_time_rank is None else item.on_time_rank,
        percent(ind.satisfaction_rate),
        f"{ind.satisfaction_rate.denominator:g}",
        sum(ind.bad_reviews.values()),
        percent(ind.bad_review_rate),
        percent(ind.evaluation_rate),
        percent(ind.on_time_rate),
        _count(ind.on_time_rate),
        _num(ind.avg_handling_days),
        ind.overdue_count,
        percent(ind.early_completion_rate),
        percent(ind.same_day_rate),
        percent(ind.promise_speedup),
        percent(ind.handling_speedup),
        _num(ind.avg_wait_minutes),
        percent(ind.no_show_rate),
        percent(ind.staffed_rate),
    ]


def to_csv(bulletin: Bulletin, part: str, lang: str) -> bytes:
    """One part of the bulletin as CSV, UTF-8 with a BOM so that Excel shows the Chinese."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(HEADERS[part][lang])
    names = bulletin.hall_names
    if part == "indicators":
        if bulletin.overall is not None:
            writer.writerow(_indicator_row("all", lang, None, bulletin.overall, names))
        for item in bulletin.halls:
            writer.writerow(_indicator_row("hall", lang, item, item.indicators, names))
        for item in bulletin.departments:
            writer.writerow(_indicator_row("department", lang, item, item.indicators, names))
    elif part == "bad_reviews":
        for b in bulletin.bad_reviews:
            writer.writerow(
                [
                    _beijing(b["evaluated_at"]),
                    b["hall"],
                    b["hall_name"],
                    b["window"],
                    b["staff"] or "",
                    b.get("staff_name") or "",
                    b["reason"] if lang == "zh" else REASON_EN.get(b["key"], ""),
                    " ".join(b["case_nos"]),
                    b["followup_state"] or "",
                    b["followup_due"] or "",
                    b["escalation_level"] if b["escalation_level"] is not None else "",
                    b["gateway"],
                    b["seq"],
                ]
            )
    elif part == "gaming":
        for g in bulletin.gaming:
            writer.writerow(confirmed_gaming.csv_row(g, _beijing))
    elif part == "audits":
        writer.writerows(audit_report.csv_rows(bulletin.audits))
    elif part == "complaints":
        writer.writerows(complaint_csv.csv_rows(bulletin.complaints))
    else:
        for c in bulletin.overdue_cases:
            writer.writerow(
                [
                    c["case_no"],
                    c["item_name"],
                    c["department"],
                    c["hall"],
                    c["hall_name"],
                    c["window"] if c["window"] is not None else "",
                    c["staff"] or "",
                    c.get("staff_name") or "",
                    _beijing(c["accepted_at"]),
                    c["deadline"] or "",
                    c["days_over"] if c["days_over"] is not None else "",
                    _beijing(c["completed_at"]),
                    c["stage_label"] or "",
                ]
            )
    cut = {"bad_reviews": bulletin.bad_reviews_cut, "overdue": bulletin.overdue_cases_cut}
    if cut.get(part):
        writer.writerow([f"… 仅列出前 {MAX_LIST} 条 / only the first {MAX_LIST} rows"])
    return "\ufeff".encode() + out.getvalue().encode("utf-8")
