"""Storing cases: idempotent on the case number, every change a new revision.

The same content reported again changes nothing (``unchanged``); changed content becomes the
next revision in ``case_revisions`` (append-only, the whole masked document) and the ``cases``
row and its ``case_suspensions`` are brought up to that revision. Nothing is overwritten without
a revision that shows what it was before.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from pydantic import ValidationError
from sqlalchemy import bindparam, delete, insert, select, text, update
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from central.cases.masking import ApplicantMasker
from central.cases.model import CaseIn, case_no_of, describe, is_mobile, validate_row
from central.outbox import progress
from central.rules.indicators import CaseStatus
from central.rules.timelimit import CaseClock, Suspension
from central.store.schema import case_revisions, case_suspensions, cases

log = logging.getLogger(__name__)

MAX_BATCH = 5000  # rows per API request or MQTT message
_CHUNK = 500  # case numbers per IN (…) query
_ATTEMPTS = 8  # a batch loses to another writer only while that one is uncommitted


class Outcome(StrEnum):
    CREATED = "created"
    UNCHANGED = "unchanged"
    REVISED = "revised"
    REJECTED = "rejected"


class Source(StrEnum):
    API = "api"
    CSV = "csv"
    MQTT = "mqtt"


@dataclass(frozen=True, slots=True)
class RowResult:
    index: int  # position in the batch (0-based), or the CSV line number
    case_no: str | None
    outcome: Outcome
    revision: int | None = None
    errors: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class CaseRecord:
    """A validated case in the form central keeps (applicant masked)."""

    case_no: str
    item_code: str
    item_name: str
    department: str
    hall: str
    window: int | None
    staff: str | None
    accepted_at: dt.datetime
    legal_days: int
    promised_days: int | None
    completed_at: dt.datetime | None
    status: CaseStatus
    suspensions: tuple[Suspension, ...]
    applicant_masked: str | None
    applicant_digest: str | None
    # (mobile, recipient reference) where the applicant agreed to progress SMS; never stored
    # with the case, only handed to the outbox
    sms_to: tuple[str, str] | None = None

    @classmethod
    def from_input(cls, case: CaseIn, masker: ApplicantMasker) -> CaseRecord:
        applicant = masker.mask(case.applicant)
        person = case.applicant
        phone = person.phone if person is not None and person.sms_consent else None
        sms_to = (
            (phone, "applicant:" + masker.digest("tel", phone)[:16])
            if phone is not None and is_mobile(phone)
            else None
        )
        return cls(
            case_no=case.case_no,
            item_code=case.item_code,
            item_name=case.item_name,
            department=case.department,
            hall=case.hall,
            window=case.window,
            staff=case.staff,
            accepted_at=case.accepted_at,
            legal_days=case.legal_days,
            promised_days=case.promised_days,
            completed_at=case.completed_at,
            status=case.status,
            suspensions=tuple(
                Suspension(start=s.start, end=s.end, reason=s.reason) for s in case.suspensions
            ),
            applicant_masked=applicant.masked if applicant else None,
            applicant_digest=applicant.digest if applicant else None,
            sms_to=sms_to,
        )

    def doc(self) -> dict[str, Any]:
        """The revision document: plain JSON, compared field by field to detect a change."""
        return {
            "case_no": self.case_no,
            "item_code": self.item_code,
            "item_name": self.item_name,
            "department": self.department,
            "hall": self.hall,
            "window": self.window,
            "staff": self.staff,
            "accepted_at": _iso(self.accepted_at),
            "legal_days": self.legal_days,
            "promised_days": self.promised_days,
            "completed_at": _iso(self.completed_at),
            "status": self.status.value,
            "suspensions": [
                {"start": _iso(s.start), "end": _iso(s.end), "reason": s.reason}
                for s in self.suspensions
            ],
            "applicant_masked": self.applicant_masked,
            "applicant_digest": self.applicant_digest,
        }

    def row(self) -> dict[str, Any]:
        return {
            "case_no": self.case_no,
            "item_code": self.item_code,
            "item_name": self.item_name,
            "department": self.department,
            "hall_id": self.hall,
            "window": self.window,
            "staff": self.staff,
            "accepted_at": self.accepted_at,
            "legal_days": self.legal_days,
            "promised_days": self.promised_days,
            "completed_at": self.completed_at,
            "status": self.status.value,
            "applicant_masked": self.applicant_masked,
            "applicant_digest": self.applicant_digest,
        }


def _iso(moment: dt.datetime | None) -> str | None:
    return None if moment is None else moment.astimezone(dt.UTC).isoformat()


def clock_of(row: Any, suspensions: Sequence[Any]) -> CaseClock:
    """The ladder's view of a stored case (a ``cases`` row and its suspension rows)."""
    return CaseClock(
        accepted_at=row.accepted_at,
        legal_days=row.legal_days,
        promised_days=row.promised_days,
        completed_at=row.completed_at,
        suspensions=tuple(
            Suspension(start=s.started_at, end=s.ended_at, reason=s.reason)
            for s in sorted(suspensions, key=lambda s: s.started_at)
        ),
    )


def validate_rows(
    rows: Sequence[Any],
    masker: ApplicantMasker,
    *,
    now: dt.datetime | None,
    first_index: int = 0,
) -> tuple[list[tuple[int, CaseRecord]], list[RowResult]]:
    """Validate rows; returns (index, record) for the good ones and a result for each bad one."""
    good: list[tuple[int, CaseRecord]] = []
    bad: list[RowResult] = []
    for i, row in enumerate(rows, start=first_index):
        if not isinstance(row, dict):
            bad.append(
                RowResult(
                    i,
                    None,
                    Outcome.REJECTED,
                    errors=("(row): 每行应为一个对象 / each case must be an object",),
                )
            )
            continue
        try:
            case = validate_row(row, now=now)
        except ValidationError as exc:
            bad.append(RowResult(i, case_no_of(row), Outcome.REJECTED, errors=describe(exc)))
            continue
        good.append((i, CaseRecord.from_input(case, masker)))
    return good, bad


async def feed(
    engine: AsyncEngine,
    rows: Sequence[Any],
    masker: ApplicantMasker,
    *,
    source: Source,
    now: dt.datetime,
    first_index: int = 0,
) -> list[RowResult]:
    """Validate and store a batch; one result per row, in row order."""
    # ~60 µs a row: a 5,000-row batch is validated off the event loop the ingest shares
    good, bad = await asyncio.to_thread(
        validate_rows, rows, masker, now=now, first_index=first_index
    )
    stored = await upsert(engine, good, source=source, received_at=now)
    return sorted([*stored, *bad], key=lambda r: r.index)


async def upsert(
    engine: AsyncEngine,
    records: Sequence[tuple[int, CaseRecord]],
    *,
    source: Source,
    received_at: dt.datetime,
) -> list[RowResult]:
    """Store validated records in one transaction (retried when a concurrent writer wins)."""
    if not records:
        return []
    for attempt in range(1, _ATTEMPTS + 1):
        try:
            async with engine.begin() as conn:
                return await upsert_in(conn, records, source, received_at)
        except (IntegrityError, DBAPIError) as exc:
            if attempt == _ATTEMPTS or not _retryable(exc):
                raise
            log.info("cases: concurrent writer, retrying the batch (%s)", type(exc.orig).__name__)
            await asyncio.sleep(0.05 * attempt)
    raise AssertionError("unreachable")


def _retryable(exc: DBAPIError) -> bool:
    if isinstance(exc, IntegrityError):
        return True  # someone else created the same case or revision first
    text_ = str(exc.orig).lower()
    return "locked" in text_ or "deadlock" in text_ or "could not serialize" in text_


async def upsert_in(
    conn: AsyncConnection,
    records: Sequence[tuple[int, CaseRecord]],
    source: Source,
    received_at: dt.datetime,
) -> list[RowResult]:
    """``upsert`` inside the caller's transaction (a dry run rolls it back)."""
    if conn.dialect.name == "sqlite":
        # Take the write lock first: a read snapshot that later writes fails in WAL mode when
        # another connection committed in between, and no busy timeout can fix that.
        await conn.execute(text("UPDATE cases SET revision = revision WHERE 0"))
    numbers = sorted({rec.case_no for _, rec in records})  # one lock order for every writer
    current: dict[str, tuple[int, dict[str, Any]]] = {}
    for i in range(0, len(numbers), _CHUNK):
        query = (
            select(cases.c.case_no, cases.c.revision, case_revisions.c.doc)
            .join(
                case_revisions,
                (case_revisions.c.case_no == cases.c.case_no)
                & (case_revisions.c.revision == cases.c.revision),
            )
            .where(cases.c.case_no.in_(numbers[i : i + _CHUNK]))
            .order_by(cases.c.case_no)
        )
        if conn.dialect.name == "postgresql":
            query = query.with_for_update(of=cases)
        for row in await conn.execute(query):
            current[row.case_no] = (row.revision, row.doc)
    existed = set(current)

    results: list[RowResult] = []
    revisions: list[dict[str, Any]] = []
    final: dict[str, tuple[int, CaseRecord]] = {}
    for index, rec in records:
        doc = rec.doc()
        seen = current.get(rec.case_no)
        if seen is None:
            outcome, revision = Outcome.CREATED, 1
        elif seen[1] == doc:
            results.append(RowResult(index, rec.case_no, Outcome.UNCHANGED, seen[0]))
            continue
        else:
            outcome, revision = Outcome.REVISED, seen[0] + 1
        current[rec.case_no] = (revision, doc)
        final[rec.case_no] = (revision, rec)
        revisions.append(
            {"case_no": rec.case_no, "revision": revision, "doc": doc, "received_at": received_at}
        )
        results.append(RowResult(index, rec.case_no, outcome, revision))

    created = [(rev, rec) for no, (rev, rec) in final.items() if no not in existed]
    revised = [(rev, rec) for no, (rev, rec) in final.items() if no in existed]
    if created:
        await conn.execute(
            insert(cases),
            [
                {**rec.row(), "revision": rev, "received_at": received_at, "source": source.value}
                for rev, rec in created
            ],
        )
    if revised:
        await conn.execute(
            update(cases).where(cases.c.case_no == bindparam("b_case_no")),
            [
                {
                    **rec.row(),
                    "b_case_no": rec.case_no,
                    "revision": rev,
                    "received_at": received_at,
                    "source": source.value,
                }
                for rev, rec in revised
            ],
        )
        revised_nos = [rec.case_no for _, rec in revised]
        for i in range(0, len(revised_nos), _CHUNK):
            await conn.execute(
                delete(case_suspensions).where(
                    case_suspensions.c.case_no.in_(revised_nos[i : i + _CHUNK])
                )
            )
    suspension_rows = [
        {"case_no": rec.case_no, "started_at": s.start, "ended_at": s.end, "reason": s.reason}
        for _, rec in final.values()
        for s in rec.suspensions
    ]
    if suspension_rows:
        await conn.execute(insert(case_suspensions), suspension_rows)
    if revisions:
        await conn.execute(insert(case_revisions), revisions)
    await progress.enqueue_progress(
        conn, [rec for _, rec in created], [rec for _, rec in final.values()]
    )
    return results
