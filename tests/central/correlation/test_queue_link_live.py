"""The real resend, end to end: the simulated $QM machine (its clock 3 h off) feeds the gateway's
queue supervisor over TCP; the link is cut for a few seconds while a service ends and the next
one starts; the machine resends its buffer when the gateway reconnects. The gateway's journal,
ingested by central, gives sessions whose outage stages come from the machine's clock (within its
second) and whose live stages keep the receive time; on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from central.correlation.config import CorrelationConfig
from central.correlation.job import run_once
from central.correlation.machine_clock import MachineClockConfig
from central.spine.ingest import Ingestor
from central.spine.reading import Incoming
from edge.clock import Clock
from edge.config import QueueConfig
from edge.devices.queue_machine import QueueSupervisor
from edge.journal import Journal
from firmware_bridges.qm.simulator import MachineClock, QueueMachineSimulator
from protocols import topics
from tests.central.correlation.conftest import sessions

pytestmark = pytest.mark.timeout(90)

OUTAGE_S = 6.0
# seconds-long outage: place what came more than 3 s late (the default, 10 s, is for real halls)
CFG = CorrelationConfig(queue_clock=MachineClockConfig(late_s=3.0))
_recorded: dict[str, Any] = {}  # the gateway side runs once; each store ingests its journal


async def until(condition: Any, timeout: float = 30.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():  # noqa: ASYNC110 - state owned by the simulator and the journal
            await asyncio.sleep(0.05)


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


async def record_a_cut_link(tmp: Path) -> dict[str, Any]:
    """Run the machine and the gateway's supervisor; return the journal and the true times."""
    clock = MachineClock(skew=dt.timedelta(hours=-3, minutes=7))
    truth: dict[str, dt.datetime] = {}
    async with QueueMachineSimulator(tcp_port=0, clock=clock, heartbeat_interval=1.0) as qm:
        journal = Journal(tmp / "journal.db", Clock(assume_synced=True))
        await journal.open()
        supervisor = QueueSupervisor(QueueConfig(transport=f"tcp://127.0.0.1:{qm.port}"), journal)
        task = asyncio.create_task(supervisor.run())
        try:
            await until(lambda: qm.has_client)
            qm.login(1, "000101")
            qm.issue_ticket("A")
            qm.call("A001", 1)
            truth["A001 called"] = now()
            await asyncio.sleep(1.5)
            qm.start("A001", 1, "000101")
            truth["A001 started"] = now()
            await until(lambda: not qm.pending)  # all of it live so far
            await asyncio.sleep(1.2)
            await qm.unplug()
            await asyncio.sleep(1.0)
            qm.finish("A001", 1, "000101")
            truth["A001 ended"] = now()
            qm.issue_ticket("A")
            await asyncio.sleep(1.5)
            qm.call("A002", 1)
            truth["A002 called"] = now()
            await asyncio.sleep(1.5)
            qm.start("A002", 1, "000101")
            truth["A002 started"] = now()
            await asyncio.sleep(OUTAGE_S - 4.0)
            await qm.replug()
            await qm.wait_drained(30)  # the resent buffer is journaled and acknowledged
            await asyncio.sleep(2.5)
            qm.finish("A002", 1, "000101")  # live again
            truth["A002 ended"] = now()
            await asyncio.sleep(2.5)
            await qm.wait_drained(10)
            rows = await journal.read_from(1, max_events=10_000, max_bytes=50_000_000)
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            await supervisor.close()
            await journal.close()
    return {"events": [json.loads(doc) for _, doc in rows], "truth": truth}


async def test_a_cut_queue_link_is_placed_by_the_machine_clock(
    engine: AsyncEngine, tmp_path: Path
) -> None:
    if not _recorded:
        _recorded.update(await record_a_cut_link(tmp_path))
    events, truth = _recorded["events"], _recorded["truth"]
    assert events and all(e["kind"] in ("queue.event", "queue.fault") for e in events)
    doc = {
        "v": 1,
        "hall": "H1",
        "gateway": "gw1",
        "sender_boot": events[-1]["boot"],
        "events": events,
    }
    await Ingestor(engine).ingest(
        [
            Incoming(
                topics.topic("H1", "gw1", topics.Channel.EVENTS), json.dumps(doc).encode(), now()
            )
        ]
    )
    report = await run_once(engine, cfg=CFG)
    assert report.resent_placed >= 3

    served = {row.ticket: row for row in (await sessions(engine)).values()}
    received = receipts(events)
    late = CFG.queue_clock.late_s
    placed = 0
    for key, happened in truth.items():
        ticket, stage = key.split()
        row = served[ticket]
        source = row.time_sources[stage]
        delay = (received[key] - happened).total_seconds()
        error = abs((getattr(row, f"{stage}_at") - happened).total_seconds())
        if delay > late + 1.5:  # clearly late: the machine's clock, within its whole second
            assert (source, error <= 1.5) == ("machine_offset", True), (key, delay, error)
        elif delay < late - 1.5:  # live, or nearly: its receive time
            assert (source, error <= delay + 0.05) == ("receive", True), (key, delay, error)
        placed += source == "machine_offset"
    assert received["A001 ended"] - truth["A001 ended"] > dt.timedelta(seconds=OUTAGE_S - 2)
    assert placed >= 2 and served["A001"].time_sources["called"] == "receive"
    assert served["A001"].outcome == "finished" and served["A002"].outcome == "finished"


def receipts(events: list[dict[str, Any]]) -> dict[str, dt.datetime]:
    """'ticket stage' → when the gateway journaled its message (first time)."""
    stage_of = {"CL": "called", "ST": "started", "FN": "ended"}
    out: dict[str, dt.datetime] = {}
    for e in events:
        body = e["body"]
        if e["kind"] == "queue.event" and body["type"] in stage_of:
            key = f"{body['ticket']} {stage_of[body['type']]}"
            out.setdefault(key, dt.datetime.fromisoformat(e["utc"].replace("Z", "+00:00")))
    return out
