"""Retention of raw events per site policy (PostgreSQL, events partitioned by month).

A month older than the policy is detached from ``events``, written out with ``COPY`` (text
format, gzip) to the archive directory, verified (the file read back: its SHA-256, and as many
rows as the detached table holds), recorded in the archive's manifest (``manifest.jsonl``, one
JSON line per month with the file's SHA-256), and only then dropped. A step that fails leaves
the detached table in place, listed by ``hallwatch-central events partitions``; the next run
takes it up again. The rollups are not touched: dashboards keep answering after the raw events
of a month are gone, and the correlation job leaves the hall-days of an archived month as they
are (``central.store.archived_months``): recomputing them from the events left would wipe their
results. Restore a month with ``COPY events FROM`` the decompressed file.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import gzip
import hashlib
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from central.store import archived_months, partitions
from central.store.partitions import Partition

log = logging.getLogger(__name__)

MANIFEST = "manifest.jsonl"
TABLE = "events"


class ArchiveError(RuntimeError):
    """A month's file does not match its table: the table is kept, nothing is dropped."""


@dataclass(frozen=True)
class Archived:
    partition: str
    month: dt.date
    rows: int
    file: Path
    sha256: str
    size: int

    def as_json(self) -> dict[str, Any]:
        return {
            "partition": self.partition,
            "month": self.month.isoformat()[:7],
            "rows": self.rows,
            "file": self.file.name,
            "bytes": self.size,
            "sha256": self.sha256,
        }


async def due(engine: AsyncEngine, before: dt.date) -> list[Partition]:
    """The month tables older than ``before`` (attached or left detached by a failed run)."""
    async with engine.connect() as conn:
        found = await partitions.list_partitions(conn, TABLE)
    return [p for p in found if p.month is not None and p.month < before]


async def archive(engine: AsyncEngine, before: dt.date, archive_dir: Path) -> list[Archived]:
    """Archive and drop every month before ``before``, oldest first."""
    done = []
    for partition in await due(engine, before):
        done.append(await archive_month(engine, partition, archive_dir))
    return done


async def archive_month(engine: AsyncEngine, partition: Partition, archive_dir: Path) -> Archived:
    assert partition.month is not None
    qualified = f"{partitions.SCHEMA}.{partition.name}"
    if partition.attached:
        async with engine.begin() as conn:
            await conn.execute(text(f"SET LOCAL lock_timeout = '{partitions.LOCK_TIMEOUT}'"))
            await conn.execute(text(f"ALTER TABLE {TABLE} DETACH PARTITION {qualified}"))
    await asyncio.to_thread(archive_dir.mkdir, parents=True, exist_ok=True)
    target = archive_dir / f"{partition.name}.copy.gz"
    async with engine.connect() as conn:
        rows = int((await conn.execute(text(f"SELECT count(*) FROM {qualified}"))).scalar_one())
        raw = await conn.get_raw_connection()
        await _copy_out(raw.driver_connection, partition.name, target)
    digest, size = await asyncio.to_thread(_verify, target, rows)
    done = Archived(partition.name, partition.month, rows, target, digest, size)
    await asyncio.to_thread(
        _append_manifest, archive_dir, {**done.as_json(), "archived_at": _now()}
    )
    async with engine.begin() as conn:
        await conn.execute(text(f"DROP TABLE {qualified}"))
        await archived_months.record(conn, partition.month)  # its hall-days stay as they are
    log.info("events of %s archived to %s (%d rows) and dropped", partition.name, target, rows)
    return done


async def _copy_out(driver: Any, name: str, target: Path) -> None:
    """COPY the table into ``target`` through a file renamed into place once synced."""
    partial = target.with_name(target.name + ".part")
    with partial.open("wb") as raw_file:
        with gzip.GzipFile(filename=target.name, mode="wb", fileobj=raw_file, mtime=0) as gz:

            async def write(chunk: bytes) -> None:
                gz.write(chunk)

            await driver.copy_from_table(name, schema_name=partitions.SCHEMA, output=write)
        raw_file.flush()
        os.fsync(raw_file.fileno())
    partial.replace(target)


def _verify(target: Path, rows: int) -> tuple[str, int]:
    """Read the file back: its SHA-256 and size, and one line per row of the table."""
    lines = 0
    with gzip.open(target, "rb") as gz:
        for block in iter(lambda: gz.read(1 << 20), b""):
            lines += block.count(b"\n")
    if lines != rows:
        raise ArchiveError(f"{target}: {lines} rows written, the table holds {rows}; kept")
    return sha256_of(target), target.stat().st_size


def _append_manifest(archive_dir: Path, entry: dict[str, Any]) -> None:
    with (archive_dir / MANIFEST).open("a", encoding="utf-8") as manifest:
        manifest.write(json.dumps(entry, ensure_ascii=False) + "\n")
        manifest.flush()
        os.fsync(manifest.fileno())


def read_manifest(archive_dir: Path) -> list[dict[str, Any]]:
    path = archive_dir / MANIFEST
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


def check_archive(archive_dir: Path) -> list[str]:
    """Every month the manifest lists: its file is there and has the recorded SHA-256.
    Returns what is wrong, one line each (nothing: all good)."""
    problems = []
    for entry in read_manifest(archive_dir):
        path = archive_dir / entry["file"]
        if not path.exists():
            problems.append(f"{entry['file']}: missing")
        elif sha256_of(path) != entry["sha256"]:
            problems.append(f"{entry['file']}: SHA-256 differs from the manifest's")
    return problems


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as raw_file:
        for block in iter(lambda: raw_file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def retention_cutoff(today: dt.date, keep_months: int) -> dt.date:
    """The first month kept: the current month and ``keep_months`` before it."""
    return partitions.add_months(partitions.month_of(today), -keep_months)


async def maintain(
    engine: AsyncEngine, today: dt.date, keep_months: int | None, archive_dir: Path
) -> list[Archived]:
    """One pass of the aggregator's job: months ahead, then the retention policy."""
    made = await partitions.ensure_ahead(engine, today, table=TABLE)
    if made:
        log.info("event partitions created: %s", ", ".join(made))
    if keep_months is None or engine.dialect.name != "postgresql":
        return []
    return await archive(engine, retention_cutoff(today, keep_months), archive_dir)


async def run_forever(
    engine: AsyncEngine, keep_months: int | None, archive_dir: Path, every_s: float
) -> None:
    while True:
        try:
            await maintain(engine, dt.datetime.now(dt.UTC).date(), keep_months, archive_dir)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("event partitions: a pass failed; trying again later")
        await asyncio.sleep(every_s)
