"""差评 work-order figures: the monthly statistic as provinces publish it (JSON and CSV), and
the indicators 回访率 and 整改按时率 beside the other indicators. Definitions:
central/rules/INDICATORS.md; computation: central.rules.workorder_stats."""

from __future__ import annotations

import csv
import datetime as dt
import io
from typing import Annotated, Literal

from fastapi import APIRouter, Query, Response
from pydantic import BaseModel, Field
from sqlalchemy import or_, select

from central.api.bulletin import Month
from central.api.correlation_scope import period
from central.api.deps import Engine, EvaluationReader, FollowUpCaller, HallQuery
from central.api.followups import scoped_orders
from central.api.indicators import RatioOut
from central.correlation.followups import order_fact
from central.rules import workorder_stats as stats
from central.rules.indicators import DateRange, Ratio
from central.rules.workdays import business_date
from central.security.tokens import Principal
from central.store.schema_correlation import followups

router = APIRouter(prefix="/api/v1", tags=["follow-up"])

CALL_BACK_RATE = "回访率"
RECTIFY_ON_TIME = "整改按时率"
EXPLAIN = {
    "call_back_rate": "开单日在范围内、回访联系到群众的工单 / 开单日在范围内、未经申诉剔除的工单 / "
    "orders opened in the range whose citizen was reached at call-back over those opened and "
    "not taken out by an upheld or pending appeal",
    "rectify_on_time_rate": "整改期限在范围内且按期完成的工单 / 整改期限在范围内且已完成或已过"
    "期限的工单 / rectify stages due in the range finished by their due day over those finished or "
    "past due",
}


class StageOut(BaseModel):
    stage: str
    label: str
    due: int = Field(description="stages whose due day falls in the month")
    on_time: int
    late: int = Field(description="finished after the due day, or open past it")
    pending: int = Field(description="not yet due and still open")
    rate: float | None = Field(description="on_time / (on_time + late)")


class MonthlyOut(BaseModel):
    month: str
    opened: int = Field(description="orders opened in the month")
    closed: int = Field(description="orders closed in the month, whenever opened")
    excluded: int = Field(description="of those opened: taken out by an upheld appeal")
    by_level: dict[str, int] = Field(description="national level label → orders (not excluded)")
    by_tag: dict[str, int] = Field(description="差评原因 tag → orders (not excluded)")
    appeals_filed: int
    appeals_upheld: int
    appeals_rejected: int
    stages: list[StageOut]
    call_back: RatioOut = Field(description="回访率 of the orders opened in the month")
    answers: dict[str, int] = Field(description="the citizen's answers at 回访 → orders")


class WorkOrderIndicatorsOut(BaseModel):
    first: dt.date
    last: dt.date
    ratios: dict[str, RatioOut]


def _ratio(name: str, field: str, r: Ratio) -> RatioOut:
    return RatioOut(
        name=name,
        numerator=r.numerator,
        denominator=r.denominator,
        value=r.value,
        explain=EXPLAIN[field],
    )


async def _facts(
    db: Engine, who: Principal, hall: str | None, first: dt.date, last: dt.date
) -> list[stats.OrderFact]:
    """Orders opened, due or closed around [first, last] (a stage is due at most a few
    months after its order opened)."""
    start = dt.datetime.combine(first - dt.timedelta(days=120), dt.time(), dt.UTC)
    query = scoped_orders(select(followups), who, hall).where(
        or_(followups.c.created_at >= start, followups.c.closed_at.is_(None))
    )
    async with db.connect() as conn:
        rows = (await conn.execute(query)).all()
    return [order_fact(r) for r in rows]


def _today() -> dt.date:
    return business_date(dt.datetime.now(dt.UTC))


def _monthly_out(m: stats.MonthlyStatistic) -> MonthlyOut:
    return MonthlyOut(
        month=m.month,
        opened=m.opened,
        closed=m.closed,
        excluded=m.excluded,
        by_level={lv.label: n for lv, n in m.by_level.items()},
        by_tag={tag.value: n for tag, n in m.by_tag.items()},
        appeals_filed=m.appeals_filed,
        appeals_upheld=m.appeals_upheld,
        appeals_rejected=m.appeals_rejected,
        stages=[
            StageOut(
                stage=s.value,
                label=s.label,
                due=f.due,
                on_time=f.on_time,
                late=f.late,
                pending=f.pending,
                rate=f.rate.value,
            )
            for s, f in m.stages.items()
        ],
        call_back=_ratio(CALL_BACK_RATE, "call_back_rate", m.call_back),
        answers={a.label: n for a, n in m.answers.items()},
    )


async def _monthly(db: Engine, who: Principal, month: str, hall: str | None) -> MonthlyOut:
    span = stats.month_span(month)
    facts = await _facts(db, who, hall, span.first, span.last)
    return _monthly_out(stats.monthly(facts, month, _today()))


@router.get(
    "/followups/statistics",
    response_model=MonthlyOut,
    summary="差评工单月度统计: counts by level and tag, opened/closed, on-time per stage, appeals",
)
async def get_monthly(
    db: Engine, who: FollowUpCaller, month: Month, hall: HallQuery = None
) -> MonthlyOut:
    return await _monthly(db, who, month, hall)


def to_csv(m: MonthlyOut, lang: Literal["zh", "en"]) -> bytes:
    """One row per figure (分项, 项目, 数值), UTF-8 with a BOM so that Excel shows the Chinese."""
    zh = lang == "zh"
    rows: list[tuple[str, str, object]] = [
        ("月份" if zh else "month", "", m.month),
        ("工单" if zh else "orders", "新开" if zh else "opened", m.opened),
        ("工单" if zh else "orders", "办结" if zh else "closed", m.closed),
        ("工单" if zh else "orders", "申诉剔除" if zh else "excluded", m.excluded),
    ]
    rows += [("评价等级" if zh else "level", k, v) for k, v in m.by_level.items()]
    rows += [("差评原因" if zh else "tag", k, v) for k, v in m.by_tag.items()]
    rows += [
        ("申诉" if zh else "appeals", "提出" if zh else "filed", m.appeals_filed),
        ("申诉" if zh else "appeals", "成立" if zh else "upheld", m.appeals_upheld),
        ("申诉" if zh else "appeals", "驳回" if zh else "rejected", m.appeals_rejected),
    ]
    for s in m.stages:
        name = s.label if zh else s.stage
        rows += [
            (name, "到期" if zh else "due", s.due),
            (name, "按期" if zh else "on time", s.on_time),
            (name, "逾期" if zh else "late", s.late),
            (name, "按期率" if zh else "on-time rate", "" if s.rate is None else f"{s.rate:.4f}"),
        ]
    rate = m.call_back.value
    rows += [
        (CALL_BACK_RATE if zh else "call-back rate", "", "" if rate is None else f"{rate:.4f}"),
    ]
    rows += [("回访结果" if zh else "answers", k, v) for k, v in m.answers.items()]
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(("分项", "项目", "数值") if zh else ("part", "item", "value"))
    writer.writerows(rows)
    return "\ufeff".encode() + out.getvalue().encode("utf-8")


@router.get(
    "/followups/statistics.csv",
    summary="差评工单月度统计 as CSV (UTF-8 with BOM, for Excel)",
    response_class=Response,
    responses={200: {"content": {"text/csv": {"schema": {"type": "string"}}}}},
)
async def get_monthly_csv(
    db: Engine,
    who: FollowUpCaller,
    month: Month,
    hall: HallQuery = None,
    lang: Annotated[Literal["zh", "en"], Query(description="header language")] = "zh",
) -> Response:
    body = to_csv(await _monthly(db, who, month, hall), lang)
    name = f"hallwatch-workorders-{month}.csv"
    return Response(
        body,
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )


@router.get(
    "/indicators/workorders",
    response_model=WorkOrderIndicatorsOut,
    summary="回访率 and 整改按时率 of 差评 work orders for a date range",
)
async def get_workorder_indicators(
    db: Engine,
    who: EvaluationReader,
    from_: Annotated[dt.date, Query(alias="from", description="first business day")],
    to: Annotated[dt.date, Query(description="last business day (inclusive)")],
    hall: HallQuery = None,
) -> WorkOrderIndicatorsOut:
    first, last = period(from_, to)
    facts = await _facts(db, who, hall, first, last)
    span = DateRange(first, last)
    return WorkOrderIndicatorsOut(
        first=first,
        last=last,
        ratios={
            "call_back_rate": _ratio(
                CALL_BACK_RATE, "call_back_rate", stats.call_back_rate(facts, span)
            ),
            "rectify_on_time_rate": _ratio(
                RECTIFY_ON_TIME,
                "rectify_on_time_rate",
                stats.rectify_on_time_rate(facts, span, _today()),
            ),
        },
    )


__all__ = ["router", "to_csv"]
