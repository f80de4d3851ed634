"""A gateway's journal replaced mid-life, on real parts (the gateway process, Mosquitto, central
on both stores): restored from an old copy, deleted, moved to another box. Nothing is lost,
nothing of the new journal is taken for the old one's data, and central shows what happened."""

from __future__ import annotations

import asyncio
import shutil
from collections import Counter
from pathlib import Path

import pytest

from central.api.gateways import list_gateways
from central.security.tokens import Principal, Role
from central.store.db import make_engine
from tests.support import procs
from tests.support.broker import Broker

PER_RUN = 150


@pytest.fixture
def database_at_head() -> bool:
    return True  # every test runs prepare_central first: start from the migrated template


def alarms(url: str) -> dict[str, int]:
    async def go() -> dict[str, int]:
        engine = make_engine(url)
        try:
            (gw,) = await list_gateways(engine, Principal(Role.SUPERVISOR), None)
        finally:
            await engine.dispose()
        return {a.kind: a.count for a in gw.alarms}

    return asyncio.run(go())


def journal_files(data_dir: Path) -> list[Path]:
    return [p for p in data_dir.glob("journal.db*") if not p.name.endswith(".reserve")]


def test_replaced_journal_loses_nothing_and_is_not_mistaken_for_the_old_one(
    broker: Broker, database_url: str, tmp_path: Path
) -> None:
    procs.prepare_central(database_url, [("H1", "gw1")])
    central = procs.central(
        procs.central_config(tmp_path, broker.port, database_url), tmp_path / "central.log"
    )
    box = tmp_path / "edge-gw1"
    witnesses: list[Path] = []
    expected = 0  # events central must hold: every generated one and one gateway.boot a run

    def run(name: str, data_dir: Path = box) -> None:
        nonlocal expected
        witness = tmp_path / f"witness-{name}.txt"
        witnesses.append(witness)
        config = procs.edge_config(
            tmp_path,
            broker.port,
            data_dir=str(data_dir),
            generator={"enabled": True, "rate": 0, "total": PER_RUN, "witness": str(witness)},
        )
        edge = procs.edge(config, tmp_path / f"edge-{name}.log")
        expected += PER_RUN + 1
        try:
            procs.wait_until(
                lambda: procs.committed_through(database_url, "gw1") >= expected,
                60,
                f"central to commit run {name}",
            )
        finally:
            edge.stop()

    try:
        run("first")
        old_copy = tmp_path / "old-copy"
        old_copy.mkdir()
        for path in journal_files(box):
            shutil.copy2(path, old_copy / path.name)
        run("second")
        before = procs.stored(database_url, "gw1")

        # restored from the old copy: its new events get numbers central holds already
        for path in journal_files(box):
            path.unlink()
        for path in old_copy.iterdir():
            shutil.copy2(path, box / path.name)
        run("restored")
        after_restore = alarms(database_url)
        assert after_restore.get("seq_conflict", 0) >= 1, after_restore

        # deleted: a fresh journal, a new epoch numbering from 1
        for path in journal_files(box):
            path.unlink()
        run("deleted")
        assert alarms(database_url).get("journal_epoch", 0) >= 2

        # moved to a new box: the same journal continues there
        new_box = tmp_path / "new-box"
        new_box.mkdir()
        for path in journal_files(box):
            shutil.copy2(path, new_box / path.name)
        run("moved", new_box)
    finally:
        central.stop()

    seqs, bodies, committed = procs.stored(database_url, "gw1")
    assert seqs == list(range(1, committed + 1)), "central's numbering has a gap or a hole"
    assert len(seqs) == expected, (len(seqs), expected)
    # nothing of the new journals was taken for the old one's data: what was stored stays
    assert list(zip(seqs, bodies, strict=True))[: len(before[0])] == list(
        zip(*before[:2], strict=True)
    )
    # nothing lost, nothing doubled: every generated event once
    held = Counter((b["run"], b["n"]) for b in bodies if "run" in b)
    generated = [pair for w in witnesses for pair in procs.read_witness(w).values()]
    assert len(generated) == 5 * PER_RUN
    assert all(held[pair] == 1 for pair in generated), "an event lost or stored twice"
    assert sum(held.values()) == len(generated)
