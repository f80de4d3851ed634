"""GET /api/v1/overview: every hall the caller may see on one screen — case lights, today's
satisfaction and evaluation rates, gateways offline, suspicious evaluations."""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import replace
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, Field
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from central.api.deps import Engine, OverviewCaller
from central.cases.context import bound
from central.reporting import analytic, flagged, rollup_query, scorecard, wall_store
from central.reporting.registry import HALL_NAME_DOC, display_name
from central.reporting.registry_cache import hall_names
from central.reporting.wall import hall_state
from central.rules.indicators import DateRange, Grouping, GroupKey, Indicators, Ratio
from central.rules.timelimit import LadderStage
from central.rules.workdays import CalendarError, WorkCalendar, business_date
from central.security.access import Area, case_filter, hall_filter, may
from central.security.tokens import Principal, Role
from central.spine import bridges
from central.store.schema import cases, gateways
from central.store.schema_cases import case_ladder
from hallkit.clock import utc_now

router = APIRouter(prefix="/api/v1", tags=["dashboard"])

CACHE_TTL_S = 4.0  # below the big screen's 5 s poll: each poll sees fresh figures
# Business dates the API accepts: anything else is a typo (and year 1 would not even convert
# to UTC).
FIRST_DAY, LAST_DAY = dt.date(2000, 1, 1), dt.date(2099, 12, 31)
LIGHTS = (
    LadderStage.BLUE,
    LadderStage.YELLOW_LIGHT,
    LadderStage.RED_LIGHT,
    LadderStage.YELLOW_CARD,
    LadderStage.RED_CARD,
    LadderStage.SUPERVISION_LETTER,
    LadderStage.SUSPENDED,
)


class RatioOut(BaseModel):
    numerator: float
    denominator: float
    value: float | None = Field(description="null when the denominator is 0: no data")


class LightsOut(BaseModel):
    """Open cases by ladder stage (蓝灯 … 监察建议书, 暂停计时)."""

    blue: int = 0
    yellow_light: int = 0
    red_light: int = 0
    yellow_card: int = 0
    red_card: int = 0
    supervision_letter: int = 0
    suspended: int = 0


class HallOverviewOut(BaseModel):
    hall: str
    hall_name: str = Field(description=HALL_NAME_DOC)
    gateways: int | None = Field(
        description="registered, not revoked; null for department "
        "leaders (gateway state is outside their scope)"
    )
    gateways_online: int | None
    offline: bool | None = Field(description="no gateway of the hall is online")
    state: str | None = Field(
        description="worst state, the 大屏's rule (central.reporting.wall.hall_state): red, "
        "yellow, offline (open with no gateway online, or none at all), blue, green, idle; "
        "null for a caller who does not see both gateways and cases"
    )
    last_batch_at: dt.datetime | None
    lights: LightsOut | None = Field(
        description="open cases by stage; null for technicians "
        "(cases are people's work, not theirs)"
    )
    open_cases: int | None
    evaluations_today: int | None = Field(
        description="counted evaluations today; null for technicians, like every score"
    )
    satisfaction_today: RatioOut | None
    evaluation_rate_today: RatioOut | None
    suspicious_today: int | None = Field(
        description="flagged evaluations today; null for technicians (not theirs to see)"
    )
    suspicious_open: int | None = Field(
        description="… of which some flag awaits a supervisor's review"
    )


class LinkDownOut(BaseModel):
    bridge: str
    since: dt.datetime = Field(description="down since (as central heard it)")


class OverviewOut(BaseModel):
    as_of: dt.date = Field(description="today, Beijing time")
    generated_at: dt.datetime
    correlated: bool = Field(
        description="correlation has run for today: until it has, "
        "evaluation figures are 'no data yet', not zero"
    )
    figures_problem: str | None = Field(
        description="why today's rates are missing (a year the working-day calendar does not "
        "know: load it from the site's calendar file)"
    )
    halls: list[HallOverviewOut]
    halls_offline: int
    lights: LightsOut | None
    satisfaction_today: RatioOut | None
    evaluation_rate_today: RatioOut | None
    suspicious_today: int | None
    links_down: list[LinkDownOut] | None = Field(
        description="tier bridges (县/市 上联) down past bridges.down_grace_s: their halls "
        "fall silent, not idle; null for callers without gateway health"
    )


def calendar_for(engine: object) -> WorkCalendar:
    context = bound(engine)  # type: ignore[arg-type]
    return context.calendar if context is not None else WorkCalendar()


@router.get(
    "/overview",
    response_model=OverviewOut,
    summary="All halls at a glance: case lights, today's rates, offline, suspicious",
    description="Scoped: a hall manager gets the hall, a department leader the "
    "department's cases (and no gateway state), supervisors and "
    "technicians every hall.",
)
async def overview(
    request: Request,
    db: Engine,
    who: OverviewCaller,
    day: Annotated[
        dt.date | None,
        Query(ge=FIRST_DAY, le=LAST_DAY, description="business date (default today, Beijing)"),
    ] = None,
) -> OverviewOut:
    today = day or business_date(utc_now())
    cache: _Cache | None = getattr(request.app.state, "overview_cache", None)
    if cache is None:
        cache = request.app.state.overview_cache = _Cache()
    return await cache.get(
        (who.role, who.halls, who.department, today), lambda: _build(db, who, today)
    )


class _Cache:
    """Answers computed in the last few seconds, per scope and day: every wall screen and
    supervisor polling the overview shares one computation instead of one each."""

    def __init__(self, ttl_s: float = CACHE_TTL_S, size: int = 256) -> None:
        self.ttl_s, self.size = ttl_s, size
        self._done: dict[Any, tuple[float, OverviewOut]] = {}
        self._locks: dict[Any, asyncio.Lock] = {}

    async def get(self, key: Any, build: Callable[[], Awaitable[OverviewOut]]) -> OverviewOut:
        async with self._locks.setdefault(key, asyncio.Lock()):
            hit = self._done.get(key)
            if hit is not None and time.monotonic() - hit[0] < self.ttl_s:
                return hit[1]
            value = await build()
            if len(self._done) >= self.size:
                self._done.clear()
                self._locks = {key: self._locks[key]}
            self._done[key] = (time.monotonic(), value)
            return value


async def _build(db: AsyncEngine, who: Principal, today: dt.date) -> OverviewOut:
    # each part of the answer is there only for a caller who reaches its area
    health, with_cases = may(who, Area.HEALTH), may(who, Area.CASES)
    scores = may(who, Area.EVALUATIONS)
    lights: defaultdict[str, Counter[str]] = defaultdict(Counter)
    gw: dict[str, tuple[int, int, dt.datetime | None]] = {}
    async with db.connect() as conn:
        await analytic.settle(conn)
        query = (
            select(cases.c.hall_id, case_ladder.c.stage, func.count())
            .join(case_ladder, case_ladder.c.case_no == cases.c.case_no)
            .where(case_filter(who), case_ladder.c.settled.is_(False))
            .group_by(cases.c.hall_id, case_ladder.c.stage)
        )
        for hall, stage, n in await conn.execute(query):
            lights[hall][stage or ""] += int(n)
        if health:
            rows = await conn.execute(
                select(gateways.c.hall_id, gateways.c.online, gateways.c.last_batch_at).where(
                    gateways.c.revoked_at.is_(None),
                    hall_filter(who, gateways.c.hall_id, Area.HEALTH),
                )
            )
            per: defaultdict[str, list[tuple[bool, dt.datetime | None]]] = defaultdict(list)
            for hall, online, last in rows:
                per[hall].append((bool(online), last))
            for hall, items in per.items():
                lasts = [t for _, t in items if t is not None]
                gw[hall] = (len(items), sum(o for o, _ in items), max(lasts) if lasts else None)
        suspicious = await flagged.find(conn, who, today, today)
        names = await hall_names(conn)
    calendar, period = calendar_for(db), DateRange(today, today)
    problem, correlated = None, await scorecard.correlated(db, period)
    by_hall: dict[GroupKey, Any] = {}
    try:
        if scores and who.role is Role.DEPARTMENT_LEADER:
            by_hall = await _department_rates(db, who, period, calendar)
        elif scores:
            by_hall = await _rates(db, who, period, calendar)
    except CalendarError as exc:  # the lights and gateways still show; the rates cannot
        problem = str(exc)
    flagged_by_hall = Counter(f.hall for f in suspicious)
    open_by_hall = Counter(f.hall for f in suspicious if f.open_flags)
    halls = sorted(
        set(lights) | set(gw) | {k.hall for k in by_hall if k.hall} | set(flagged_by_hall)
    )
    opened: dict[str, bool] = {}
    if health and with_cases:
        async with db.connect() as conn:
            opened = await wall_store.open_now(conn, set(halls), calendar, utc_now())
    out = []
    for hall in halls:
        counts = lights.get(hall, Counter())
        ind = by_hall.get(GroupKey(hall=hall))
        gateways_n, online_n, last = gw.get(hall, (0, 0, None))
        out.append(
            HallOverviewOut(
                hall=hall,
                hall_name=display_name(names, hall),
                gateways=gateways_n if health else None,
                gateways_online=online_n if health else None,
                offline=(gateways_n > 0 and online_n == 0) if health else None,
                state=hall_state(
                    counts, gateways=gateways_n, online=online_n, open_now=opened[hall]
                ).value
                if hall in opened
                else None,
                last_batch_at=last if health else None,
                lights=LightsOut(**{s.value: counts.get(s.value, 0) for s in LIGHTS})
                if with_cases
                else None,
                open_cases=sum(counts.values()) if with_cases else None,
                evaluations_today=(int(ind.satisfaction_rate.denominator) if ind else 0)
                if scores
                else None,
                satisfaction_today=_ratio(ind.satisfaction_rate if ind else None)
                if scores
                else None,
                evaluation_rate_today=_ratio(ind.evaluation_rate if ind else None)
                if scores
                else None,
                suspicious_today=flagged_by_hall.get(hall, 0) if scores else None,
                suspicious_open=open_by_hall.get(hall, 0) if scores else None,
            )
        )
    summed = Counter[str]()
    for counts in lights.values():
        summed.update(counts)
    return OverviewOut(
        as_of=today,
        generated_at=utc_now(),
        correlated=correlated,
        figures_problem=problem,
        halls=out,
        halls_offline=sum(1 for h in out if h.offline),
        lights=LightsOut(**{s.value: summed.get(s.value, 0) for s in LIGHTS})
        if with_cases
        else None,
        # both rates add up across halls: Σ numerators / Σ denominators
        satisfaction_today=_sum(i.satisfaction_rate for i in by_hall.values()) if scores else None,
        evaluation_rate_today=_sum(i.evaluation_rate for i in by_hall.values()) if scores else None,
        suspicious_today=len(suspicious) if scores else None,
        links_down=[
            LinkDownOut(bridge=link.bridge, since=link.changed_at)
            for link in await bridges.links(db)
            if link.alarm
        ]
        if health
        else None,
    )


async def _rates(
    db: AsyncEngine, who: Principal, period: DateRange, calendar: WorkCalendar
) -> dict[GroupKey, Indicators]:
    """Today's satisfaction and evaluation rate per hall from the daily rollups the correlation
    job keeps, for halls with counted evaluations or cases accepted today."""
    reach = who.halls if who.role is Role.HALL_MANAGER else None
    async with db.connect() as conn:
        found = await rollup_query.indicators(
            conn, period, Grouping.HALL, calendar, hall=reach, open_cases=False, coverage=False
        )
    return {
        key: value
        for key, value in found.items()
        if value.satisfaction_rate.denominator or value.evaluation_rate.denominator
    }


async def _department_rates(
    db: AsyncEngine, who: Principal, period: DateRange, calendar: WorkCalendar
) -> dict[GroupKey, Indicators]:
    """A department leader's: the evaluations correlated to the department's cases, which
    the rollups (by the roster's window departments) do not hold."""
    facts = await scorecard.load(db, who, period, calendar)
    # today's two rates need today's evaluations and the cases accepted today only
    facts = replace(
        facts,
        sessions=[],
        staffing=[],
        cases=[c for c in facts.cases if business_date(c.accepted_at) == period.first],
    )
    return scorecard.compute(facts, period, Grouping.HALL, calendar)


def _sum(ratios: Iterable[Ratio]) -> RatioOut:
    items = list(ratios)
    return _ratio(Ratio(sum(r.numerator for r in items), sum(r.denominator for r in items)))


def _ratio(value: Ratio | None) -> RatioOut:
    if value is None:
        return RatioOut(numerator=0, denominator=0, value=None)
    return RatioOut(**scorecard.ratio(value))
