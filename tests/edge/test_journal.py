"""The journal on a real SQLite file: durability, gapless numbering, bounds, trimming."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from pathlib import Path

import pytest

from edge.clock import Clock
from edge.committed import Committed
from edge.journal import Journal, Rebase
from protocols.envelope import EventRecord
from protocols.events import GeneratorSample


async def _fill(journal: Journal, n: int, pad: str = "") -> list[int]:
    futures = [
        journal.append_nowait("gen.sample", GeneratorSample(n=i, run="t", pad=pad))
        for i in range(n)
    ]
    seqs = list(await asyncio.gather(*futures))
    await asyncio.sleep(0.05)  # trimming runs after the callers were released
    return seqs


async def test_sequence_is_gapless_and_survives_reopen(tmp_path: Path) -> None:
    path = tmp_path / "journal.db"
    async with Journal(path, Clock(assume_synced=True)) as journal:
        first = await _fill(journal, 1500)
    assert first == list(range(1, 1501))
    async with Journal(path, Clock(assume_synced=True)) as journal:
        assert journal.head_seq == 1500
        second = await _fill(journal, 10)
    assert second == list(range(1501, 1511))


async def test_durable_means_on_disk_for_another_reader(tmp_path: Path) -> None:
    path = tmp_path / "journal.db"
    async with Journal(path, Clock(assume_synced=False)) as journal:
        seq = await journal.append("gen.sample", GeneratorSample(n=7, run="x"))
        # another process's view: committed rows are visible the moment the future resolves
        with sqlite3.connect(path) as other:
            (doc,) = other.execute("SELECT doc FROM events WHERE seq = ?", (seq,)).fetchone()
    record = EventRecord.model_validate_json(doc)
    assert record.seq == seq and record.body == {"n": 7, "run": "x"}
    assert record.synced is False and record.boot == journal.clock.boot_id


async def test_subscribers_hear_each_committed_event_in_order(tmp_path: Path) -> None:
    heard: list[tuple[int, str, int]] = []
    durable_when_heard: list[bool] = []

    def broken(event: Committed) -> None:
        raise RuntimeError("a subscriber's bug")

    async with Journal(tmp_path / "journal.db", Clock()) as journal:

        def listen(event: Committed) -> None:
            heard.append((event.seq, event.kind, event.body["n"]))
            durable_when_heard.append(journal.head_seq >= event.seq)

        journal.subscribe(broken)  # its failure is logged; the others still hear
        unsubscribe = journal.subscribe(listen)
        seqs = await _fill(journal, 300)
        unsubscribe()
        await journal.append("gen.sample", GeneratorSample(n=999, run="t"))
    assert heard == [(seq, "gen.sample", n) for n, seq in enumerate(seqs)]
    assert all(durable_when_heard)


async def test_numbering_continues_after_every_row_is_trimmed(tmp_path: Path) -> None:
    path = tmp_path / "journal.db"
    async with Journal(path, Clock(), limit_bytes=60_000) as journal:
        await _fill(journal, 100, pad="x" * 100)
        journal.mark_acked(100)
        await _fill(journal, 150, pad="x" * 100)  # pushes acked rows out
        assert journal.dropped_unacked == 0
        assert journal.oldest_seq > 1
        journal.mark_acked(250)
        await _fill(journal, 180, pad="x" * 100)  # now every row from the first two rounds goes
        assert journal.oldest_seq > 250 and journal.dropped_unacked == 0
    async with Journal(path, Clock(), limit_bytes=60_000) as journal:
        assert (await journal.append("gen.sample", GeneratorSample(n=0, run="t"))) == 431


async def test_acknowledged_rows_go_first_then_loss_is_loud(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with Journal(tmp_path / "j.db", Clock(), limit_bytes=50_000) as journal:
        await _fill(journal, 100, pad="y" * 200)
        journal.mark_acked(100)
        await _fill(journal, 60, pad="y" * 200)
        # the acked rows made room: nothing unacknowledged was lost
        assert journal.dropped_unacked == 0
        assert journal.oldest_seq > 1
        await _fill(journal, 400, pad="y" * 200)  # far beyond the bound with nothing acked
        assert journal.dropped_unacked > 0
        assert "UNACKNOWLEDGED" in caplog.text
        assert journal.disk_bytes <= 50_000
        losses = await journal.recent("gateway.journal_loss", "")
        assert losses and losses[0]["body"]["first_seq"] == 101
        rows = await journal.read_from(101, max_events=10, max_bytes=1_000_000)
        assert rows[0][0] == journal.oldest_seq > 101


async def test_read_from_returns_consecutive_docs_within_bounds(tmp_path: Path) -> None:
    async with Journal(tmp_path / "j.db", Clock()) as journal:
        await _fill(journal, 50)
        rows = await journal.read_from(10, max_events=5, max_bytes=1_000_000)
        assert [seq for seq, _ in rows] == [10, 11, 12, 13, 14]
        small = await journal.read_from(10, max_events=50, max_bytes=300)
        assert 1 <= len(small) < 5
        assert json.loads(rows[0][1])["body"]["n"] == 9


async def test_ack_beyond_head_raises_the_floor(tmp_path: Path) -> None:
    # a replacement gateway: central already holds 1..5000 from the dead one
    async with Journal(tmp_path / "j.db", Clock()) as journal:
        await _fill(journal, 3)
        journal.mark_acked(5000)
        await asyncio.sleep(0.05)
        assert await journal.append("gen.sample", GeneratorSample(n=1, run="r")) == 5001


async def test_events_after_a_raised_floor_are_read_back(tmp_path: Path) -> None:
    # a journal reset under a gateway central knows: the uplink reads from the new floor on
    # (this used to raise IndexError in the tail cache and kill the upload)
    async with Journal(tmp_path / "j.db", Clock()) as journal:
        await _fill(journal, 5)
        journal.mark_acked(100)
        await asyncio.sleep(0.05)
        await _fill(journal, 3)
        rows = await journal.read_from(101, max_events=10, max_bytes=1_000_000)
        assert [seq for seq, _ in rows] == [101, 102, 103]
        assert [
            seq for seq, _ in await journal.read_from(102, max_events=10, max_bytes=1_000_000)
        ] == [102, 103]


async def test_failed_commit_rejects_callers_and_keeps_numbering(tmp_path: Path) -> None:
    path = tmp_path / "j.db"
    async with Journal(path, Clock()) as journal:
        await _fill(journal, 5)
        with sqlite3.connect(path) as other:  # someone else holds the write lock
            other.execute("BEGIN EXCLUSIVE")
            other.execute("PRAGMA busy_timeout = 0")
            fut = journal.append_nowait("gen.sample", GeneratorSample(n=99, run="r"))
            with pytest.raises(Exception, match="journal commit failed"):
                await asyncio.wait_for(fut, 30)
            other.rollback()
        assert await journal.append("gen.sample", GeneratorSample(n=100, run="r")) == 6


async def test_a_body_that_is_not_its_model_is_refused_and_the_writer_lives_on(
    tmp_path: Path,
) -> None:
    async with Journal(tmp_path / "j.db", Clock()) as journal:
        with pytest.raises(TypeError):  # refused before it is queued: never a write error
            await journal.append("gen.sample", {"n": object()})  # type: ignore[arg-type]
        with pytest.raises(TypeError):
            await journal.append("gen.selftest", GeneratorSample(n=1, run="r"))
        assert journal.write_errors == 0
        assert await journal.append("gen.sample", GeneratorSample(n=1, run="r")) == 1


async def test_epoch_survives_reopen_and_a_new_file_gets_another(tmp_path: Path) -> None:
    async with Journal(tmp_path / "j.db", Clock()) as journal:
        first = journal.epoch
        await _fill(journal, 1)  # written with the first event it numbers
    async with Journal(tmp_path / "j.db", Clock()) as journal:
        assert journal.epoch == first
    async with Journal(tmp_path / "other.db", Clock()) as journal:
        assert journal.epoch != first and len(journal.epoch) == 16


async def test_rebase_renumbers_unacknowledged_events_under_a_new_epoch(tmp_path: Path) -> None:
    # a restored copy: central holds 1..7 as they are, and other data up to 1000
    path = tmp_path / "j.db"
    moved: list[tuple[int, int]] = []
    async with Journal(path, Clock()) as journal:
        journal.rebase_listeners.append(lambda first, shift: moved.append((first, shift)))
        await _fill(journal, 10)
        journal.mark_acked(5)
        old_epoch = journal.epoch
        journal.request_rebase(Rebase("0" * 16, 7, 1001))  # another epoch's: ignored
        journal.request_rebase(Rebase(old_epoch, 7, 1001))
        seq = await journal.append("gen.sample", GeneratorSample(n=99, run="t"))
        assert seq == 1004  # 8, 9, 10 became 1001–1003
        assert journal.epoch != old_epoch and journal.acked_seq == 1000
        rows = await journal.read_from(1001, max_events=10, max_bytes=1_000_000)
        assert [s for s, _ in rows] == [1001, 1002, 1003, 1004]
        docs = [json.loads(doc) for _, doc in rows]
        assert [(d["seq"], d["body"]["n"]) for d in docs] == [
            (1001, 7),
            (1002, 8),
            (1003, 9),
            (1004, 99),
        ]
        assert moved == [(8, 993)]
        journal.request_rebase(Rebase(old_epoch, 7, 5000))  # the same order again: done
        await asyncio.sleep(0.05)
        assert journal.head_seq == 1004
        epoch = journal.epoch
    async with Journal(path, Clock()) as journal:
        assert (journal.epoch, journal.head_seq, journal.acked_seq) == (epoch, 1004, 1000)
