"""What is chained and how: the columns each record is hashed over, its canonical encoding,
the row and chain hashes, and the shared reads of case records."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from enum import StrEnum
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from central.store.schema import (
    case_suspensions,
    cases,
)

EVALUATION_KIND = "evaluator.key"
LOCK_KEY = 0x6877_6C67  # "hwlg": one ledger writer at a time on PostgreSQL
CASE_SETTLE = dt.timedelta(minutes=5)
STATE_SLACK = dt.timedelta(seconds=2)  # a state built in the same instant may not see it yet
BATCH = 5000  # records per source per pass
CHUNK = 500  # keys per IN (…) query


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


def revision_hall(rev: Mapping[Any, Any], case: Mapping[Any, Any] | None) -> str:
    doc = rev["doc"] if isinstance(rev["doc"], dict) else {}
    return str(doc.get("hall") or (case["hall_id"] if case else "") or "-")[:64]


async def cases_with_suspensions(
    conn: AsyncConnection, numbers: Sequence[str]
) -> dict[str, tuple[Mapping[Any, Any], list[Mapping[Any, Any]]]]:
    out: dict[str, tuple[Mapping[Any, Any], list[Mapping[Any, Any]]]] = {}
    for start in range(0, len(numbers), CHUNK):
        chunk = numbers[start : start + CHUNK]
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
