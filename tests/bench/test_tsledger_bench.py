"""Ledger and time-series sink figures on both databases (``./run.sh bench``, or
``pytest -m bench tests/bench/test_tsledger_bench.py -s``).

- the ledger job chaining 20,000 evaluations (plus 20,000 other events it skips) of 10 halls,
  then verify-ledger over all of it;
- the time-series sink turning 20,000 queue and evaluator events into points and writing them
  to a private VictoriaMetrics.
A benchmark: it prints figures and asserts only that the work was done.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from central.config import TimeseriesConfig
from central.records.ledger.append import append_once
from central.records.ledger.verify import verify
from central.records.timeseries.sink import TimeseriesSink
from central.spine.ingest import Ingestor
from central.spine.registry import register
from central.store.db import make_engine
from central.store.migrate import upgrade
from tests.support.hallevents import Gateway, key_press, queue
from tests.support.victoria import Victoria

pytestmark = pytest.mark.bench

HALLS = 10
PER_HALL = 2000  # key presses per hall (each after a queue event)
T0 = datetime.now(UTC) - timedelta(hours=6)


async def _fill(database_url: str) -> Any:
    engine = make_engine(database_url)
    await upgrade(engine)
    ingestor = Ingestor(engine)
    for h in range(HALLS):
        await register(engine, f"H{h}", f"gw{h}")
        gw = Gateway(f"H{h}", f"gw{h}")
        for start in range(0, PER_HALL, 400):  # batches of 800 events
            items = []
            for i in range(start, start + 400):
                at = T0 + timedelta(seconds=10 * i)
                items.append(
                    (
                        "queue.event",
                        queue(i + 1, "TK", ticket=f"A{i:04d}", service=f"S{i % 4}", waiting=i % 9),
                        at,
                    )
                )
                items.append(
                    ("evaluator.key", key_press(1 + i % 20, 1 + i % 6, session=1 + i % 250), at)
                )
            await ingestor.ingest([gw.batch(items)])
    return engine


async def test_ledger_append_and_verify(database_url: str) -> None:
    engine = await _fill(database_url)
    try:
        started = time.perf_counter()
        added = 0
        while n := await append_once(engine):
            added += n
        chained = time.perf_counter() - started
        started = time.perf_counter()
        report = await verify(engine)
        checked = time.perf_counter() - started
        assert added == HALLS * PER_HALL and report.ok and report.entries == added
        print(
            f"\nledger [{engine.dialect.name}]: chained {added} evaluations in "
            f"{chained:.2f} s ({added / chained:,.0f}/s); verify-ledger over "
            f"{report.chains} chains in {checked:.2f} s ({added / checked:,.0f} entries/s)"
        )
    finally:
        await engine.dispose()


async def test_timeseries_sink_throughput(database_url: str, tmp_path: Path) -> None:
    engine = await _fill(database_url)
    vm = Victoria(tmp_path / "vm").start()
    try:
        sink = TimeseriesSink(engine, TimeseriesConfig(enabled=True, url=vm.url))
        started = time.perf_counter()
        read = 0
        while n := await sink.run_once():
            read += n
        spent = time.perf_counter() - started
        sink.close()
        assert read == 2 * HALLS * PER_HALL
        print(
            f"\ntimeseries sink [{engine.dialect.name}]: {read} events → "
            f"{sink.stats.samples_written} points in {spent:.2f} s "
            f"({read / spent:,.0f} events/s, {sink.stats.samples_written / spent:,.0f} "
            f"points/s, {sink.stats.cycles} passes)"
        )
    finally:
        vm.stop()
        await engine.dispose()
