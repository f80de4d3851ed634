"""Evidence files, the hash-chained manifest, retention, and the verify command, on real files."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from edge.camera.config import EvidenceConfig
from edge.camera.evidence import MANIFEST, EvidenceStore
from edge.camera.verify import main as verify_main
from edge.camera.verify import verify_evidence

T0 = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)
ROOT = Path(__file__).resolve().parents[3]


def fill(
    store: EvidenceStore, n: int, start: datetime = T0, step: timedelta = timedelta(days=1)
) -> list[dict[str, Any]]:
    entries = []
    for i in range(n):
        entries.append(
            store.add(
                b"\xff\xd8" + bytes([i]) * 1000 + b"\xff\xd9",
                kind="snap",
                camera="cam1",
                window=3,
                utc=start + i * step,
                reason="key press: citizen present",
            )
        )
    return entries


def test_every_file_is_chained_and_announced(tmp_path: Path) -> None:
    announced: list[dict[str, Any]] = []
    store = EvidenceStore(tmp_path, on_entry=announced.append)
    entries = fill(store, 3)
    assert [e["seq"] for e in announced] == [1, 2, 3]
    assert store.head().hash == entries[-1]["hash"] == announced[-1]["hash"]
    assert all((tmp_path / e["path"]).is_file() for e in entries)
    report = verify_evidence(tmp_path, expected_head=announced[1]["hash"])
    assert report.ok, report.lines()
    assert report.live_files == 3 and report.entries == 3


def test_a_reopened_store_continues_the_chain(tmp_path: Path) -> None:
    fill(EvidenceStore(tmp_path), 2)
    store = EvidenceStore(tmp_path)
    assert store.head().seq == 2
    fill(store, 1, start=T0 + timedelta(days=5))
    assert verify_evidence(tmp_path).ok


def test_altered_snapshot_is_detected(tmp_path: Path) -> None:
    entries = fill(EvidenceStore(tmp_path), 3)
    target = tmp_path / entries[1]["path"]
    data = bytearray(target.read_bytes())
    data[10] ^= 0xFF
    target.write_bytes(bytes(data))
    report = verify_evidence(tmp_path)
    assert not report.ok
    assert report.altered == [entries[1]["path"]]
    assert not report.chain_problems


def test_altered_manifest_entry_is_detected(tmp_path: Path) -> None:
    entries = fill(EvidenceStore(tmp_path), 3)
    manifest = tmp_path / MANIFEST
    lines = manifest.read_text().splitlines()
    doctored = json.loads(lines[0])
    doctored["reason"] = "key press: citizen present (edited)"
    lines[0] = json.dumps(doctored, sort_keys=True, separators=(",", ":"))
    manifest.write_text("\n".join(lines) + "\n")
    report = verify_evidence(tmp_path)
    assert not report.ok
    assert any("line 1" in p and "altered" in p for p in report.chain_problems)
    assert entries


def test_rewritten_chain_is_caught_by_centrals_head(tmp_path: Path) -> None:
    entries = fill(EvidenceStore(tmp_path), 3)
    central_head = entries[-1]["hash"]
    # Someone deletes everything and builds a fresh, internally consistent chain.
    for e in entries:
        (tmp_path / e["path"]).unlink()
    (tmp_path / MANIFEST).unlink()
    fill(EvidenceStore(tmp_path), 3, start=T0 + timedelta(hours=1))
    assert verify_evidence(tmp_path).ok
    report = verify_evidence(tmp_path, expected_head=central_head)
    assert not report.ok and report.head_problem


def test_missing_and_unlisted_files_are_reported(tmp_path: Path) -> None:
    entries = fill(EvidenceStore(tmp_path), 2)
    (tmp_path / entries[0]["path"]).unlink()
    (tmp_path / "2026-03-02" / "cam1" / "planted.jpg").write_bytes(b"x")
    report = verify_evidence(tmp_path)
    assert report.missing == [entries[0]["path"]]
    assert report.unlisted == ["2026-03-02/cam1/planted.jpg"]


def test_torn_last_line_is_dropped_on_open(tmp_path: Path) -> None:
    fill(EvidenceStore(tmp_path), 2)
    with (tmp_path / MANIFEST).open("ab") as handle:
        handle.write(b'{"seq":3,"act')
    store = EvidenceStore(tmp_path)
    assert store.head().seq == 2
    fill(store, 1, start=T0 + timedelta(days=3))
    assert verify_evidence(tmp_path).ok


def test_retention_by_age_logs_each_deletion(tmp_path: Path) -> None:
    announced: list[dict[str, Any]] = []
    store = EvidenceStore(
        tmp_path, EvidenceConfig(retention_days=30, min_free_bytes=0), on_entry=announced.append
    )
    entries = fill(store, 40)  # one a day
    now = T0 + timedelta(days=40)
    report = store.enforce_retention(now)
    # Days 0…9 are older than 30 days at day 40 (day 10 is exactly 30 days old: kept).
    assert report.deleted == [e["path"] for e in entries[:10]]
    deletions = [e for e in announced if e["action"] == "delete"]
    assert len(deletions) == 10 and all("older than 30 days" in d["reason"] for d in deletions)
    assert not any((tmp_path / e["path"]).exists() for e in entries[:10])
    verified = verify_evidence(tmp_path)
    assert verified.ok and verified.live_files == 30
    assert store.enforce_retention(now).deleted == []


def test_low_disk_deletes_oldest_first_only_as_much_as_needed(tmp_path: Path) -> None:
    free = {"bytes": 10_000}
    store = EvidenceStore(
        tmp_path,
        EvidenceConfig(retention_days=30, min_free_bytes=13_000),
        disk_free=lambda _: free["bytes"],
    )
    entries = fill(store, 6, step=timedelta(minutes=1))  # 1,002 bytes each
    report = store.enforce_retention(T0 + timedelta(hours=1))
    assert report.deleted == [e["path"] for e in entries[:3]]  # deficit 3,000 → 3 files
    assert report.by_reason == {"disk space low": 3}
    free["bytes"] = 20_000
    assert store.enforce_retention(T0 + timedelta(hours=1)).deleted == []
    assert verify_evidence(tmp_path).ok


def test_quota_deletes_oldest_first(tmp_path: Path) -> None:
    store = EvidenceStore(tmp_path, EvidenceConfig(min_free_bytes=0, max_bytes=2_500))
    entries = fill(store, 5, step=timedelta(minutes=1))
    report = store.enforce_retention(T0 + timedelta(hours=1))
    assert report.deleted == [e["path"] for e in entries[:3]]
    assert store.live_bytes() <= 2_500


def test_verify_command_exit_status(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    entries = fill(EvidenceStore(tmp_path), 2)
    assert verify_main([str(tmp_path)]) == 0
    (tmp_path / entries[0]["path"]).write_bytes(b"replaced")
    assert verify_main([str(tmp_path), "--head", entries[-1]["hash"]]) == 1
    assert "altered" in capsys.readouterr().out
    # And as a real command, the way a technician runs it.
    result = subprocess.run(
        [sys.executable, "-m", "edge.camera.verify", str(tmp_path)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    )
    assert result.returncode == 1 and "已篡改 altered" in result.stdout
