"""The ledger (台账防篡改): evaluation and case records, hash-chained per hall per business day.

What is chained, each as one entry:
  evaluation     a row of ``events`` of kind ``evaluator.key``, keyed (gateway, seq)
  case_revision  a row of ``case_revisions``, keyed (case number, revision)
  case           the ``cases`` row and its ``case_suspensions`` as they stood at a revision

Each entry holds the SHA-256 of the record's canonical encoding (``row_hash``) and
``chain_hash = SHA-256(previous chain hash ‖ row_hash)``; a chain starts from a genesis hash of
its hall and day, so an entry cannot be moved to another chain unnoticed. The day is the
business day (Asia/Shanghai) on which central entered the record in the ledger — seconds after
it was stored — so a day's chain is closed for good once that day is over and its head can be
published or signed elsewhere (``ledger head --day``).

The job runs after commit, on what the database returns, never on what the writer had in memory
(PostgreSQL's JSONB re-orders and normalises documents; hashing what is read back is what makes
a later read verify). It only takes rows a row insert cannot smuggle in:
  events       per gateway, seq up to the gateway's ``committed_through`` (watermark in
               ``ledger_progress``); an ``evaluator.key`` row at or below the watermark with no
               entry was put there behind ingest's back, and so is one beyond the committed
               sequence outside a range that arrived early (``pending_ranges``);
  case records by ``received_at`` (watermark, with CASE_SETTLE of slack for transactions that
               commit late); an older revision with no entry, or a case with no revision at all,
               was put there behind the case store's back.

An ``evaluator.key`` row beyond the committed sequence inside a range that arrived early is not
chained yet; it must still be explained by what the gateway itself said: it may not lie beyond
the journal head the gateway reported, by its own clock, after the event's time
(``gateways.state``), and within one boot its monotonic time may not come before the last
event the gateway committed. A row put there behind ingest's back, with a made-up pending
range beside it, fails one or the other once the gateway has spoken since.

What the chain cannot see: whoever can rewrite the table and every later entry can recompute
the chain. The heads make that visible: the job seals every chain's head every few minutes
(``ledger_seals``, and a line in a file outside the database, ``seal_once``), so a rewrite of
today's chain is caught too, not only one of a day whose head was published
(``verify-ledger --heads``).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import json
import logging
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

from sqlalchemy import and_, exists, func, insert, select, text, tuple_, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from central.rules.workdays import business_date, day_start
from central.store.db import insert_ignore
from central.store.schema import (
    case_revisions,
    case_suspensions,
    cases,
    events,
    gateways,
    pending_ranges,
)
from central.store.schema_tsledger import ledger_entries, ledger_progress, ledger_seals

log = logging.getLogger(__name__)

EVALUATION_KIND = "evaluator.key"
LOCK_KEY = 0x6877_6C67  # "hwlg": one ledger writer at a time on PostgreSQL
CASE_SETTLE = dt.timedelta(minutes=5)
STATE_SLACK = dt.timedelta(seconds=2)  # a state built in the same instant may not see it yet
BATCH = 5000  # records per source per pass
_CHUNK = 500  # keys per IN (…) query

# The columns each record is hashed over. Fixed here, so that a column another module adds to a
# table later does not change every hash; a column added to a record must come with a new
# encoding version.
EVENT_COLUMNS = (
    "gateway_id",
    "seq",
    "hall_id",
    "kind",
    "utc",
    "mono_ns",
    "boot",
    "synced",
    "body",
    "received_at",
)
REVISION_COLUMNS = ("case_no", "revision", "doc", "received_at")
CASE_COLUMNS = (
    "case_no",
    "revision",
    "item_code",
    "item_name",
    "department",
    "hall_id",
    "window",
    "staff",
    "accepted_at",
    "legal_days",
    "promised_days",
    "completed_at",
    "status",
    "applicant_masked",
    "applicant_digest",
    "received_at",
    "source",
)
SUSPENSION_COLUMNS = ("started_at", "ended_at", "reason")


class Record(StrEnum):
    EVALUATION = "evaluation"
    CASE_REVISION = "case_revision"
    CASE = "case"


class Problem(StrEnum):
    CHANGED = "changed"  # the row differs from what was chained
    DELETED = "deleted"  # the chained row is gone
    NOT_IN_LEDGER = "not_in_ledger"  # a row the application never stored that way
    CHAIN_BROKEN = "chain_broken"  # a ledger entry itself was altered, removed or inserted
    HEAD_MISMATCH = "head_mismatch"  # a published head no longer matches

    @property
    def label(self) -> str:
        return _LABELS[self]


_LABELS = {
    Problem.CHANGED: "已被修改 changed",
    Problem.DELETED: "已被删除 deleted",
    Problem.NOT_IN_LEDGER: "账外记录 not in ledger",
    Problem.CHAIN_BROKEN: "哈希链断裂 chain broken",
    Problem.HEAD_MISMATCH: "链头不符 head mismatch",
}


# -- encoding and hashing ----------------------------------------------------------------------


def _plain(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            raise ValueError("naive datetime in a ledger record")
        return value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.hex()
    return value


def canonical(
    record: Record,
    row: Mapping[Any, Any],
    columns: Sequence[str],
    extra: Mapping[Any, Any] | None = None,
) -> bytes:
    """Sorted-key compact JSON of the record's columns (UTF-8, datetimes as UTC text)."""
    doc: dict[str, Any] = {
        "record": record.value,
        "v": 1,
        "row": {c: _plain(row[c]) for c in columns},
    }
    if extra:
        doc.update(extra)
    return json.dumps(
        doc,
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
        allow_nan=False,
        default=_plain,
    ).encode()


def row_hash(
    record: Record, row: Mapping[Any, Any], suspensions: Iterable[Mapping[Any, Any]] = ()
) -> str:
    if record is Record.EVALUATION:
        data = canonical(record, row, EVENT_COLUMNS)
    elif record is Record.CASE_REVISION:
        data = canonical(record, row, REVISION_COLUMNS)
    else:
        spans = sorted(
            ({c: _plain(s[c]) for c in SUSPENSION_COLUMNS} for s in suspensions),
            key=lambda s: str(s["started_at"]),
        )
        data = canonical(record, row, CASE_COLUMNS, {"suspensions": spans})
    return hashlib.sha256(data).hexdigest()


def genesis(hall: str, day: dt.date) -> str:
    return hashlib.sha256(f"hallwatch-ledger-v1\n{hall}\n{day.isoformat()}".encode()).hexdigest()


def chain_next(previous: str, row: str) -> str:
    return hashlib.sha256(bytes.fromhex(previous) + bytes.fromhex(row)).hexdigest()


# -- appending ---------------------------------------------------------------------------------


@dataclass(slots=True)
class _Chain:
    position: int
    head: str


class _Appender:
    def __init__(self, conn: AsyncConnection, day: dt.date, now: dt.datetime) -> None:
        self.conn, self.day, self.now = conn, day, now
        self.chains: dict[str, _Chain] = {}
        self.rows: list[dict[str, Any]] = []

    async def add(self, hall: str, record: Record, ref: str, ref_no: int, digest: str) -> None:
        chain = self.chains.get(hall)
        if chain is None:
            last = (
                await self.conn.execute(
                    select(ledger_entries.c.position, ledger_entries.c.chain_hash)
                    .where(ledger_entries.c.hall_id == hall, ledger_entries.c.day == self.day)
                    .order_by(ledger_entries.c.position.desc())
                    .limit(1)
                )
            ).first()
            chain = (
                _Chain(last.position, last.chain_hash)
                if last is not None
                else _Chain(0, genesis(hall, self.day))
            )
            self.chains[hall] = chain
        chain.position += 1
        chain.head = chain_next(chain.head, digest)
        self.rows.append(
            {
                "hall_id": hall,
                "day": self.day,
                "position": chain.position,
                "record": record.value,
                "ref": ref,
                "ref_no": ref_no,
                "row_hash": digest,
                "chain_hash": chain.head,
                "entered_at": self.now,
            }
        )

    async def flush(self) -> int:
        for start in range(0, len(self.rows), _CHUNK):
            await self.conn.execute(insert(ledger_entries), self.rows[start : start + _CHUNK])
        return len(self.rows)


async def append_once(
    engine: AsyncEngine, now: dt.datetime | None = None, batch: int = BATCH
) -> int:
    """Chain what was stored since the last pass; returns the number of entries added."""
    now = now or dt.datetime.now(dt.UTC)
    async with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            if not (
                await conn.execute(text("SELECT pg_try_advisory_xact_lock(:k)"), {"k": LOCK_KEY})
            ).scalar():
                return 0  # another aggregator process is appending
        else:
            # take SQLite's write lock before reading the chain heads: a read snapshot that
            # later writes fails once another connection has committed in between
            await conn.execute(
                update(ledger_progress)
                .where(text("1 = 0"))
                .values(through_seq=ledger_progress.c.through_seq)
            )
        appender = _Appender(conn, business_date(now), now)
        await _append_evaluations(conn, appender, batch)
        await _append_cases(conn, appender, batch)
        return await appender.flush()


async def _append_evaluations(conn: AsyncConnection, appender: _Appender, batch: int) -> None:
    progress = ledger_progress
    todo = (
        await conn.execute(
            select(gateways.c.gateway_id, gateways.c.committed_through, progress.c.through_seq)
            .outerjoin(
                progress,
                and_(progress.c.source == "events", progress.c.ref == gateways.c.gateway_id),
            )
            .order_by(gateways.c.gateway_id)
        )
    ).all()
    for gw in todo:
        through = gw.through_seq or 0
        if gw.committed_through <= through:
            continue
        rows = (
            (
                await conn.execute(
                    select(events)
                    .where(
                        events.c.gateway_id == gw.gateway_id,
                        events.c.seq > through,
                        events.c.seq <= gw.committed_through,
                        events.c.kind == EVALUATION_KIND,
                    )
                    .order_by(events.c.seq)
                    .limit(batch)
                )
            )
            .mappings()
            .all()
        )
        for row in rows:
            await appender.add(
                row["hall_id"],
                Record.EVALUATION,
                row["gateway_id"],
                row["seq"],
                row_hash(Record.EVALUATION, row),
            )
        new_through = rows[-1]["seq"] if len(rows) == batch else gw.committed_through
        await _set_progress(conn, "events", gw.gateway_id, through_seq=new_through)


async def _append_cases(conn: AsyncConnection, appender: _Appender, batch: int) -> None:
    mark = (
        await conn.execute(
            select(ledger_progress.c.through_at).where(
                ledger_progress.c.source == "case_revisions", ledger_progress.c.ref == ""
            )
        )
    ).scalar()
    chained = exists().where(
        ledger_entries.c.record == Record.CASE_REVISION.value,
        ledger_entries.c.ref == case_revisions.c.case_no,
        ledger_entries.c.ref_no == case_revisions.c.revision,
    )
    query = (
        select(case_revisions)
        .where(~chained)
        .order_by(case_revisions.c.received_at, case_revisions.c.case_no, case_revisions.c.revision)
        .limit(batch)
    )
    if mark is not None:
        query = query.where(case_revisions.c.received_at > mark - CASE_SETTLE)
    revisions = (await conn.execute(query)).mappings().all()
    if not revisions:
        return
    numbers = sorted({r["case_no"] for r in revisions})
    current = await _cases_with_suspensions(conn, numbers)
    for rev in revisions:
        case = current.get(rev["case_no"])
        hall = _revision_hall(rev, case[0] if case else None)
        await appender.add(
            hall,
            Record.CASE_REVISION,
            rev["case_no"],
            rev["revision"],
            row_hash(Record.CASE_REVISION, rev),
        )
        if case is not None and case[0]["revision"] == rev["revision"]:
            await appender.add(
                case[0]["hall_id"],
                Record.CASE,
                rev["case_no"],
                rev["revision"],
                row_hash(Record.CASE, case[0], case[1]),
            )
    newest = max(r["received_at"] for r in revisions)
    if mark is None or newest > mark:
        await _set_progress(conn, "case_revisions", "", through_at=newest)


def _revision_hall(rev: Mapping[Any, Any], case: Mapping[Any, Any] | None) -> str:
    doc = rev["doc"] if isinstance(rev["doc"], dict) else {}
    return str(doc.get("hall") or (case["hall_id"] if case else "") or "-")[:64]


async def _cases_with_suspensions(
    conn: AsyncConnection, numbers: Sequence[str]
) -> dict[str, tuple[Mapping[Any, Any], list[Mapping[Any, Any]]]]:
    out: dict[str, tuple[Mapping[Any, Any], list[Mapping[Any, Any]]]] = {}
    for start in range(0, len(numbers), _CHUNK):
        chunk = numbers[start : start + _CHUNK]
        for row in (await conn.execute(select(cases).where(cases.c.case_no.in_(chunk)))).mappings():
            out[row["case_no"]] = (row, [])
        for row in (
            await conn.execute(
                select(case_suspensions).where(case_suspensions.c.case_no.in_(chunk))
            )
        ).mappings():
            if row["case_no"] in out:
                out[row["case_no"]][1].append(row)
    return out


async def _set_progress(conn: AsyncConnection, source: str, ref: str, **values: Any) -> None:
    await conn.execute(
        insert_ignore(conn, ledger_progress),
        [{"source": source, "ref": ref, "through_seq": 0, "through_at": None}],
    )
    await conn.execute(
        update(ledger_progress)
        .where(ledger_progress.c.source == source, ledger_progress.c.ref == ref)
        .values(**values)
    )


async def run_forever(
    engine: AsyncEngine,
    interval_s: float = 2.0,
    *,
    seal_every_s: float = 300.0,
    seal_file: Path | None = None,
) -> None:
    """The aggregator's background job: chain new records every few seconds, seal the chains'
    heads every ``seal_every_s``."""
    loop = asyncio.get_running_loop()
    next_seal = loop.time() + seal_every_s
    while True:
        try:
            added = await append_once(engine)
            if loop.time() >= next_seal:
                await seal_once(engine, mirror=seal_file)
                next_seal = loop.time() + seal_every_s
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("ledger: a pass failed; trying again")
            added = 0
        await asyncio.sleep(0 if added >= BATCH else interval_s)


# -- seals ---------------------------------------------------------------------------------


async def seal_once(
    engine: AsyncEngine, now: dt.datetime | None = None, mirror: Path | None = None
) -> list[Head]:
    """Seal the head of every chain of today and yesterday that grew since its last seal: a
    row in ``ledger_seals`` and, when ``mirror`` is given, a line appended to that file (the
    format of ``ledger head``, which ``verify-ledger --heads`` reads). Earlier days' chains
    cannot grow any more; their last seal is final."""
    now = now or dt.datetime.now(dt.UTC)
    since = business_date(now) - dt.timedelta(days=1)
    e, s = ledger_entries, ledger_seals
    async with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            if not (
                await conn.execute(text("SELECT pg_try_advisory_xact_lock(:k)"), {"k": LOCK_KEY})
            ).scalar():
                return []  # another aggregator process is at the ledger
        else:  # SQLite's write lock first, as in append_once
            await conn.execute(
                update(ledger_seals).where(text("1 = 0")).values(entries=ledger_seals.c.entries)
            )
        lengths = (
            select(e.c.hall_id, e.c.day, func.max(e.c.position).label("n"))
            .where(e.c.day >= since)
            .group_by(e.c.hall_id, e.c.day)
            .subquery()
        )
        sealed = (
            select(s.c.hall_id, s.c.day, func.max(s.c.entries).label("n"))
            .where(s.c.day >= since)
            .group_by(s.c.hall_id, s.c.day)
            .subquery()
        )
        rows = (
            await conn.execute(
                select(e.c.hall_id, e.c.day, e.c.position, e.c.chain_hash)
                .join(
                    lengths,
                    and_(
                        lengths.c.hall_id == e.c.hall_id,
                        lengths.c.day == e.c.day,
                        lengths.c.n == e.c.position,
                    ),
                )
                .outerjoin(sealed, and_(sealed.c.hall_id == e.c.hall_id, sealed.c.day == e.c.day))
                .where(func.coalesce(sealed.c.n, 0) < e.c.position)
                .order_by(e.c.day, e.c.hall_id)
            )
        ).all()
        new = [Head(r.hall_id, r.day, r.position, r.chain_hash) for r in rows]
        if new:
            await conn.execute(
                insert(s),
                [
                    {
                        "hall_id": h.hall,
                        "day": h.day,
                        "entries": h.entries,
                        "head": h.head,
                        "sealed_at": now,
                    }
                    for h in new
                ],
            )
    if new and mirror is not None:
        _append_lines(
            mirror,
            [
                json.dumps({**h.as_json(), "sealed_at": now.isoformat()}, ensure_ascii=False)
                for h in new
            ],
        )
    return new


def _append_lines(path: Path, lines: Sequence[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    with os.fdopen(fd, "a", encoding="utf-8") as out:
        out.write("".join(f"{line}\n" for line in lines))
        out.flush()
        os.fsync(out.fileno())


async def sealed_heads(
    conn: AsyncConnection, hall: str | None = None, day: dt.date | None = None
) -> list[Head]:
    query = select(ledger_seals).order_by(
        ledger_seals.c.day, ledger_seals.c.hall_id, ledger_seals.c.entries
    )
    if hall is not None:
        query = query.where(ledger_seals.c.hall_id == hall)
    if day is not None:
        query = query.where(ledger_seals.c.day == day)
    return [Head(r.hall_id, r.day, r.entries, r.head) for r in await conn.execute(query)]


# -- verification ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Finding:
    problem: Problem
    record: Record | None
    ref: str
    ref_no: int | None
    hall: str
    day: dt.date | None
    position: int | None
    detail: str

    @property
    def key(self) -> str:
        if self.record is None:
            return self.ref
        return f"{self.record.value} {self.ref}#{self.ref_no}"

    def line(self) -> str:
        where = f"hall {self.hall}"
        if self.day is not None:
            where += f" day {self.day.isoformat()}"
        if self.position is not None:
            where += f" entry {self.position}"
        return f"{self.problem.label}: {self.key} ({where}) — {self.detail}"


@dataclass(slots=True)
class Report:
    findings: list[Finding]
    chains: int = 0
    entries: int = 0
    pending: int = 0  # stored, not yet chained (the job runs every few seconds)

    @property
    def ok(self) -> bool:
        return not self.findings


@dataclass(frozen=True, slots=True)
class Head:
    hall: str
    day: dt.date
    entries: int
    head: str

    def as_json(self) -> dict[str, Any]:
        return {
            "hall": self.hall,
            "day": self.day.isoformat(),
            "entries": self.entries,
            "head": self.head,
        }


async def verify(
    engine: AsyncEngine,
    hall: str | None = None,
    day: dt.date | None = None,
    published: Sequence[Head] = (),
) -> Report:
    """Recompute every chain in scope and every chained row; find rows no chain holds."""
    report = Report([])
    async with engine.connect() as conn:
        if conn.dialect.name == "postgresql":  # one snapshot for the whole check
            await conn.execution_options(isolation_level="REPEATABLE READ")
        scope = []
        if hall is not None:
            scope.append(ledger_entries.c.hall_id == hall)
        if day is not None:
            scope.append(ledger_entries.c.day == day)
        chains = (
            await conn.execute(
                select(ledger_entries.c.hall_id, ledger_entries.c.day)
                .where(*scope)
                .group_by(ledger_entries.c.hall_id, ledger_entries.c.day)
                .order_by(ledger_entries.c.day, ledger_entries.c.hall_id)
            )
        ).all()
        for chain in chains:
            entries = (
                await conn.execute(
                    select(ledger_entries)
                    .where(
                        ledger_entries.c.hall_id == chain.hall_id, ledger_entries.c.day == chain.day
                    )
                    .order_by(ledger_entries.c.position)
                )
            ).all()
            report.chains += 1
            report.entries += len(entries)
            report.findings += _check_chain(chain.hall_id, chain.day, entries)
            report.findings += await _check_rows(conn, entries)
        report.findings += await _unchained_evaluations(conn, hall, day)
        early, unexplained = await _early_evaluations(conn, hall, day)
        report.findings += unexplained
        unchained_cases, pending = await _unchained_cases(conn, hall, day)
        report.findings += unchained_cases
        report.pending += pending + early
        report.pending += await _pending_evaluations(conn, hall)
        report.findings += await _check_heads(conn, published)
        report.findings += await _check_heads(conn, await sealed_heads(conn, hall, day), "sealed")
    return report


def _check_chain(hall: str, day: dt.date, entries: Sequence[Any]) -> list[Finding]:
    found = []
    previous = genesis(hall, day)
    for expected, entry in enumerate(entries, start=1):
        problem = None
        if entry.position != expected:
            problem = f"entry {expected} is missing (next is {entry.position})"
        elif chain_next(previous, entry.row_hash) != entry.chain_hash:
            problem = "entry does not follow from the one before"
        if problem:
            found.append(
                Finding(
                    Problem.CHAIN_BROKEN,
                    Record(entry.record),
                    entry.ref,
                    entry.ref_no,
                    hall,
                    day,
                    entry.position,
                    problem,
                )
            )
        previous = entry.chain_hash  # resynchronise, so that each break is reported once
    return found


async def _check_rows(conn: AsyncConnection, entries: Sequence[Any]) -> list[Finding]:
    found: list[Finding] = []
    by_record: dict[Record, list[Any]] = {}
    for entry in entries:
        by_record.setdefault(Record(entry.record), []).append(entry)

    def finding(problem: Problem, entry: Any, detail: str) -> Finding:
        return Finding(
            problem,
            Record(entry.record),
            entry.ref,
            entry.ref_no,
            entry.hall_id,
            entry.day,
            entry.position,
            detail,
        )

    for record, table, cols in (
        (Record.EVALUATION, events, (events.c.gateway_id, events.c.seq)),
        (
            Record.CASE_REVISION,
            case_revisions,
            (case_revisions.c.case_no, case_revisions.c.revision),
        ),
    ):
        todo = by_record.get(record, [])
        for start in range(0, len(todo), _CHUNK):
            chunk = todo[start : start + _CHUNK]
            rows = {
                (r[cols[0].name], r[cols[1].name]): r
                for r in (
                    await conn.execute(
                        select(table).where(tuple_(*cols).in_([(e.ref, e.ref_no) for e in chunk]))
                    )
                ).mappings()
            }
            for entry in chunk:
                row = rows.get((entry.ref, entry.ref_no))
                if row is None:
                    found.append(finding(Problem.DELETED, entry, "the row is gone"))
                elif row_hash(record, row) != entry.row_hash:
                    found.append(
                        finding(Problem.CHANGED, entry, "the row differs from what was chained")
                    )

    todo = by_record.get(Record.CASE, [])
    for start in range(0, len(todo), _CHUNK):
        chunk = todo[start : start + _CHUNK]
        numbers = sorted({e.ref for e in chunk})
        newest = dict(
            (
                await conn.execute(
                    select(ledger_entries.c.ref, func.max(ledger_entries.c.ref_no))
                    .where(
                        ledger_entries.c.record == Record.CASE.value,
                        ledger_entries.c.ref.in_(numbers),
                    )
                    .group_by(ledger_entries.c.ref)
                )
            ).all()
        )
        current = await _cases_with_suspensions(conn, numbers)
        for entry in chunk:
            if entry.ref_no != newest.get(entry.ref):
                continue  # an earlier state of the case: the row has moved on by a revision
            case = current.get(entry.ref)
            if case is None:
                found.append(finding(Problem.DELETED, entry, "the case row is gone"))
            elif case[0]["revision"] != entry.ref_no:
                if case[0]["revision"] < entry.ref_no or not await _revision_pending(
                    conn, entry.ref, case[0]["revision"]
                ):
                    found.append(
                        finding(
                            Problem.CHANGED,
                            entry,
                            f"the case row is at revision "
                            f"{case[0]['revision']}, which the ledger does not hold",
                        )
                    )
            elif row_hash(Record.CASE, case[0], case[1]) != entry.row_hash:
                found.append(
                    finding(
                        Problem.CHANGED,
                        entry,
                        "the case row or its suspensions differ from what was chained",
                    )
                )
    return found


async def _revision_pending(conn: AsyncConnection, case_no: str, revision: int) -> bool:
    """Is this revision stored recently enough that the job may simply not have run yet?"""
    row = (
        await conn.execute(
            select(case_revisions.c.received_at).where(
                case_revisions.c.case_no == case_no, case_revisions.c.revision == revision
            )
        )
    ).first()
    return row is not None and await _within_settle(conn, row.received_at)


async def _case_mark(conn: AsyncConnection) -> dt.datetime | None:
    return (
        await conn.execute(
            select(ledger_progress.c.through_at).where(
                ledger_progress.c.source == "case_revisions", ledger_progress.c.ref == ""
            )
        )
    ).scalar()


async def _within_settle(conn: AsyncConnection, received_at: dt.datetime) -> bool:
    mark = await _case_mark(conn)
    return mark is None or received_at > mark - CASE_SETTLE


def _day_bounds(day: dt.date) -> tuple[dt.datetime, dt.datetime]:
    return day_start(day), day_start(day + dt.timedelta(days=1))


def _events_in(query: Any, hall: str | None, day: dt.date | None) -> Any:
    if hall is not None:
        query = query.where(events.c.hall_id == hall)
    if day is not None:
        start, end = _day_bounds(day)
        query = query.where(events.c.received_at >= start, events.c.received_at < end)
    return query


def _chained_event() -> Any:
    """The event row in hand has its ledger entry."""
    return exists().where(
        ledger_entries.c.record == Record.EVALUATION.value,
        ledger_entries.c.ref == events.c.gateway_id,
        ledger_entries.c.ref_no == events.c.seq,
    )


def _arrived_early() -> Any:
    """The event row in hand lies in a range that arrived beyond a gap."""
    return exists().where(
        pending_ranges.c.gateway_id == events.c.gateway_id,
        pending_ranges.c.first_seq <= events.c.seq,
        pending_ranges.c.last_seq >= events.c.seq,
    )


async def _unchained_evaluations(
    conn: AsyncConnection, hall: str | None, day: dt.date | None
) -> list[Finding]:
    """evaluator.key rows no entry holds: at or below the ledger's watermark, or beyond what the
    gateway has committed and outside every range that arrived early."""
    progress = ledger_progress
    chained = _chained_event()
    early = _arrived_early()
    watermark = func.coalesce(progress.c.through_seq, 0)
    query = (
        select(
            events.c.gateway_id,
            events.c.seq,
            events.c.hall_id,
            events.c.received_at,
            watermark.label("through"),
            gateways.c.committed_through,
        )
        .select_from(
            events.join(gateways, gateways.c.gateway_id == events.c.gateway_id).outerjoin(
                progress, and_(progress.c.source == "events", progress.c.ref == events.c.gateway_id)
            )
        )
        .where(
            events.c.kind == EVALUATION_KIND,
            ~chained,
            (events.c.seq <= watermark) | ((events.c.seq > gateways.c.committed_through) & ~early),
        )
        .order_by(events.c.gateway_id, events.c.seq)
    )
    query = _events_in(query, hall, day)
    out = []
    for r in (await conn.execute(query)).all():
        why = (
            "stored below the ledger's watermark without an entry"
            if r.seq <= r.through
            else f"stored beyond the gateway's committed sequence ({r.committed_through})"
        )
        out.append(
            Finding(
                Problem.NOT_IN_LEDGER,
                Record.EVALUATION,
                r.gateway_id,
                r.seq,
                r.hall_id,
                business_date(r.received_at),
                None,
                why,
            )
        )
    return out


async def _early_evaluations(
    conn: AsyncConnection, hall: str | None, day: dt.date | None
) -> tuple[int, list[Finding]]:
    """``evaluator.key`` rows beyond the committed sequence inside a range that arrived early:
    how many the gateway's own words explain (not chained yet), and a finding for each they
    do not."""
    early = _arrived_early()
    chained = _chained_event()
    query = (
        select(
            events.c.gateway_id,
            events.c.seq,
            events.c.hall_id,
            events.c.boot,
            events.c.mono_ns,
            events.c.utc,
            events.c.synced,
            events.c.received_at,
            gateways.c.state,
        )
        .select_from(events.join(gateways, gateways.c.gateway_id == events.c.gateway_id))
        .where(
            events.c.kind == EVALUATION_KIND,
            ~chained,
            early,
            events.c.seq > gateways.c.committed_through,
        )
        .order_by(events.c.gateway_id, events.c.seq)
    )
    query = _events_in(query, hall, day)
    explained, found = 0, []
    for r in (await conn.execute(query)).all():
        why = _beyond_reported_head(r) or await _out_of_clock_order(conn, r)
        if why is None:
            explained += 1
            continue
        found.append(
            Finding(
                Problem.NOT_IN_LEDGER,
                Record.EVALUATION,
                r.gateway_id,
                r.seq,
                r.hall_id,
                business_date(r.received_at),
                None,
                f"stored ahead of the committed sequence, but {why}",
            )
        )
    return explained, found


def _beyond_reported_head(r: Any) -> str | None:
    """The gateway's last state report was made (by its own synchronised clock, in the same
    boot) after this event's time, yet its journal ended below the event's seq: the gateway
    never journaled it. The state's own clock, not its arrival: a retained state can arrive
    late."""
    state = r.state if isinstance(r.state, dict) else {}
    journal = state.get("journal")
    if not isinstance(journal, dict):
        journal = {}
    head = journal.get("head_seq")
    try:
        made = dt.datetime.fromisoformat(str(state.get("utc")))
    except ValueError:
        return None
    if (
        isinstance(head, int)
        and r.seq > head
        and state.get("boot") == r.boot
        and state.get("synced") is True
        and r.synced
        and made.tzinfo is not None
        and made > r.utc + STATE_SLACK
    ):
        return f"the gateway reported its journal ending at {head} after it"
    return None


async def _out_of_clock_order(conn: AsyncConnection, r: Any) -> str | None:
    """Within one boot the journal numbers events in the order of the gateway's monotonic
    clock: a row that the clock puts before the last event its gateway committed (the rows
    ingest stored without a gap, which the ledger trusts) was not numbered there."""
    last = (
        await conn.execute(
            select(events.c.seq, events.c.boot, events.c.mono_ns)
            .join(gateways, gateways.c.gateway_id == events.c.gateway_id)
            .where(
                events.c.gateway_id == r.gateway_id, events.c.seq <= gateways.c.committed_through
            )
            .order_by(events.c.seq.desc())
            .limit(1)
        )
    ).first()
    if last is not None and last.boot == r.boot and last.mono_ns > r.mono_ns:
        return f"its gateway clock puts it before seq {last.seq} of the same boot"
    return None


async def _pending_evaluations(conn: AsyncConnection, hall: str | None) -> int:
    progress = ledger_progress
    query = (
        select(func.count())
        .select_from(
            events.join(gateways, gateways.c.gateway_id == events.c.gateway_id).outerjoin(
                progress, and_(progress.c.source == "events", progress.c.ref == events.c.gateway_id)
            )
        )
        .where(
            events.c.kind == EVALUATION_KIND,
            events.c.seq > func.coalesce(progress.c.through_seq, 0),
            events.c.seq <= gateways.c.committed_through,
        )
    )
    if hall is not None:
        query = query.where(events.c.hall_id == hall)
    return int((await conn.execute(query)).scalar() or 0)


async def _unchained_cases(
    conn: AsyncConnection, hall: str | None, day: dt.date | None
) -> tuple[list[Finding], int]:
    mark = await _case_mark(conn)
    chained = exists().where(
        ledger_entries.c.record == Record.CASE_REVISION.value,
        ledger_entries.c.ref == case_revisions.c.case_no,
        ledger_entries.c.ref_no == case_revisions.c.revision,
    )
    query = (
        select(case_revisions, cases.c.hall_id)
        .select_from(case_revisions.outerjoin(cases, cases.c.case_no == case_revisions.c.case_no))
        .where(~chained)
    )
    if day is not None:
        start, end = _day_bounds(day)
        query = query.where(
            case_revisions.c.received_at >= start, case_revisions.c.received_at < end
        )
    found, pending = [], 0
    for r in (
        await conn.execute(query.order_by(case_revisions.c.case_no, case_revisions.c.revision))
    ).mappings():
        row_hall = _revision_hall(r, {"hall_id": r["hall_id"]} if r["hall_id"] else None)
        if hall is not None and row_hall != hall:
            continue
        if mark is None or r["received_at"] > mark - CASE_SETTLE:
            pending += 1
            continue
        found.append(
            Finding(
                Problem.NOT_IN_LEDGER,
                Record.CASE_REVISION,
                r["case_no"],
                r["revision"],
                row_hall,
                business_date(r["received_at"]),
                None,
                "a revision older than the ledger's watermark without an entry",
            )
        )
    # a case the case store wrote always has its revision beside it
    orphan = (
        select(cases.c.case_no, cases.c.revision, cases.c.hall_id, cases.c.received_at)
        .where(
            ~exists().where(
                case_revisions.c.case_no == cases.c.case_no,
                case_revisions.c.revision == cases.c.revision,
            ),
            ~exists().where(
                ledger_entries.c.record == Record.CASE.value,
                ledger_entries.c.ref == cases.c.case_no,
            ),
        )
        .order_by(cases.c.case_no)
    )
    if hall is not None:
        orphan = orphan.where(cases.c.hall_id == hall)
    for case in (await conn.execute(orphan)).all():
        if day is not None and business_date(case.received_at) != day:
            continue
        found.append(
            Finding(
                Problem.NOT_IN_LEDGER,
                Record.CASE,
                case.case_no,
                case.revision,
                case.hall_id,
                business_date(case.received_at),
                None,
                "a case row without its revision record",
            )
        )
    return found, pending


async def _check_heads(
    conn: AsyncConnection, published: Sequence[Head], what: str = "published"
) -> list[Finding]:
    found, seen = [], set()
    for head in published:
        if head in seen:  # the same head from the table and from a file
            continue
        seen.add(head)
        row = (
            await conn.execute(
                select(ledger_entries.c.chain_hash).where(
                    ledger_entries.c.hall_id == head.hall,
                    ledger_entries.c.day == head.day,
                    ledger_entries.c.position == head.entries,
                )
            )
        ).first()
        if row is None:
            detail = f"the chain no longer has the {head.entries} entries {what}"
        elif row.chain_hash != head.head:
            detail = f"entry {head.entries} no longer ends in the {what} head"
        else:
            continue
        found.append(
            Finding(
                Problem.HEAD_MISMATCH,
                None,
                f"chain {head.hall}/{head.day}",
                None,
                head.hall,
                head.day,
                head.entries,
                detail,
            )
        )
    return found


async def heads(engine: AsyncEngine, day: dt.date, hall: str | None = None) -> list[Head]:
    """Each hall's chain head for a business day (final once the day is over)."""
    last = (
        select(ledger_entries.c.hall_id, func.max(ledger_entries.c.position).label("n"))
        .where(ledger_entries.c.day == day)
        .group_by(ledger_entries.c.hall_id)
    )
    if hall is not None:
        last = last.where(ledger_entries.c.hall_id == hall)
    sub = last.subquery()
    query = (
        select(ledger_entries.c.hall_id, ledger_entries.c.position, ledger_entries.c.chain_hash)
        .join(
            sub,
            and_(sub.c.hall_id == ledger_entries.c.hall_id, sub.c.n == ledger_entries.c.position),
        )
        .where(ledger_entries.c.day == day)
        .order_by(ledger_entries.c.hall_id)
    )
    async with engine.connect() as conn:
        rows = (await conn.execute(query)).all()
    return [Head(r.hall_id, day, r.position, r.chain_hash) for r in rows]


def parse_heads(lines: Iterable[str]) -> list[Head]:
    """Heads as ``ledger head`` prints them (one JSON object a line)."""
    out = []
    for line in lines:
        if line.strip():
            doc = json.loads(line)
            out.append(
                Head(
                    str(doc["hall"]),
                    dt.date.fromisoformat(doc["day"]),
                    int(doc["entries"]),
                    str(doc["head"]),
                )
            )
    return out
