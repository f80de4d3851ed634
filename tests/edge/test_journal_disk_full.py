"""A full disk: nothing is acknowledged that is not on disk, and the journal recovers by
trimming acknowledged rows. Runs on a real 1 MiB tmpfs (root only: mount)."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from edge.clock import Clock
from edge.journal import Journal, JournalError
from protocols.events import GeneratorSample


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    mount = tmp_path / "disk"
    mount.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    result = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)],
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {result.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


async def test_full_disk_refuses_then_recovers_after_acknowledged_rows_go(
    tiny_disk: Path,
) -> None:
    path = tiny_disk / "journal.db"
    durable: list[int] = []
    refused = 0
    async with Journal(
        path, Clock(), limit_bytes=50 * 1024 * 1024, ballast_bytes=96 * 1024
    ) as journal:
        for round_no in range(200):
            futures = [
                journal.append_nowait(
                    "gen.sample", GeneratorSample(n=round_no * 20 + i, run="d", pad="z" * 400)
                )
                for i in range(20)
            ]
            for result in await asyncio.gather(*futures, return_exceptions=True):
                if isinstance(result, int):
                    durable.append(result)
                else:
                    assert isinstance(result, JournalError)
                    refused += 1
            if refused:
                break
        assert refused > 0, "the 1 MiB disk never filled"
        # every event that was reported durable is on disk, numbering has no holes
        with sqlite3.connect(path) as db:
            stored = [s for (s,) in db.execute("SELECT seq FROM events ORDER BY seq")]
        assert stored == durable == list(range(1, len(durable) + 1))
        # central acknowledges everything: the next append makes room and succeeds
        journal.mark_acked(durable[-1])
        seq = await journal.append("gen.sample", GeneratorSample(n=10**6, run="d"))
        assert seq == durable[-1] + 1
