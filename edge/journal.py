# Long module: one writer task owns the SQLite file; append, commit, trim, ack and rebase
# share its seq, size and epoch state and must never interleave, so they stay one class.
"""The gateway journal: store-and-forward on SQLite (WAL).

Appends are group-committed: every event queued while the previous transaction was on disk goes
into the next one, so one fsync covers hundreds of events. A caller's future resolves only after
its transaction committed (``synchronous=FULL``): a device may be acknowledged then, and a power
cut can no longer take the event back.

Sequence numbers are assigned inside the committing transaction from a persisted high-water mark,
so they are gapless and survive reboots even after every row has been trimmed.

Each journal has an epoch: a random id made with the journal file and carried in every batch.
A journal that is deleted, replaced or restored from an old copy therefore shows up at central
as another lineage; when central already holds the seqs it numbers (or holds them with other
content), it answers with ``Ack.rebase_to`` and the journal renumbers its unacknowledged events
from there, under a fresh epoch, in one transaction. Nothing is dropped and nothing is taken
for the old journal's data.

The journal is bounded: past ``limit_bytes`` acknowledged rows go first; if unacknowledged rows
still have to go, that is counted, logged at CRITICAL and journaled as ``gateway.journal_loss``
(central also sees the hole through the next batch's ``lost_from``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import secrets
import shutil
import sqlite3
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import aiosqlite

from edge.clock import Clock, Stamp
from edge.committed import CommitFeed, Committed, Subscriber
from protocols.body import Body
from protocols.envelope import JournalState
from protocols.events import KINDS, JournalLoss

log = logging.getLogger(__name__)

ROW_OVERHEAD_BYTES = 48  # rowid, integer columns and b-tree cell header, measured ~40–50
TRIM_TO_FRACTION = 0.9  # trim below the limit, not to it, so trimming is not per-append
TAIL_CACHE_EVENTS = 50_000  # recent docs served to the uplink without touching the disk
BALLAST_RETRY_S = 10.0  # how often to try taking the disk reserve back after a full disk

_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    seq   INTEGER PRIMARY KEY,
    kind  TEXT NOT NULL,
    utc   TEXT NOT NULL,
    doc   TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
"""


class JournalError(RuntimeError):
    """The journal could not make an event durable; the device must not be acknowledged."""


class JournalClosed(JournalError):
    pass


@dataclass(frozen=True, slots=True)
class Rebase:
    """Central holds this journal's events through ``held_through``; those above move to
    ``start`` and the journal continues under a new epoch."""

    epoch: str
    held_through: int
    start: int


@dataclass(slots=True)
class _Pending:
    kind: str
    body: dict[str, Any]
    stamp: Stamp
    future: asyncio.Future[int]


class Journal:
    def __init__(
        self,
        path: Path,
        clock: Clock,
        *,
        limit_bytes: int = 512 * 1024 * 1024,
        seq_floor: int = 0,
        max_batch: int = 5000,
        ballast_bytes: int = 4 * 1024 * 1024,
    ) -> None:
        self.path = path
        self.clock = clock
        self.limit_bytes = limit_bytes
        self._seq_floor = seq_floor
        self._max_batch = max_batch
        self.ballast_bytes = ballast_bytes
        self._ballast_checked = 0.0
        self._db: aiosqlite.Connection | None = None
        self._reader: aiosqlite.Connection | None = None
        self._pending: deque[_Pending] = deque()
        self._wake = asyncio.Event()
        self._writer: asyncio.Task[None] | None = None
        self._closing = False
        self._tail: deque[tuple[int, str]] = deque(maxlen=TAIL_CACHE_EVENTS)
        self._committed = asyncio.Condition()
        self._oldest_unacked_utc: str | None = None
        self.head_seq = 0
        self.acked_seq = 0
        self._ack_target = 0
        self.oldest_seq = 1
        self.disk_bytes = 0
        self.dropped_unacked = 0
        self.commits = 0
        self.write_errors = 0
        self._feed = CommitFeed()  # who hears of each event once it is committed
        # called after a rebase with (first old seq moved, shift): queues keyed by seq follow
        self.rebase_listeners: list[Callable[[int, int], None]] = []
        self.epoch = ""
        self.rebases = 0
        self._rebase: Rebase | None = None
        self._unsaved_epoch: int | None = None

    # -- lifecycle -------------------------------------------------------------------------

    async def open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = await aiosqlite.connect(self.path, isolation_level=None)
        await self._db.executescript(
            "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; PRAGMA journal_size_limit=67108864;"
        )
        await self._db.executescript(_SCHEMA)
        self._restore_ballast()
        meta = {k: v async for k, v in await self._db.execute("SELECT key, value FROM meta")}
        self.epoch = self._load_epoch(meta.get("epoch"))
        async with self._db.execute(
            "SELECT min(seq), max(seq), count(*), coalesce(sum(length(doc)), 0) FROM events"
        ) as cur:
            row = await cur.fetchone()
        assert row is not None
        lo, hi, count, doc_bytes = row
        self.head_seq = max(meta.get("head_seq", 0), hi or 0, self._seq_floor)
        self.acked_seq = self._ack_target = min(meta.get("acked_seq", 0), self.head_seq)
        self.dropped_unacked = meta.get("dropped_unacked", 0)
        self.oldest_seq = lo if lo is not None else self.head_seq + 1
        self.disk_bytes = doc_bytes + count * ROW_OVERHEAD_BYTES
        self._reader = await aiosqlite.connect(f"file:{self.path}?mode=ro", uri=True)
        await self._refresh_oldest_unacked()
        self._writer = asyncio.create_task(self._write_loop(), name="journal-writer")

    def _load_epoch(self, stored: int | None) -> str:
        # kept in meta as a 63-bit integer, shown as 16 hex digits; a new one is written with
        # the first events it numbers (no write at open: a full disk must still open)
        if stored is not None:
            return _epoch_text(stored)
        self._unsaved_epoch = _new_epoch()
        log.info("journal: new journal epoch %s", _epoch_text(self._unsaved_epoch))
        return _epoch_text(self._unsaved_epoch)

    async def close(self) -> None:
        """Commit what is queued, then close."""
        self._closing = True
        self._wake.set()
        if self._writer is not None:
            await self._writer
        for conn in (self._reader, self._db):
            if conn is not None:
                await conn.close()
        self._db = self._reader = None

    async def __aenter__(self) -> Journal:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- appending -------------------------------------------------------------------------

    def subscribe(self, subscriber: Subscriber) -> Callable[[], None]:
        """Call ``subscriber`` with each event committed from now on, in journal order, right
        after its transaction committed (see edge/committed.py); returns the unsubscribe."""
        return self._feed.subscribe(subscriber)

    def append_nowait(
        self, kind: str, body: Body, stamp: Stamp | None = None
    ) -> asyncio.Future[int]:
        """Queue an event; the future resolves with its seq once it is durable.

        ``body`` is the kind's model from protocols.events, already validated, so nothing is
        journaled that central could not store."""
        if self._closing:
            raise JournalClosed("journal is closing")
        return self._enqueue(kind, body, stamp)

    def _enqueue(self, kind: str, body: Body, stamp: Stamp | None) -> asyncio.Future[int]:
        if type(body) is not KINDS.get(kind):
            raise TypeError(
                f"{kind} needs a {getattr(KINDS.get(kind), '__name__', '?')} "
                f"body, not {type(body).__name__}"
            )
        doc = body.model_dump(mode="json", exclude_unset=True)  # what the builder said
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._pending.append(_Pending(kind, doc, stamp or self.clock.stamp(), future))
        self._wake.set()
        return future

    async def append(self, kind: str, body: Body, stamp: Stamp | None = None) -> int:
        return await self.append_nowait(kind, body, stamp)

    async def _write_loop(self) -> None:
        # The only task that writes to the database, so transactions never interleave.
        while True:
            await self._wake.wait()
            self._wake.clear()
            await self._persist_ack()
            await self._apply_rebase()
            while self._pending:
                await self._persist_ack()
                batch = [
                    self._pending.popleft() for _ in range(min(len(self._pending), self._max_batch))
                ]
                try:
                    await self._commit_batch(batch)
                except Exception as exc:  # a body that is not JSON, a failed trim …
                    # … must not end the only writer: every later caller would wait forever
                    self.write_errors += 1
                    log.exception("journal: a batch of %d events failed", len(batch))
                    why = f"journal write failed: {exc!r}"[:300]
                    for item in batch:
                        if not item.future.done():
                            item.future.set_exception(JournalError(why))
            if self._closing and not self._pending:
                return

    async def _commit_batch(self, batch: list[_Pending]) -> None:
        for attempt in (1, 2):
            try:
                rows = await self._write(batch)
            except sqlite3.Error as exc:
                self.write_errors += 1
                with contextlib.suppress(sqlite3.Error):
                    await self._conn.execute("ROLLBACK")
                full = isinstance(exc, sqlite3.OperationalError) and "full" in str(exc).lower()
                if attempt == 1 and full:
                    log.error(
                        "journal: DISK FULL; releasing the reserve, trimming every "
                        "acknowledged event and retrying"
                    )
                    await self._make_room()
                    continue
                log.error(
                    "journal: commit failed (%s); %d events not acknowledged", exc, len(batch)
                )
                for item in batch:
                    if not item.future.done():
                        item.future.set_exception(JournalError(f"journal commit failed: {exc}"))
                return
            break
        self.commits += 1
        self._maybe_restore_ballast()
        for (seq, doc), item in zip(rows, batch, strict=True):
            self._tail.append((seq, doc))
            if not item.future.done():
                item.future.set_result(seq)
        async with self._committed:
            self._committed.notify_all()
        if len(self._feed):
            for (seq, _), item in zip(rows, batch, strict=True):
                self._feed.publish(
                    Committed(seq, item.kind, item.stamp.utc_text, item.stamp.mono_ns, item.body)
                )
        if self.disk_bytes > self.limit_bytes:
            await self._trim(int(self.limit_bytes * TRIM_TO_FRACTION), allow_unacked=True)

    # -- a full disk -----------------------------------------------------------------------
    # When the disk is full SQLite cannot even delete (WAL pages must be written first), so a
    # reserve file is kept beside the journal: released, it gives the room to record the last
    # ack and free the acknowledged rows. It is taken again once the disk has room for it.

    @property
    def _ballast_path(self) -> Path:
        return self.path.with_name(self.path.name + ".reserve")

    def _restore_ballast(self) -> None:
        if self.ballast_bytes <= 0 or self._ballast_path.exists():
            return
        try:
            with open(self._ballast_path, "wb") as reserve:
                reserve.truncate(0)
                reserve.write(b"\0" * self.ballast_bytes)  # real blocks, not a sparse file
                reserve.flush()
                os.fsync(reserve.fileno())
        except OSError as exc:
            with contextlib.suppress(OSError):
                self._ballast_path.unlink()
            log.warning(
                "journal: cannot keep the %d-byte disk reserve: %s",
                self.ballast_bytes,
                exc.strerror,
            )

    def _maybe_restore_ballast(self) -> None:
        if self.ballast_bytes <= 0 or self._ballast_path.exists():
            return
        now = time.monotonic()
        if now - self._ballast_checked < BALLAST_RETRY_S:
            return
        self._ballast_checked = now
        if shutil.disk_usage(self.path.parent).free > 2 * self.ballast_bytes:
            self._restore_ballast()

    async def _make_room(self) -> None:
        with contextlib.suppress(OSError):
            self._ballast_path.unlink()
        self._ballast_checked = time.monotonic()
        await self._persist_ack()
        with contextlib.suppress(sqlite3.Error):
            await self._trim(0, allow_unacked=False)
        with contextlib.suppress(sqlite3.Error):
            await self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    @property
    def _conn(self) -> aiosqlite.Connection:
        if self._db is None:
            raise JournalClosed("journal is not open")
        return self._db

    async def _write(self, batch: list[_Pending]) -> list[tuple[int, str]]:
        seq = self.head_seq
        boot = self.clock.boot_id
        rows: list[tuple[int, str]] = []
        params: list[tuple[int, str, str, str]] = []
        added = 0
        for item in batch:
            seq += 1
            utc = item.stamp.utc_text
            doc = json.dumps(
                {
                    "seq": seq,
                    "utc": utc,
                    "mono_ns": item.stamp.mono_ns,
                    "boot": boot,
                    "synced": item.stamp.synced,
                    "kind": item.kind,
                    "body": item.body,
                },
                ensure_ascii=False,
                separators=(",", ":"),
            )
            rows.append((seq, doc))
            params.append((seq, item.kind, utc, doc))
            added += len(doc) + ROW_OVERHEAD_BYTES
        conn = self._conn
        await conn.execute("BEGIN IMMEDIATE")
        await conn.executemany("INSERT INTO events(seq, kind, utc, doc) VALUES (?,?,?,?)", params)
        await conn.execute(
            "INSERT INTO meta(key, value) VALUES ('head_seq', ?) "
            "ON CONFLICT(key) DO UPDATE SET value=excluded.value",
            (seq,),
        )
        if self._unsaved_epoch is not None:
            await conn.execute(
                "INSERT INTO meta(key, value) VALUES ('epoch', ?) "
                "ON CONFLICT(key) DO UPDATE SET value=excluded.value",
                (self._unsaved_epoch,),
            )
        await conn.execute("COMMIT")
        self._unsaved_epoch = None
        if self.head_seq == self.acked_seq:
            self._oldest_unacked_utc = params[0][2]
        self.head_seq = seq
        self.disk_bytes += added
        return rows

    # -- renumbering on central's word -----------------------------------------------------

    def request_rebase(self, rebase: Rebase) -> None:
        """Central refuses this epoch's numbering above ``held_through`` (a replaced or
        restored journal); the writer renumbers with its next turn."""
        if rebase.epoch == self.epoch:
            self._rebase = rebase
            self._wake.set()

    async def _apply_rebase(self) -> None:
        rebase, self._rebase = self._rebase, None
        if rebase is None or rebase.epoch != self.epoch:
            return  # already done: this epoch is over
        base = max(self.acked_seq, rebase.held_through)
        if rebase.start <= base:
            log.error(
                "journal: ignoring a rebase to %d at or below the acknowledged %d",
                rebase.start,
                base,
            )
            return
        async with self._conn.execute(
            "SELECT min(seq), max(seq) FROM events WHERE seq > ?", (base,)
        ) as cur:
            row = await cur.fetchone()
        first, last = row if row is not None else (None, None)
        shift = rebase.start - first if first is not None else 0
        head = last + shift if last is not None else rebase.start - 1
        value = _new_epoch()
        epoch = _epoch_text(value)
        conn = self._conn
        await conn.execute("BEGIN IMMEDIATE")
        try:
            if first is not None:  # through negatives: the primary key never collides midway
                await conn.execute(
                    "UPDATE events SET seq = -(seq + ?) WHERE seq > ?", (shift, base)
                )
                await conn.execute(
                    "UPDATE events SET seq = -seq, doc = json_set(doc, '$.seq', -seq) WHERE seq < 0"
                )
            await conn.executemany(
                "INSERT INTO meta(key, value) VALUES (?, ?) "
                "ON CONFLICT(key) DO UPDATE SET value=excluded.value",
                [("head_seq", head), ("acked_seq", rebase.start - 1), ("epoch", value)],
            )
            await conn.execute("COMMIT")
        except sqlite3.Error as exc:
            with contextlib.suppress(sqlite3.Error):
                await conn.execute("ROLLBACK")
            log.error("journal: could not renumber for central: %s; it will ask again", exc)
            return
        log.critical(
            "journal: central holds this gateway's seqs through %d from another journal "
            "(this one was replaced, reset or restored): %d unacknowledged events renumbered "
            "to start at %d; epoch %s ends, %s begins",
            rebase.start - 1,
            0 if first is None else last - first + 1,
            rebase.start,
            self.epoch,
            epoch,
        )
        self.epoch, self._unsaved_epoch = epoch, None
        self.rebases += 1
        self.head_seq = head
        self.acked_seq = self._ack_target = rebase.start - 1
        self._tail.clear()
        async with self._reader_conn.execute("SELECT min(seq) FROM events") as cur:
            lowest = await cur.fetchone()
        self.oldest_seq = lowest[0] if lowest and lowest[0] is not None else head + 1
        await self._refresh_oldest_unacked()
        if first is not None:
            for listener in self.rebase_listeners:
                listener(first, shift)

    @property
    def _reader_conn(self) -> aiosqlite.Connection:
        if self._reader is None:
            raise JournalClosed("journal is not open")
        return self._reader

    # -- acknowledgement and trimming ------------------------------------------------------

    @property
    def acknowledged(self) -> int:
        """Highest seq central acknowledged (possibly not yet persisted here)."""
        return max(self.acked_seq, self._ack_target)

    def mark_acked(self, seq: int) -> None:
        """Central committed everything ≤ seq; the writer persists it with its next turn."""
        if seq <= self._ack_target:
            return
        self._ack_target = seq
        self._wake.set()

    async def _persist_ack(self) -> None:
        seq = self._ack_target
        if seq <= self.acked_seq:
            return
        meta = {"acked_seq": seq}
        if seq > self.head_seq:
            log.critical(
                "journal: central acknowledges seq %d but the journal ends at %d; the journal "
                "was reset or replaced. Raising the floor so new events cannot reuse those "
                "numbers.",
                seq,
                self.head_seq,
            )
            meta["head_seq"] = seq
        try:
            await self._conn.executemany(
                "INSERT INTO meta(key, value) VALUES (?, ?) "
                "ON CONFLICT(key) DO UPDATE SET value=excluded.value",
                list(meta.items()),
            )
        except sqlite3.Error as exc:  # the ack arrives again; trimming just waits
            log.warning("journal: could not record ack %d: %s", seq, exc)
            return
        if seq > self.head_seq:
            # the cache must stay one run of consecutive seqs: the next event is seq + 1, and
            # everything cached is now acknowledged anyway
            self._tail.clear()
        self.head_seq = max(self.head_seq, seq)
        self.acked_seq = seq
        await self._refresh_oldest_unacked()

    async def _refresh_oldest_unacked(self) -> None:
        if self.acked_seq >= self.head_seq or self._reader is None:
            self._oldest_unacked_utc = None
            return
        async with self._reader.execute(
            "SELECT utc FROM events WHERE seq > ? ORDER BY seq LIMIT 1", (self.acked_seq,)
        ) as cur:
            row = await cur.fetchone()
        self._oldest_unacked_utc = row[0] if row else None

    async def _trim(self, target_bytes: int, *, allow_unacked: bool) -> None:
        """Delete oldest rows until the journal is under target_bytes."""
        conn = self._conn
        excess = self.disk_bytes - target_bytes
        if excess <= 0:
            return
        cut, freed = await self._cut_point(excess, upto=self.acked_seq)
        lost: tuple[int, int] | None = None
        if freed < excess and allow_unacked:
            cut_unacked, more = await self._cut_point(excess - freed, upto=self.head_seq)
            if cut_unacked > max(cut, self.acked_seq):
                lost = (max(self.oldest_seq, self.acked_seq + 1), cut_unacked)
                cut, freed = cut_unacked, freed + more
        if cut < self.oldest_seq:
            return
        await conn.execute("BEGIN IMMEDIATE")
        await conn.execute("DELETE FROM events WHERE seq <= ?", (cut,))
        if lost is not None:
            count = lost[1] - lost[0] + 1
            self.dropped_unacked += count
            await conn.execute(
                "INSERT INTO meta(key, value) VALUES ('dropped_unacked', ?) "
                "ON CONFLICT(key) DO UPDATE SET value=excluded.value",
                (self.dropped_unacked,),
            )
        await conn.execute("COMMIT")
        self.oldest_seq = cut + 1
        self.disk_bytes = max(0, self.disk_bytes - freed)
        self._tail = deque((r for r in self._tail if r[0] > cut), maxlen=TAIL_CACHE_EVENTS)
        if lost is not None:
            log.critical(
                "JOURNAL OVERFLOW: discarded %d UNACKNOWLEDGED events (seq %d–%d) to stay under "
                "%d bytes; the uplink has been down too long or the limit is too small. "
                "Total discarded: %d.",
                lost[1] - lost[0] + 1,
                lost[0],
                lost[1],
                self.limit_bytes,
                self.dropped_unacked,
            )
            self._enqueue(
                "gateway.journal_loss",
                JournalLoss(
                    first_seq=lost[0],
                    last_seq=lost[1],
                    reason=f"journal over its {self.limit_bytes}-byte limit",
                ),
                None,
            )
            await self._refresh_oldest_unacked()

    async def _cut_point(self, need: int, *, upto: int) -> tuple[int, int]:
        """The highest seq ≤ upto such that deleting everything up to it frees ≥ need bytes."""
        assert self._reader is not None
        freed, cut = 0, self.oldest_seq - 1
        async with self._reader.execute(
            "SELECT seq, length(doc) FROM events WHERE seq <= ? ORDER BY seq", (upto,)
        ) as cur:
            async for seq, size in cur:
                freed += size + ROW_OVERHEAD_BYTES
                cut = seq
                if freed >= need:
                    break
        return cut, freed

    # -- reading ---------------------------------------------------------------------------

    async def wait_beyond(self, seq: int, timeout: float) -> bool:
        """Wait until the journal holds something after seq (or timeout)."""
        if self.head_seq > seq:
            return True
        async with self._committed:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    self._committed.wait_for(lambda: self.head_seq > seq), timeout
                )
        return self.head_seq > seq

    async def read_from(
        self, seq: int, *, max_events: int, max_bytes: int
    ) -> list[tuple[int, str]]:
        """Consecutive events from seq on (or from the oldest kept, if seq was trimmed)."""
        start = max(seq, self.oldest_seq)
        rows = self._from_tail(start, max_events, max_bytes)
        if rows is None:
            assert self._reader is not None
            async with self._reader.execute(
                "SELECT seq, doc FROM events WHERE seq >= ? ORDER BY seq LIMIT ?",
                (start, max_events),
            ) as cur:
                fetched = [(int(s), str(d)) for s, d in await cur.fetchall()]
            rows = list(_within(fetched, max_bytes))
        return rows

    def _from_tail(
        self, start: int, max_events: int, max_bytes: int
    ) -> list[tuple[int, str]] | None:
        if not self._tail or start < self._tail[0][0] or start > self._tail[-1][0]:
            return None
        offset = start - self._tail[0][0]
        if offset >= len(self._tail) or self._tail[offset][0] != start:
            return None  # not one consecutive run (trim races); the disk has the truth
        picked = (self._tail[i] for i in range(offset, min(len(self._tail), offset + max_events)))
        return list(_within(picked, max_bytes))

    def state(self) -> JournalState:
        oldest = (
            datetime.fromisoformat(self._oldest_unacked_utc.replace("Z", "+00:00"))
            if self._oldest_unacked_utc
            else None
        )
        return JournalState(
            head_seq=self.head_seq,
            acked_seq=self.acked_seq,
            backlog=self.head_seq - self.acked_seq,
            oldest_unacked_utc=oldest,
            disk_bytes=self.disk_bytes,
            limit_bytes=self.limit_bytes,
            dropped_unacked=self.dropped_unacked,
        )

    async def recent(self, kind: str, since_utc: str, limit: int = 10_000) -> list[dict[str, Any]]:
        """Recent events of one kind (for rebuilding de-duplication state after a restart)."""
        assert self._reader is not None
        async with self._reader.execute(
            "SELECT doc FROM events WHERE kind = ? AND utc >= ? ORDER BY seq DESC LIMIT ?",
            (kind, since_utc, limit),
        ) as cur:
            return [json.loads(doc) for (doc,) in await cur.fetchall()]


def _new_epoch() -> int:
    return secrets.randbits(63)


def _epoch_text(value: int) -> str:
    return f"{value:016x}"


def _within(rows: Iterable[tuple[int, str]], max_bytes: int) -> Iterable[tuple[int, str]]:
    """Rows while their total size fits max_bytes (always at least one)."""
    total = 0
    expected: int | None = None
    for seq, doc in rows:
        if expected is not None and seq != expected:
            return
        total += len(doc) + 1
        if expected is not None and total > max_bytes:
            return
        expected = seq + 1
        yield seq, doc
