"""Live events ahead of a backlog, end to end on real parts: a gateway back from an outage with
thousands of events journaled drains them to central (Mosquitto, central on SQLite) while its
hall keeps pressing; what the hall does now reaches central long before the history is through,
and every event is stored exactly once."""

from __future__ import annotations

import asyncio
import statistics
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest
from sqlalchemy import select

from central import config as central_config
from central.gateways.provision import list_gateways
from central.store.db import make_engine
from central.store.schema import events
from edge.clock import Clock
from edge.journal import Journal
from protocols.events import GeneratorSample
from tests.support import procs
from tests.support.broker import Broker
from tests.support.databases import AT_HEAD, scratch_database

BACKLOG = 10_000
LIVE_RATE = 10.0  # events per second while the drain runs


@pytest.fixture
def sqlite_url(tmp_path: Path) -> Iterator[str]:
    with scratch_database("sqlite", tmp_path, AT_HEAD) as url:
        yield url


def arrivals(url: str, gateway: str) -> dict[int, tuple[datetime, datetime]]:
    """seq → (the gateway's capture time, central's receipt time)."""

    async def go() -> dict[int, tuple[datetime, datetime]]:
        engine = make_engine(url)
        async with engine.connect() as conn:
            rows = await conn.execute(
                select(events.c.seq, events.c.utc, events.c.received_at).where(
                    events.c.gateway_id == gateway
                )
            )
            out = {row.seq: (row.utc, row.received_at) for row in rows}
        await engine.dispose()
        return out

    return asyncio.run(go())


def behind(url: str, config: Path) -> int | None:
    """What ``hallwatch-central gateway list`` shows gw1 behind by (its state's head seq less
    central's committed seq)."""

    async def go() -> int | None:
        engine = make_engine(url)
        try:
            rows = await list_gateways(engine, central_config.load(config))
        finally:
            await engine.dispose()
        return next(r.behind for r in rows if r.gateway == "gw1")

    return asyncio.run(go())


def journal_backlog(path: Path, n: int) -> int:
    """An outage's backlog: ``n`` events journaled by the gateway's own journal; its head."""

    async def go() -> int:
        path.parent.mkdir(parents=True, exist_ok=True)
        async with Journal(path, Clock(assume_synced=True)) as journal:
            done = [
                journal.append_nowait("gen.sample", GeneratorSample(n=i, run="outage"))
                for i in range(n)
            ]
            return max(await asyncio.gather(*done))

    return asyncio.run(go())


@pytest.mark.parametrize("live_channel", [False, True], ids=["events-topic", "live-topic"])
def test_live_events_overtake_a_backlog_and_everything_arrives_once(
    broker: Broker, sqlite_url: str, tmp_path: Path, live_channel: bool
) -> None:
    """The lane's batches on the events topic (the default) or on their own live topic
    (``uplink.live_channel``), which a city's Mosquitto delivers in arrival order too."""
    url = sqlite_url
    procs.prepare_central(url, [("H1", "gw1")])
    witness = tmp_path / "witness.txt"
    config = procs.central_config(tmp_path, broker.port, url)
    cen = procs.central(config, tmp_path / "central.log")
    # the outage: the gateway journaled its backlog while nothing listened
    history_head = journal_backlog(tmp_path / "edge-gw1" / "journal.db", BACKLOG)
    gw = None
    try:
        cen.wait_for_log("connected", 60)
        # back online: the same journal, the hall pressing at a few events a second
        gw = procs.edge(
            procs.edge_config(
                tmp_path,
                broker.port,
                generator={"enabled": True, "rate": LIVE_RATE, "witness": str(witness)},
                uplink={
                    "batch_events": 25,
                    "drain_window_events": 1000,
                    "live_channel": live_channel,
                },
            ),
            tmp_path / "edge.log",
        )
        shown: list[int] = []  # how far behind central shows the gateway, while it drains

        def drained() -> bool:
            if (now := behind(url, config)) is not None:
                shown.append(now)
            return procs.committed_through(url, "gw1") > history_head

        procs.wait_until(drained, 60, "central to commit the backlog", interval=0.1)
        procs.wait_until(
            lambda: procs.committed_through(url, "gw1") >= procs.journal_head(tmp_path) - 10,
            30,
            "the drain to catch up with the live events",
        )
        # the gateway's next state message shows the drained backlog
        procs.wait_until(lambda: (behind(url, config) or 0) < 200, 20, "the backlog shown gone")
    finally:
        if gw is not None:
            gw.stop()
        cen.stop()
    seqs, bodies, committed = procs.stored(url, "gw1")
    assert seqs == list(range(1, len(seqs) + 1))  # exactly once, no gap
    assert committed == seqs[-1]
    by_seq = dict(zip(seqs, bodies, strict=True))
    assert [by_seq[seq] for seq in range(1, history_head + 1)] == [
        {"n": n, "run": "outage"} for n in range(history_head)
    ]
    for seq, (run, n) in procs.read_witness(witness).items():
        if seq <= committed:
            assert by_seq[seq] == {"n": n, "run": run}
    times = arrivals(url, "gw1")
    history_done = max(received for seq, (_, received) in times.items() if seq <= history_head)
    first_back = min(received for _, received in times.values())
    live = {
        seq: (received - utc).total_seconds()
        for seq, (utc, received) in times.items()
        if seq > history_head and first_back < utc < history_done
    }
    drain_s = (history_done - first_back).total_seconds()
    print(
        f"\nbacklog {history_head} drained in {drain_s:.1f} s; {len(live)} live events during "
        f"it: latency median {statistics.median(live.values()):.2f} s, "
        f"max {max(live.values()):.2f} s"
    )
    print(f"behind as shown during the drain: {sorted(set(shown), reverse=True)[:8]}")
    assert shown and max(shown) > 1000  # the backlog was visible, then shrank (above)
    assert len(live) >= 3, f"too few live events during a {drain_s:.1f} s drain"
    # the hall's presses reached central in about the time a quiet uplink takes, not in the
    # drain's: the ones journaled in its first half were stored long before its end
    assert statistics.median(live.values()) < max(1.0, drain_s / 4)
    halfway = first_back + (history_done - first_back) / 2
    assert all(
        received < halfway + (history_done - halfway) / 2
        for utc, received in (times[seq] for seq in live)
        if utc < halfway
    )
