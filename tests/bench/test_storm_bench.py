"""Reconnect storm (``./run.sh bench``): N simulated gateways, each holding a backlog of B events
(an outage), all reconnecting within S seconds to a private Mosquitto, one central on
PostgreSQL. Prints the time until every event is committed and until every gateway has its
final ack, the events/s, published ÷ produced and the lost and duplicated counts; asserts only
that nothing is lost or duplicated. Past ``LIMIT_S`` it stops and says what the gateways still
hold.

The gateways are the province bench's (``SimGateway``: the real send window with the uplink's
default limits, the real envelope, central's real acks; the journal in memory), on one asyncio
loop. "Duplicated or altered" counts stored rows beyond one per (gateway, seq) and rows whose
content digest (``events.digest``) differs from that of the event the gateway produced under
that seq; "lost" counts events acknowledged to their gateway (so dropped from its journal)
beyond what central committed.

With ``HALLWATCH_STORM_HALLDAY=1`` each backlog is a hall's day instead of ``gen.sample``s:
the first B events of a generated two-window hall-day (``tests/central/correlation/hallday.py``:
queue-machine calls, evaluator invitations and presses, unsynchronised clocks after boot, ~2,100
events in all), its cases stored at central beforehand (the approval system is not behind the
hall's uplink) and central's first passes over them (the ladder, the hall-days correlated with
their cases alone) done before the gateways reconnect, as after an outage of hours. Central
runs with correlation on as configured by default (one worker, a scan every 30 s), and the
bench also waits until every hall-day of the storm is correlated: every event correlation reads
indexed, the work queue empty, and every hall-day computed since its last input arrived. It
checks the results: one current evaluation for each press of the backlogs (device
retransmissions excepted), as the generator's truth says.

Environment: ``HALLWATCH_STORM_GATEWAYS`` (default 2000), ``HALLWATCH_STORM_BACKLOG`` (events
per gateway, default 2000), ``HALLWATCH_STORM_SPREAD_S`` (reconnects spread over, default 60),
``HALLWATCH_STORM_LIMIT_S`` (give up after, default 900), ``HALLWATCH_STORM_HALLDAY`` (1: hall
days, correlated), ``HALLWATCH_STORM_CORRELATION_WORKERS`` (central's ``correlation.yaml``
``workers``; unset: its default).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import random
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from central.correlation.intake import KINDS
from central.spine.reading import event_digest
from central.store.db import make_engine
from central.store.schema import events, gateways
from protocols.envelope import EventRecord
from tests.bench.backlog import settled
from tests.bench.test_province_bench import (
    TICK_S,
    Driver,
    Figures,
    SimGateway,
    register_all,
)
from tests.central.correlation.conftest import case_record, store_cases
from tests.central.correlation.hallday import BUSINESS_TZ, event_record, generate
from tests.support import procs
from tests.support.broker import Broker

pytestmark = pytest.mark.bench

GATEWAYS = int(os.environ.get("HALLWATCH_STORM_GATEWAYS", "2000"))
BACKLOG = int(os.environ.get("HALLWATCH_STORM_BACKLOG", "2000"))
SPREAD_S = float(os.environ.get("HALLWATCH_STORM_SPREAD_S", "60"))
LIMIT_S = float(os.environ.get("HALLWATCH_STORM_LIMIT_S", "900"))
HALLDAY = os.environ.get("HALLWATCH_STORM_HALLDAY", "") == "1"
WORKERS = os.environ.get("HALLWATCH_STORM_CORRELATION_WORKERS")  # unset: central's default
CASES_PER_CALL = 20  # halls whose cases are stored in one transaction
SETTLE_S = 1800.0  # central's first passes over the halls' cases, before the storm
# every hall-day of the storm computed since the last of its events arrived (or never computed)
STALE_DAYS = text(
    """
    SELECT count(*) FROM (
        SELECT d.hall_id, d.business_day, max(e.received_at) AS last_input
        FROM correlation_event_days d
        JOIN events e ON e.gateway_id = d.gateway_id AND e.seq = d.seq
        GROUP BY d.hall_id, d.business_day
    ) AS input
    LEFT JOIN correlation_days c
        ON c.hall_id = input.hall_id AND c.business_day = input.business_day
    WHERE c.run_at IS NULL OR c.run_at < input.last_input
    """
)
SAMPLE_S = 30.0
PROGRESS = text(
    "SELECT (SELECT coalesce(sum(committed_through), 0) FROM gateways) AS committed,"
    " (SELECT count(*) FROM correlation_event_days) AS indexed,"
    " (SELECT count(*) FROM correlation_dirty) AS queued,"
    " (SELECT count(*) FROM correlation_days) AS days,"
    " (SELECT coalesce(sum(runs), 0) FROM correlation_days) AS runs"
)
HALL_DAYS = text(
    "SELECT count(*), coalesce(sum(runs), 0), coalesce(sum(evaluations), 0) FROM correlation_days"
)


@dataclass
class Expected:
    """What the gateways produced, to check central against."""

    digests: dict[str, list[str]] = field(default_factory=dict)  # gateway → digest by seq - 1
    indexed: int = 0  # events of the kinds correlation reads
    presses: dict[str, int] = field(default_factory=dict)  # gateway → presses to evaluate


def storm_day() -> dt.date:
    """The hall-day an outage held back: today's in the halls' time zone once it is over
    (the generated day ends at 17:40), else yesterday's; never events from the future."""
    now = dt.datetime.now(BUSINESS_TZ)
    return now.date() if now.time() >= dt.time(18, 0) else now.date() - dt.timedelta(days=1)


def make_gateways(
    figures: Figures, busy: set[SimGateway], url: str
) -> tuple[list[SimGateway], dict[str, int]]:
    """The gateways with their outage's backlog in their journals and, in hall-day mode, the
    presses of each backlog to evaluate (the generator's truth), the halls' cases stored at
    central."""
    now = time.monotonic()
    sims = [SimGateway(f"S{n:04d}", f"sg{n:04d}", figures, now, busy) for n in range(GATEWAYS)]
    if not HALLDAY:
        for sim in sims:
            for _ in range(BACKLOG):
                sim.produce(now)
        return sims, {}
    day = storm_day()
    records = []
    presses = {}
    for n, sim in enumerate(sims):
        hall_day = generate(seed=n, windows=2, hall=sim.hall, gateway=sim.gateway, day=day)
        for ev in hall_day.events[:BACKLOG]:
            sim.append(EventRecord.model_validate(event_record(ev)), now)
        records.append([case_record(c, hall=sim.hall) for c in hall_day.cases])
        presses[sim.gateway] = sum(1 for seq in hall_day.truth if seq <= sim.head)
    asyncio.run(_store_cases(url, records))
    return sims, presses


async def _store_cases(url: str, records: list[list[Any]]) -> None:
    engine = make_engine(url)
    try:
        for i in range(0, len(records), CASES_PER_CALL):
            await store_cases(engine, [c for hall in records[i : i + CASES_PER_CALL] for c in hall])
    finally:
        await engine.dispose()


def expected(sims: list[SimGateway], presses: dict[str, int]) -> Expected:
    """Each event's digest as central computes it from what it receives (the journal's JSON)
    and the events correlation indexes."""
    out = Expected(presses=presses)
    for sim in sims:
        kept = []
        for seq in range(1, sim.head + 1):
            record = EventRecord.model_validate_json(sim.journal[seq][0])
            kept.append(event_digest(record))
            out.indexed += record.kind in KINDS
        out.digests[sim.gateway] = kept
    return out


async def storm(port: int, url: str, sims: list[SimGateway], figures: Figures) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    produced = sum(s.head for s in sims)
    busy = sims[0].busy
    driver = Driver(loop)
    engine = make_engine(url)
    async with engine.connect() as conn:  # the hall-days computed with their cases alone
        _, runs_before, _ = (await conn.execute(HALL_DAYS)).one()
    start = time.monotonic()
    offsets = sorted((random.uniform(0, SPREAD_S), n) for n in range(len(sims)))
    pending = list(offsets)

    async def keepalive() -> None:
        while True:
            await asyncio.sleep(1.0)
            at = time.monotonic()
            for sim in sims:
                if sim.connected:
                    sim.client.loop_misc()
                    sim.state_due(at)

    misc = asyncio.create_task(keepalive())
    timeline: list[str] = []
    sampler = asyncio.create_task(_progress(engine, start, timeline)) if HALLDAY else None
    committed_at: float | None = None
    polled = 0.0
    try:
        while time.monotonic() - start < LIMIT_S:
            at = time.monotonic()
            while pending and pending[0][0] <= at - start:
                sim = sims[pending.pop(0)[1]]
                driver.attach(sim.client)
                sim.client.connect("127.0.0.1", port, keepalive=60)
            for sim in list(busy):
                sim.send(at)
            if committed_at is None and at - polled >= 1.0:
                polled = at
                if await _committed(engine) >= produced:
                    committed_at = time.monotonic() - start
            if not pending and not busy and committed_at is not None:
                break
            await asyncio.sleep(TICK_S)
        acked_at = time.monotonic() - start
        lost_acks = sum(1 for s in sims if s.acked < s.head)
        async with engine.connect() as conn:
            stored = (await conn.execute(select(func.count()).select_from(events))).scalar() or 0
            rows = await conn.execute(select(gateways.c.gateway_id, gateways.c.committed_through))
            through = {gateway: int(seq or 0) for gateway, seq in rows}
        # acknowledged to its gateway (so dropped from its journal) but not stored: lost
        lost = sum(max(0, s.acked - through.get(s.gateway, 0)) for s in sims)
        held = sum(s.head - s.acked for s in sims)  # still in the journals when it stopped
    finally:
        misc.cancel()
        for sim in sims:
            sim.client.disconnect()
    try:
        correlated_at = await _correlated(engine, start) if HALLDAY else None
    finally:
        if sampler is not None:
            sampler.cancel()
        await engine.dispose()
    return {
        "produced": produced,
        "stored": int(stored),
        "lost": lost,
        "held": held,
        "committed_s": committed_at,
        "acked_s": acked_at,
        "correlated_s": correlated_at,
        "timeline": timeline,
        "runs_before": int(runs_before),
        "gateways_without_final_ack": lost_acks,
        "events_per_s": produced / committed_at if committed_at else float("nan"),
        "published_over_produced": figures.published / max(produced, 1),
    }


async def _committed(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        query = select(func.coalesce(func.sum(gateways.c.committed_through), 0))
        return int((await conn.execute(query)).scalar() or 0)


async def _correlated(engine: AsyncEngine, start: float) -> float | None:
    """Seconds from ``start`` until every hall-day of the storm is correlated (None: not
    within ``LIMIT_S``). Polled cheaply (the queue) and confirmed once it is empty."""
    indexed = await _indexable(engine)
    while time.monotonic() - start < LIMIT_S:
        at = time.monotonic() - start
        async with engine.connect() as conn:
            queued = (await conn.execute(text("SELECT count(*) FROM correlation_dirty"))).scalar()
            if not queued and (
                (await conn.execute(text("SELECT count(*) FROM correlation_event_days"))).scalar()
                == indexed
                and (await conn.execute(STALE_DAYS)).scalar() == 0
            ):
                return at
        await asyncio.sleep(1.0)
    return None


async def _progress(engine: AsyncEngine, start: float, timeline: list[str]) -> None:
    """Every ``SAMPLE_S``: events committed and indexed for correlation, hall-days queued,
    computed and their computations so far (where the time goes)."""
    while True:
        await asyncio.sleep(SAMPLE_S)
        async with engine.connect() as conn:
            row = (await conn.execute(PROGRESS)).one()
        timeline.append(
            f"{time.monotonic() - start:.0f} s: committed {int(row.committed)}, indexed "
            f"{row.indexed}, queued {row.queued} hall-days, {row.days} computed "
            f"{row.runs} times"
        )


async def _indexable(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        query = select(func.count()).select_from(events).where(events.c.kind.in_(KINDS))
        return int((await conn.execute(query)).scalar() or 0)


async def _cases_correlated(url: str) -> None:
    """Until every hall's day is correlated with its cases alone (the queue empty)."""
    engine = make_engine(url)
    try:
        async with asyncio.timeout(SETTLE_S):
            while True:
                async with engine.connect() as conn:
                    days, _, _ = (await conn.execute(HALL_DAYS)).one()
                    queued = await conn.execute(text("SELECT count(*) FROM correlation_dirty"))
                    if days >= GATEWAYS and not queued.scalar():
                        return
                await asyncio.sleep(2.0)
    finally:
        await engine.dispose()


async def check(url: str, want: Expected) -> dict[str, Any]:
    """Stored content against the gateways' (duplicated or altered rows) and, for hall days,
    the correlation's figures and its evaluations against the presses."""
    engine = make_engine(url)
    wrong = 0
    seen: set[tuple[str, int]] = set()
    out: dict[str, Any] = {}
    try:
        async with engine.connect() as conn:
            rows = await conn.stream(select(events.c.gateway_id, events.c.seq, events.c.digest))
            async for gateway, seq, digest in rows:
                kept = want.digests.get(gateway, [])
                duplicate = (gateway, seq) in seen
                seen.add((gateway, seq))
                wrong += duplicate or not 0 < seq <= len(kept) or kept[seq - 1] != digest
            out["duplicated_or_altered"] = wrong
            if HALLDAY:
                days, runs, evaluations = (await conn.execute(HALL_DAYS)).one()
                per_gateway = await conn.execute(
                    text("SELECT gateway_id, count(*) FROM correlation_heads GROUP BY gateway_id")
                )
                heads: Counter[str] = Counter({g: int(n) for g, n in per_gateway})
                reissued = (
                    await conn.execute(
                        text("SELECT count(*) FROM correlation_results WHERE version > 1")
                    )
                ).scalar()
                out.update(
                    hall_days=int(days),
                    runs=int(runs),
                    evaluations=int(evaluations),
                    reissued=int(reissued or 0),
                    presses=sum(want.presses.values()),
                    evaluated=sum(heads.values()),
                    halls_off=sum(1 for g, n in want.presses.items() if heads[g] != n),
                )
    finally:
        await engine.dispose()
    return out


@pytest.mark.timeout(LIMIT_S + SETTLE_S + 1800)  # its limit, the setup and the checks
def test_reconnect_storm(tmp_path: Path, broker: Broker, database_url: str) -> None:
    if not database_url.startswith("postgresql"):
        pytest.skip("the province runs on PostgreSQL")

    register_all(database_url, [(f"S{n:04d}", f"sg{n:04d}") for n in range(GATEWAYS)])
    figures = Figures()
    sims, presses = make_gateways(figures, set(), database_url)
    want = expected(sims, presses)
    config = procs.central_config(tmp_path, broker.port, database_url)
    if WORKERS is not None:  # correlation.yaml in central's data directory
        (tmp_path / "central").mkdir(exist_ok=True)
        (tmp_path / "central" / "correlation.yaml").write_text(f"workers: {int(WORKERS)}\n")
    cen = procs.central(config, tmp_path / "central.log")
    cen.wait_for_log("central: connected to")  # subscribed before the gateways come back
    if HALLDAY:  # the day's cases ran through the ladder and correlation during the outage
        asyncio.run(_cases_correlated(database_url))
        settled(cen, timeout=SETTLE_S)
    load = os.getloadavg()[0]
    try:
        result = asyncio.run(storm(broker.port, database_url, sims, figures))
    finally:
        cen.stop()
    result |= asyncio.run(check(database_url, want))
    kind = "hall-day" if HALLDAY else "gen.sample"
    print(
        f"\nstorm on Mosquitto, PostgreSQL: {GATEWAYS} gateways × {BACKLOG} {kind} events, "
        f"reconnecting within {SPREAD_S:.0f} s (load before {load:.1f}, after "
        f"{os.getloadavg()[0]:.1f}): all committed at "
        f"{result['committed_s'] or float('nan'):.1f} s, all acked at "
        f"{result['acked_s']:.1f} s ({result['gateways_without_final_ack']} gateways without "
        f"their final ack), {result['events_per_s']:.0f} events/s, published ÷ produced "
        f"{result['published_over_produced']:.2f}, stored {result['stored']} of "
        f"{result['produced']} ({result['held']} still held by their gateways), "
        f"lost {result['lost']}, duplicated or altered "
        f"{result['duplicated_or_altered']}"
    )
    assert result["duplicated_or_altered"] == 0 and result["lost"] == 0
    assert result["stored"] <= result["produced"]
    if not HALLDAY:
        return
    done = result["correlated_s"]
    print(
        (f"  correlated at {done:.1f} s: " if done else f"  not within {LIMIT_S:.0f} s: ")
        + f"{result['hall_days']} hall-days computed {result['runs'] - result['runs_before']} "
        f"times since the first reconnect, "
        f"{result['evaluated']} presses evaluated of {result['presses']} "
        f"({result['halls_off']} halls off), {result['reissued']} results re-issued; "
        f"correlation workers: {WORKERS or 'central default'}"
    )
    print("\n".join(f"    {line}" for line in result["timeline"]))
    assert result["correlated_s"] is not None, "not every hall-day correlated"
    assert result["evaluated"] == result["presses"] and result["halls_off"] == 0
