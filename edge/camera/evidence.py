"""Evidence on the gateway's disk: snapshots and clips, a hash-chained manifest, retention.

Layout under the evidence directory:

    manifest.jsonl                       one sealed entry per line (firmware_bridges.camera.codec)
    2026-03-02/<camera>/snap-w3-081502.123-000042.jpg
    2026-03-02/<camera>/clip-w3-081502.123-000043.mjpeg   concatenated JPEGs (ffplay -f mjpeg)
    state/                               empty-seat references (not evidence, not in the chain)

Every file enters the chain with its SHA-256 before anyone is told about it; every deletion
(30-day retention, oldest first when the disk runs low) is a chain entry too. Each new head is
handed to ``on_entry`` so the gateway journals it and central holds it: editing a file or a
line later, or rewriting the whole chain, no longer matches what central has.

Writes are serialised by a lock; callers in asyncio run them in a thread.
"""

from __future__ import annotations

import logging
import os
import shutil
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

from edge.camera.config import EvidenceConfig
from firmware_bridges.camera.codec import GENESIS, check_chain, encode_entry_line, seal_entry
from hallkit.clock import utc_now
from protocols.evidence import evidence_sha256

log = logging.getLogger(__name__)

MANIFEST = "manifest.jsonl"
STATE_DIR = "state"
EvidenceKind = Literal["snap", "clip"]
SUFFIX = {"snap": ".jpg", "clip": ".mjpeg"}


@dataclass(frozen=True, slots=True)
class ManifestHead:
    seq: int
    hash: str


@dataclass(slots=True)
class RetentionReport:
    deleted: list[str] = field(default_factory=list)
    freed_bytes: int = 0
    by_reason: dict[str, int] = field(default_factory=dict)


def sha256_file(path: Path) -> str:
    with path.open("rb") as handle:
        return evidence_sha256(iter(lambda: handle.read(1 << 20), b""))


def _disk_free(path: Path) -> int:
    return shutil.disk_usage(path).free


def _utc_text(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _parse_utc(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


class EvidenceStore:
    def __init__(
        self,
        root: Path,
        config: EvidenceConfig | None = None,
        *,
        on_entry: Callable[[dict[str, Any]], None] | None = None,
        disk_free: Callable[[Path], int] = _disk_free,
    ) -> None:
        self.root = root
        self.config = config or EvidenceConfig()
        self.on_entry = on_entry
        self._disk_free = disk_free
        self._lock = threading.Lock()
        root.mkdir(parents=True, exist_ok=True)
        self._manifest = root / MANIFEST
        self._live: dict[str, dict[str, Any]] = {}
        self._head = ManifestHead(0, GENESIS)
        self._load()

    # -- reading -----------------------------------------------------------------------------

    def head(self) -> ManifestHead:
        return self._head

    def live(self) -> dict[str, dict[str, Any]]:
        """Files the chain says exist: path → its ``add`` entry, oldest first."""
        with self._lock:
            return dict(self._live)

    def live_bytes(self) -> int:
        with self._lock:
            return sum(int(e["size"]) for e in self._live.values())

    def _load(self) -> None:
        if not self._manifest.exists():
            return
        raw = self._manifest.read_bytes()
        if raw and not raw.endswith(b"\n"):
            # A power cut in the middle of an append: that entry was never confirmed to anyone
            # (its head was not sent), so the torn tail goes; its file stays, unlisted.
            cut = raw.rfind(b"\n") + 1
            log.warning("evidence manifest: dropping a torn last line of %d bytes", len(raw) - cut)
            with self._manifest.open("r+b") as handle:
                handle.truncate(cut)
            raw = raw[:cut]
        check = check_chain(raw.splitlines())
        if check.problems:
            # Not ours to repair: keep appending after the last line, and let verify report it.
            log.error("evidence manifest has %d problems; run verify", len(check.problems))
        for entry in check.entries:
            self._apply(entry)
        self._head = ManifestHead(check.head_seq, check.head)

    def _apply(self, entry: dict[str, Any]) -> None:
        if entry.get("action") == "add":
            self._live[str(entry["path"])] = entry
        elif entry.get("action") == "delete":
            self._live.pop(str(entry["path"]), None)

    # -- writing -----------------------------------------------------------------------------

    def add(
        self,
        data: bytes,
        *,
        kind: EvidenceKind,
        camera: str,
        window: int | None,
        utc: datetime,
        reason: str,
        meta: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Store ``data`` as a new evidence file and chain it; returns the sealed entry."""
        with self._lock:
            seq = self._head.seq + 1
            stamp = utc.astimezone(UTC)
            name = (
                f"{kind}-w{window or 0}-{stamp:%H%M%S}.{stamp.microsecond // 1000:03d}-{seq:06d}"
                f"{SUFFIX[kind]}"
            )
            relative = f"{stamp:%Y-%m-%d}/{camera}/{name}"
            target = self.root / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            partial = target.with_name(target.name + ".part")
            with partial.open("wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            partial.replace(target)
            entry: dict[str, Any] = {
                "seq": seq,
                "utc": _utc_text(stamp),
                "action": "add",
                "path": relative,
                "sha256": evidence_sha256(data),
                "size": len(data),
                "camera": camera,
                "window": window,
                "reason": reason,
                "meta": meta or {},
                "prev": self._head.hash,
            }
            return self._append(entry)

    def delete(self, relative: str, reason: str, now: datetime | None = None) -> dict[str, Any]:
        with self._lock:
            return self._delete_locked(relative, reason, now or utc_now())

    def _delete_locked(self, relative: str, reason: str, now: datetime) -> dict[str, Any]:
        added = self._live.get(relative)
        if added is None:
            raise KeyError(f"{relative} is not live evidence")
        target = self.root / relative
        try:
            target.unlink()
        except FileNotFoundError:
            reason += ", file was already missing"
            log.error("evidence %s was already missing when deleted", relative)
        _remove_empty_parents(target.parent, self.root)
        entry: dict[str, Any] = {
            "seq": self._head.seq + 1,
            "utc": _utc_text(now),
            "action": "delete",
            "path": relative,
            "sha256": added["sha256"],
            "size": added["size"],
            "camera": added.get("camera"),
            "window": added.get("window"),
            "reason": reason,
            "meta": {"added_seq": added["seq"], "added_utc": added["utc"]},
            "prev": self._head.hash,
        }
        return self._append(entry)

    def _append(self, entry: dict[str, Any]) -> dict[str, Any]:
        sealed = seal_entry(entry)
        with self._manifest.open("ab") as handle:
            handle.write(encode_entry_line(sealed))
            handle.flush()
            os.fsync(handle.fileno())
        self._apply(sealed)
        self._head = ManifestHead(int(sealed["seq"]), str(sealed["hash"]))
        if self.on_entry is not None:
            try:
                self.on_entry(sealed)
            except Exception:  # the chain is written; a listener's failure must not undo it
                log.exception("evidence entry listener failed")
        return sealed

    # -- retention ---------------------------------------------------------------------------

    def enforce_retention(self, now: datetime) -> RetentionReport:
        """Delete evidence older than ``retention_days``; then, oldest first, while free disk is
        below ``min_free_bytes`` or the directory is above ``max_bytes``. Every deletion is a
        chain entry (and so reaches central)."""
        report = RetentionReport()
        cutoff = now - timedelta(days=self.config.retention_days)
        with self._lock:
            for relative, added in sorted(self._live.items(), key=lambda kv: kv[1]["seq"]):
                if _parse_utc(str(added["utc"])) < cutoff:
                    self._retire(
                        relative, f"older than {self.config.retention_days:g} days", now, report
                    )
            # Free only the deficit: when something else filled the disk, evidence that cannot
            # cure it is not thrown away beyond that.
            deficit = self.config.min_free_bytes - self._disk_free(self.root)
            freed = 0
            while self._live and freed < deficit:
                oldest = min(self._live.items(), key=lambda kv: kv[1]["seq"])[0]
                freed += int(self._live[oldest]["size"])
                self._retire(oldest, "disk space low, oldest first", now, report)
            if self.config.max_bytes is not None:
                size = sum(int(e["size"]) for e in self._live.values())
                while self._live and size > self.config.max_bytes:
                    oldest = min(self._live.items(), key=lambda kv: kv[1]["seq"])[0]
                    size -= int(self._live[oldest]["size"])
                    self._retire(oldest, "evidence quota exceeded, oldest first", now, report)
        return report

    def _retire(self, relative: str, reason: str, now: datetime, report: RetentionReport) -> None:
        entry = self._delete_locked(relative, reason, now)
        log.info("evidence retention: deleted %s (%s)", relative, reason)
        report.deleted.append(relative)
        report.freed_bytes += int(entry["size"])
        key = reason.split(",")[0]
        report.by_reason[key] = report.by_reason.get(key, 0) + 1


def _remove_empty_parents(directory: Path, root: Path) -> None:
    while directory != root and root in directory.parents:
        try:
            directory.rmdir()
        except OSError:
            return
        directory = directory.parent
