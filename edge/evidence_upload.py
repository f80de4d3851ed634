"""Evidence uploads: the snapshots that camera events name, sent to central after the events.

Each ``camera.verdict`` or ``camera.presence`` with a snapshot, and each ``camera.evidence``
entry a supervisor asked for (``edge.camera.on_demand``), enters a small persistent queue
(``evidence-uploads.sqlite`` in the data dir) keyed by the event's seq. An item is sent only
once central has acknowledged that event (so central can check the bytes against the hash it
already holds), one upload at a time with a pause between, on the uplink's connection: the
event stream never waits for evidence. The header carries the hash *journaled*, not one
recomputed now, so a file changed on disk since is refused by central, not laundered.

Central answers on the receipt channel (protocols/evidence.py): ``stored`` and ``refused``
end the item (refused is logged as an error: the file on this disk no longer matches what was
journaled); ``retry`` or no answer within ``resend_s`` sends it again, backing off to
``max_backoff_s``. The queue survives restarts of either side; a file deleted meanwhile by
retention is dropped with a warning.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import time
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from edge.journal import Journal
from edge.uplink import Uplink
from protocols.evidence import (
    MAX_EVIDENCE_BYTES,
    EvidenceHeader,
    EvidenceReceipt,
    encode_upload,
)

log = logging.getLogger(__name__)

QUEUE_FILE = "evidence-uploads.sqlite"
UPLOADED_KINDS = ("camera.verdict", "camera.presence")
# the first word of the reason on the evidence entries a supervisor asked for
# (edge.camera.on_demand): those entries are uploaded too
ON_DEMAND = "on-demand"


def is_on_demand(reason: str) -> bool:
    return reason.startswith(ON_DEMAND + " ")


_SCHEMA = """
CREATE TABLE IF NOT EXISTS pending (
    event_seq INTEGER PRIMARY KEY,
    kind TEXT NOT NULL,
    path TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    manifest_seq INTEGER NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_try REAL NOT NULL DEFAULT 0
)
"""


def uploaded_file(kind: str, body: dict[str, Any]) -> tuple[str, str, int] | None:
    """(path, sha256, manifest seq) of the file an event asks to upload, if any: a verdict's or
    presence change's snapshot, or a file a supervisor asked for (``edge.camera.on_demand``)."""
    if kind in UPLOADED_KINDS and body.get("snapshot") and body.get("snapshot_sha256"):
        return body["snapshot"], body["snapshot_sha256"], int(body.get("manifest_seq") or 0)
    wanted = kind == "camera.evidence" and body.get("action") == "add"
    if wanted and is_on_demand(str(body.get("reason", ""))):
        return body["path"], body["sha256"], int(body["seq"])
    return None


class EvidenceUploader:
    def __init__(
        self,
        data_dir: Path,
        evidence_dir: Path,
        journal: Journal,
        uplink: Uplink,
        *,
        resend_s: float = 10.0,
        max_backoff_s: float = 300.0,
        pace_s: float = 0.2,
    ) -> None:
        self.evidence_dir = evidence_dir.resolve()
        self.journal = journal
        self.uplink = uplink
        self.resend_s = resend_s
        self.max_backoff_s = max_backoff_s
        self.pace_s = pace_s  # between uploads: evidence trickles, events flow
        self.stored = 0
        self.refused = 0
        self._wake = asyncio.Event()
        self._db = sqlite3.connect(
            data_dir / QUEUE_FILE, isolation_level=None, check_same_thread=False
        )
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute(_SCHEMA)
        uplink.on_receipt = self.on_receipt
        journal.rebase_listeners.append(self._renumber)
        # what a committed event's snapshot needs: queued for upload (edge/committed.py)
        self._unsubscribe = journal.subscribe(
            lambda event: self.enqueue(event.seq, event.kind, event.body)
        )

    def close(self) -> None:
        self._unsubscribe()
        self._db.close()

    def pending(self) -> int:
        return int(self._db.execute("SELECT count(*) FROM pending").fetchone()[0])

    def enqueue(self, event_seq: int, kind: str, body: dict[str, Any]) -> None:
        """Called right after the event is committed; cheap (one small local insert)."""
        named = uploaded_file(kind, body)
        if named is None:
            return
        self._db.execute(
            "INSERT OR IGNORE INTO pending (event_seq, kind, path, sha256, manifest_seq) "
            "VALUES (?, ?, ?, ?, ?)",
            (event_seq, kind, *named),
        )
        self._wake.set()

    def _renumber(self, first: int, shift: int) -> None:
        """The journal renumbered its unacknowledged events (central's rebase): follow it."""
        self._db.execute("BEGIN")
        try:
            self._db.execute(
                "UPDATE pending SET event_seq = -(event_seq + ?) WHERE event_seq >= ?",
                (shift, first),
            )
            self._db.execute("UPDATE pending SET event_seq = -event_seq WHERE event_seq < 0")
        except sqlite3.Error:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def on_receipt(self, payload: bytes) -> None:
        try:
            receipt = EvidenceReceipt.model_validate_json(payload)
        except ValidationError as exc:
            log.warning("evidence: ignoring malformed receipt: %s", exc.errors()[0]["msg"])
            return
        if receipt.hall != self.uplink.hall or receipt.gateway != self.uplink.gateway:
            return
        if receipt.status == "retry":
            log.info(
                "evidence: central asks to resend %s later: %s", receipt.sha256, receipt.reason
            )
            return  # next_try already lies ahead
        # two events may carry the very same image (a still scene): settle only the one the
        # receipt answers, or the other's upload would be forgotten
        if receipt.event_seq is not None:
            self._db.execute(
                "DELETE FROM pending WHERE event_seq = ? AND sha256 = ?",
                (receipt.event_seq, receipt.sha256),
            )
        else:
            self._db.execute("DELETE FROM pending WHERE sha256 = ?", (receipt.sha256,))
        if receipt.status == "stored":
            self.stored += 1
        else:
            self.refused += 1
            log.error("evidence: central REFUSED snapshot %s: %s", receipt.sha256, receipt.reason)
        self._wake.set()

    def _next_due(self) -> tuple[int, str, str, str, int, int] | None:
        row = self._db.execute(
            "SELECT event_seq, kind, path, sha256, manifest_seq, attempts FROM pending "
            "WHERE event_seq <= ? AND next_try <= ? ORDER BY next_try, event_seq LIMIT 1",
            (self.journal.acked_seq, time.time()),
        ).fetchone()
        return None if row is None else tuple(row)

    def _drop(self, event_seq: int, why: str) -> None:
        log.warning("evidence: not uploading the snapshot of event %d: %s", event_seq, why)
        self._db.execute("DELETE FROM pending WHERE event_seq = ?", (event_seq,))

    def _read(self, relative: str) -> bytes | str:
        """The file's bytes, or why it cannot be sent."""
        path = (self.evidence_dir / relative).resolve()
        if not path.is_relative_to(self.evidence_dir):
            return "path leaves the evidence directory"
        try:
            size = path.stat().st_size
            if size > MAX_EVIDENCE_BYTES:
                return f"{size} bytes, over the {MAX_EVIDENCE_BYTES}-byte limit"
            return path.read_bytes()
        except FileNotFoundError:
            return "file gone (retention deleted it before central took it)"

    async def _send(self, item: tuple[int, str, str, str, int, int]) -> None:
        event_seq, _kind, relative, sha256, manifest_seq, attempts = item
        data = await asyncio.to_thread(self._read, relative)
        if isinstance(data, str):
            self._drop(event_seq, data)
            return
        header = EvidenceHeader(
            hall=self.uplink.hall,
            gateway=self.uplink.gateway,
            path=relative,
            sha256=sha256,
            size=len(data),
            manifest_seq=manifest_seq,
            event_seq=event_seq,
        )
        if not self.uplink.publish_evidence(encode_upload(header, data)):
            return
        backoff = min(self.resend_s * 2 ** min(attempts, 16), self.max_backoff_s)
        self._db.execute(
            "UPDATE pending SET attempts = attempts + 1, next_try = ? WHERE event_seq = ?",
            (time.time() + backoff, event_seq),
        )

    async def run(self) -> None:
        while True:
            item = self._next_due() if self.uplink.connected else None
            if item is not None:
                await self._send(item)
                await asyncio.sleep(self.pace_s)
                continue
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=1.0)
