"""The daily rollups give the same indicators as the computation over every fact: hall-days of
two halls ingested and correlated the real way (the correlation job writes the rollups), with
cases completed days after acceptance, suspended, withdrawn, open from before the range, and an
evaluation covering a case accepted the day before; compared key by key, every grouping, over
single days and ranges, on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import fields, replace
from typing import Any

import pytest
from sqlalchemy import func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from central.cases import ladder
from central.correlation import followups as followup_store
from central.correlation import workqueue
from central.correlation.config import CorrelationConfig
from central.correlation.job import run_once
from central.reporting import bulletin, facts, halls, rollup_query, rollups, scorecard
from central.reporting.bulletin_figures import total
from central.reporting.rollup_query import by_month, day_bits, pieces
from central.rules.followup import AppealGround
from central.rules.indicators import (
    CaseStatus,
    DateRange,
    Grouping,
    GroupKey,
    HallSetup,
    Indicators,
    OpeningPeriod,
    Ratio,
)
from central.rules.timelimit import Suspension
from central.rules.workdays import BUSINESS_TZ, WorkCalendar
from central.security.tokens import Principal, Role
from central.spine.registry import register
from central.store.db import make_engine
from central.store.migrate import upgrade
from central.store.schema import cases
from central.store.schema_correlation import (
    correlation_case_links,
    correlation_heads,
    correlation_results,
    followups,
)
from central.store.schema_rollups import (
    indicator_rollups,
    rollup_case_evaluations,
    rollup_evaluated,
)
from tests.central.correlation.conftest import case_record, deliver, store_cases
from tests.central.correlation.hallday import RAPID_S, generate

DAYS = (dt.date(2026, 11, 19), dt.date(2026, 11, 20), dt.date(2026, 11, 21))  # Thu, Fri, Sat
HALLS = ("H1", "H2")
CFG = CorrelationConfig(rapid_repeat_s=RAPID_S)
CALENDAR = WorkCalendar()


@pytest.fixture
def database_at_head() -> bool:
    return True  # every test migrates first: start from the migrated template


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    eng = make_engine(database_url)
    await upgrade(eng)
    yield eng
    await eng.dispose()


def _at(day: dt.date, hour: int) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(hour), tzinfo=BUSINESS_TZ)


async def _province(engine: AsyncEngine) -> None:
    """Two halls × three days through ingest and the correlation job."""
    roster: dict[str, Counter[tuple[str, str]]] = {h: Counter() for h in HALLS}
    for n, hall in enumerate(HALLS):
        for k, day in enumerate(DAYS):
            # a gateway per hall-day: each generated day numbers its journal from 1
            await register(engine, hall, f"gw{n}{k}")
            gen = generate(seed=10 * n + k, windows=1, hall=hall, gateway=f"gw{n}{k}", day=day)
            records = []
            for i, c in enumerate(gen.cases):
                roster[hall].update([(str(c.window), c.department)] if c.window else [])
                changes: dict[str, object] = {}
                if i % 7 == 1:  # completed two days later, some after a one-day limit
                    done = c.accepted_at + dt.timedelta(days=2)
                    changes = {"completed_at": done, "status": CaseStatus.COMPLETED}
                    if i % 2:
                        changes |= {"legal_days": 1, "promised_days": None}
                elif i % 7 == 2:  # clock stopped for 补正 since the next morning
                    start = _at(day + dt.timedelta(days=1), 9)
                    changes = {"completed_at": None, "status": CaseStatus.SUSPENDED}
                    changes["suspensions"] = (Suspension(start=start, reason="补正"),)
                elif i % 7 == 3:
                    changes = {"completed_at": None, "status": CaseStatus.WITHDRAWN}
                elif i % 7 == 4:  # a short limit: overdue by the range's end
                    changes = {"legal_days": 1, "promised_days": None, "completed_at": None}
                    changes["status"] = CaseStatus.RUNNING
                records.append(case_record(c, hall=hall, **changes))
            if k == 0:  # open since long before the range, long overdue
                old = gen.cases[0]
                records.append(
                    case_record(
                        old,
                        hall=hall,
                        case_no=f"{hall}-OLD",
                        accepted_at=_at(dt.date(2026, 11, 2), 10),
                        completed_at=None,
                        status=CaseStatus.RUNNING,
                    )
                )
            await store_cases(engine, records)
            await deliver(engine, gen, gen.events)
    async with engine.begin() as conn:
        for hall, counts in roster.items():
            windows: dict[str, str] = {}
            for (window, department), _ in counts.most_common():
                windows.setdefault(window, department)
            setup = HallSetup(
                hall=hall,
                opening=(
                    OpeningPeriod(start=dt.time(9), end=dt.time(12)),
                    OpeningPeriod(start=dt.time(13), end=dt.time(17)),
                ),
                windows=windows | {"9": "人社局"},  # a roster window nobody staffed
                staff={"0001": "张三"},
            )
            await halls.save_setup(conn, setup, dt.datetime.now(dt.UTC))
    await run_once(engine, cfg=CFG, calendar=CALENDAR, now=_at(DAYS[-1], 20))
    await ladder.run_once(engine, DAYS[-1], CALENDAR)


async def _came_back(engine: AsyncEngine) -> str:
    """A counted evaluation of H1's second day re-pointed at a case H1 accepted the day before
    (the citizen came back for it): the store as correlation leaves it, and the rollups of that
    hall-day recomputed as the job does."""
    r, h = correlation_results, correlation_heads
    async with engine.begin() as conn:
        row = (
            await conn.execute(
                select(r.c.gateway_id, r.c.seq, r.c.version, r.c.case_nos)
                .join(
                    h,
                    (h.c.gateway_id == r.c.gateway_id)
                    & (h.c.seq == r.c.seq)
                    & (h.c.version == r.c.version),
                )
                .where(r.c.hall_id == "H1", r.c.business_day == DAYS[1], r.c.counted)
                .order_by(r.c.seq)
                .limit(1)
            )
        ).one()
        covered = select(rollup_case_evaluations.c.case_no)
        earlier = (
            await conn.execute(
                select(cases.c.case_no)
                .where(
                    cases.c.hall_id == "H1",
                    cases.c.accepted_at < _at(DAYS[1], 0),
                    cases.c.accepted_at >= _at(DAYS[0], 0),
                    cases.c.status != "withdrawn",
                    cases.c.case_no.not_in(covered),
                )
                .order_by(cases.c.case_no)
                .limit(1)
            )
        ).scalar_one()
        where = (r.c.gateway_id == row.gateway_id) & (r.c.seq == row.seq)
        await conn.execute(
            update(r).where(where, r.c.version == row.version).values(case_nos=[earlier])
        )
        links = correlation_case_links
        await conn.execute(
            insert(links).values(
                gateway_id=row.gateway_id, seq=row.seq, version=row.version, case_no=earlier
            )
        )
        await rollups.refresh_day(conn, "H1", DAYS[1], CALENDAR)
        e = rollup_evaluated
        late = select(e.c.after_day).where(e.c.accepted_day == DAYS[0], e.c.grouping == "hall")
        assert DAYS[1] in set((await conn.execute(late)).scalars())
    return str(earlier)


async def _appeal_upheld(engine: AsyncEngine) -> None:
    """A supervisor upholds an appeal against one 差评 (申诉核减): the decision puts its
    hall-day back on the work queue, and the job's next pass refreshes that day's rollups."""
    at = _at(DAYS[-1], 21)
    async with engine.begin() as conn:
        item = (
            (await conn.execute(select(followups.c.item_id).order_by(followups.c.item_id)))
            .scalars()
            .first()
        )
        assert item is not None, "the data opens 差评 work orders"
        steps: list[tuple[str, dict[str, Any]]] = [
            ("assign", {"assignee": "staff:0001"}),
            ("appeal", {"ground": AppealGround.MALICIOUS, "note": "录像：同一人连按差评"}),
            ("decide_appeal", {"upheld": True}),
        ]
        for action, kwargs in steps:
            await followup_store.transition(
                conn, item, action, at=at, actor="supervisor:李", calendar=CALENDAR, **kwargs
            )
        assert await workqueue.pending(conn) == 1  # in the decision's own transaction
    await run_once(engine, cfg=CFG, calendar=CALENDAR, now=at)
    async with engine.connect() as conn:
        assert await workqueue.pending(conn) == 0
        excluded = select(func.sum(indicator_rollups.c.appeal_excluded))
        assert (await conn.execute(excluded)).scalar_one() > 0


def _same(old: Indicators, new: Indicators, where: str) -> None:
    for f in fields(Indicators):
        a, b = getattr(old, f.name), getattr(new, f.name)
        if isinstance(a, Ratio):
            assert (b.numerator, b.denominator) == pytest.approx(
                (a.numerator, a.denominator), rel=1e-9
            ), f"{where} {f.name}: {a} vs {b}"
        else:
            assert a == b, f"{where} {f.name}: {a!r} vs {b!r}"


async def test_rollups_answer_as_the_facts_do(engine: AsyncEngine) -> None:
    await _province(engine)
    query = select(indicator_rollups).order_by(*indicator_rollups.primary_key.columns)
    async with engine.connect() as conn:
        written = (await conn.execute(query)).all()
    assert {r.hall_id for r in written} == set(HALLS)  # the job wrote them
    # and rebuilding writes the same
    assert await rollups.rebuild(engine, CALENDAR, since=DAYS[0]) >= len(DAYS) * len(HALLS)
    async with engine.connect() as conn:
        assert (await conn.execute(query)).all() == written
    await _came_back(engine)
    await _appeal_upheld(engine)
    async with engine.connect() as conn:  # same-day evaluations are folded into the rows
        folded = select(func.sum(indicator_rollups.c.evaluated))
        assert (await conn.execute(folded)).scalar_one() > 0
        e = rollup_evaluated
        same_day = select(func.count()).where(e.c.after_day == e.c.accepted_day)
        assert (await conn.execute(same_day)).scalar_one() == 0
    ranges = [DateRange(d, d) for d in DAYS[:2]] + [
        DateRange(DAYS[0], DAYS[-1]),
        DateRange(dt.date(2026, 11, 1), dt.date(2026, 11, 30)),  # a month's rows alone
        DateRange(dt.date(2026, 10, 25), dt.date(2026, 12, 2)),  # days, a month, days
    ]
    checked = Counter[str]()
    async with engine.connect() as conn:
        for span in ranges:
            sources: list[tuple[frozenset[str] | None, facts.Facts]] = [
                (None, await facts.load(conn, span, CALENDAR))
            ]
            if span == ranges[-1]:  # a hall manager's scope
                sources.append(
                    (frozenset({"H1"}), await facts.load(conn, span, CALENDAR, hall="H1"))
                )
            answers: dict[tuple[Grouping, frozenset[str] | None], dict[GroupKey, Indicators]] = {}
            for by in Grouping:
                for scope, source in sources:
                    old = facts.indicators(source, span, by, CALENDAR)
                    new = await rollup_query.indicators(conn, span, by, CALENDAR, hall=scope)
                    answers[(by, scope)] = new
                    assert list(new) == list(old), f"{span} {by} {scope}"
                    for key, value in old.items():
                        _same(value, new[key], f"{span} {by} {key}")
                        checked["groups"] += 1
                        checked["evaluated"] += int(value.evaluation_rate.numerator)
                        checked["overdue_open"] += value.overdue_open
                        checked["overdue_completed"] += value.overdue_completed
                        checked["appeal_excluded"] += value.appeal_excluded
                    if scope is None:  # the overview's lean answer: all but two figures alike
                        lean = await rollup_query.indicators(
                            conn, span, by, CALENDAR, open_cases=False, coverage=False
                        )
                        assert lean and set(lean) <= set(new), f"{span} {by}"
                        for key, value in lean.items():
                            full = new[key]
                            kept = (full.overdue_open, full.staffed_coverage)
                            assert value.overdue_open == 0, f"{span} {by} {key}"
                            checked["lean"] += 1
                            assert (
                                replace(value, overdue_open=kept[0], staffed_coverage=kept[1])
                                == full
                            ), f"{span} {by} {key}"
            for scope, source in sources:
                # the 通报's overall figures: its halls' summed
                (overall,) = answers[(Grouping.ALL, scope)].values()
                _same(overall, total(answers[(Grouping.HALL, scope)].values()), f"{span} all")
                # the drill-down's trend: each day alone
                trend = await rollup_query.daily(conn, span, CALENDAR, hall=scope)
                for (day, from_facts), (on, from_rollups) in zip(
                    scorecard.daily(source, span, CALENDAR), trend, strict=True
                ):
                    assert day == on
                    if from_rollups is None:  # a day whose facts add to no figure has no rows
                        assert from_facts is None or _nothing(from_facts), f"{day} {from_facts}"
                    else:
                        assert from_facts is not None, f"{day} {from_rollups}"
                        _same(from_facts, from_rollups, f"trend {day} {scope}")
                        checked["trend"] += 1
        # the monthly 通报 (from the rollups) ranks the same figures as the facts give
        month = DateRange(dt.date(2026, 11, 1), dt.date(2026, 11, 30))
        source = await facts.load(conn, month, CALENDAR)
    built = await bulletin.build(
        engine, Principal(Role.SUPERVISOR), "2026-11", CALENDAR, _at(dt.date(2026, 12, 3), 9)
    )
    listed: dict[Grouping, list[Indicators | None]] = {
        Grouping.HALL: [r.indicators for r in built.halls],
        Grouping.DEPARTMENT: [r.indicators for r in built.departments],
        Grouping.ALL: [built.overall],
    }
    for by, got in listed.items():
        want = facts.indicators(source, month, by, CALENDAR)
        assert sorted(g.group.sort_key() for g in got if g) == sorted(k.sort_key() for k in want)
        for item in got:
            assert item is not None
            _same(want[item.group], item, f"通报 {by} {item.group}")
    # the data exercises what it claims to
    assert checked["groups"] > 50 and checked["lean"] > 50
    assert checked["evaluated"] > 0 and checked["overdue_open"] > 0
    assert checked["overdue_completed"] > 0
    assert checked["appeal_excluded"] > 0
    assert checked["trend"] >= len(DAYS)


def _nothing(value: Indicators) -> bool:
    """No figure of ``value`` counts anything."""
    return not any(
        (v.numerator or v.denominator) if isinstance(v, Ratio) else v
        for f in fields(Indicators)
        if f.name != "group"
        for v in [getattr(value, f.name)]
    )


def test_a_range_splits_into_loose_days_and_whole_months() -> None:
    d = dt.date
    assert pieces(DateRange(d(2026, 11, 19), d(2026, 11, 21))) == (
        [(d(2026, 11, 19), d(2026, 11, 21))],
        None,
    )
    assert pieces(DateRange(d(2026, 11, 1), d(2026, 11, 30))) == (
        [],
        (d(2026, 11, 1), d(2026, 11, 30)),
    )
    assert pieces(DateRange(d(2025, 12, 5), d(2026, 12, 4))) == (
        [(d(2025, 12, 5), d(2025, 12, 31)), (d(2026, 12, 1), d(2026, 12, 4))],
        (d(2026, 1, 1), d(2026, 11, 30)),
    )
    assert pieces(DateRange(d(2026, 2, 2), d(2026, 3, 30))) == (
        [(d(2026, 2, 2), d(2026, 3, 30))],
        None,
    )


def test_the_days_of_a_range_as_bits_of_each_month() -> None:
    d = dt.date
    assert by_month(d(2026, 11, 19), d(2027, 1, 2)) == [
        (d(2026, 11, 19), d(2026, 11, 30)),
        (d(2026, 12, 1), d(2026, 12, 31)),
        (d(2027, 1, 1), d(2027, 1, 2)),
    ]
    assert day_bits(d(2026, 11, 19), d(2026, 11, 21)) == 0b111 << 18
    assert day_bits(d(2026, 12, 1), d(2026, 12, 31)) == (1 << 31) - 1
    assert day_bits(d(2026, 2, 28), d(2026, 2, 28)) == 1 << 27
