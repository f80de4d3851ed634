"""CSV import of cases, as an approval system or Excel exports them.

Columns by their English key or the usual Chinese header (办件编号, 受理时间, 法定时限 …); extra
columns (序号, 备注) are ignored and listed. Suspensions go in one column as
``补正|2026-10-08 14:00|2026-10-12 10:00; 特别程序|2026-10-20 09:00|`` (reason|start|end, end
empty while suspended). Every row then passes the same validation as the API; a bad row is
reported with its line number and skipped.

Encodings: UTF-8 (with or without Excel's byte-order mark) and GB18030, Excel's "CSV" on a
Chinese Windows; ``auto`` takes UTF-8 when the file decodes as UTF-8, else GB18030.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from central.cases.masking import ApplicantMasker
from central.cases.model import case_no_of
from central.cases.store import (
    Outcome,
    RowResult,
    Source,
    upsert,
    upsert_in,
    validate_rows,
)

ENCODINGS = ("auto", "utf-8", "gb18030")
CHUNK = 1000  # rows per transaction

COLUMNS: dict[str, tuple[str, ...]] = {
    "case_no": ("办件编号", "办件号", "受理编号", "申报号"),
    "item_code": ("事项编码", "事项代码"),
    "item_name": ("事项名称",),
    "department": ("部门", "实施部门", "办理部门"),
    "hall": ("大厅", "大厅编号", "服务大厅"),
    "window": ("窗口", "窗口号"),
    "staff": ("工号", "受理人工号", "人员工号"),
    "accepted_at": ("受理时间",),
    "legal_days": ("法定时限", "法定办结时限"),
    "promised_days": ("承诺时限", "承诺办结时限"),
    "completed_at": ("办结时间",),
    "status": ("状态", "办件状态"),
    "suspensions": ("暂停记录", "暂停计时", "中止记录"),
    "applicant_name": ("申请人", "申请人姓名", "申请人名称"),
    "applicant_phone": ("联系电话", "申请人电话", "手机号"),
    "applicant_id": ("证件号码", "身份证号", "申请人证件号码"),
}
REQUIRED = (
    "case_no",
    "item_code",
    "item_name",
    "department",
    "hall",
    "accepted_at",
    "legal_days",
    "status",
)
_ALIASES = {alias: key for key, aliases in COLUMNS.items() for alias in (key, *aliases)}
_APPLICANT = {"applicant_name": "name", "applicant_phone": "phone", "applicant_id": "id_no"}
_WORKDAYS = re.compile(r"^(\d+)\s*个?工作日$")


class CsvError(ValueError):
    """A file that cannot be imported at all (encoding, header)."""


class CsvRowError(ValueError):
    """A row whose CSV form cannot even be turned into a case (e.g. the suspensions column)."""

    case_no: str | None = None


@dataclass(frozen=True, slots=True)
class CsvTable:
    encoding: str
    # (line number of the row's first line, case row or why it could not be read)
    rows: list[tuple[int, dict[str, Any] | CsvRowError]]
    ignored_columns: tuple[str, ...]


def decode(data: bytes, encoding: str = "auto") -> tuple[str, str]:
    """(text, encoding used); CsvError names the line that does not decode."""
    if encoding not in ENCODINGS:
        raise CsvError(f"未知编码 / unknown encoding {encoding!r}: one of {', '.join(ENCODINGS)}")
    tries = ("utf-8", "gb18030") if encoding == "auto" else (encoding,)
    for name in tries:
        try:
            text = data.decode("utf-8-sig" if name == "utf-8" else name)
        except UnicodeDecodeError as exc:
            if name != tries[-1]:
                continue
            line = data.count(b"\n", 0, exc.start) + 1
            hint = " (试试 --encoding gb18030)" if name == "utf-8" else ""
            raise CsvError(
                f"第 {line} 行无法按 {name} 解码{hint} / line {line} is not valid {name}"
            ) from None
        return text, name
    raise AssertionError("unreachable")


def parse(text: str, encoding: str = "utf-8") -> CsvTable:
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader)
    except StopIteration:
        raise CsvError("文件为空 / the file is empty") from None
    keys: list[str | None] = []
    ignored = []
    for name in header:
        key = _ALIASES.get(name.strip()) or _ALIASES.get(name.strip().lower())
        if key is None and name.strip():
            ignored.append(name.strip())
        keys.append(key)
    missing = [k for k in REQUIRED if k not in keys]
    if missing:
        names = ", ".join(f"{k} ({COLUMNS[k][0]})" for k in missing)
        raise CsvError(f"第 1 行缺少必需的列 / line 1 lacks required columns: {names}")
    rows: list[tuple[int, dict[str, Any] | CsvRowError]] = []
    line = reader.line_num + 1
    for record in reader:
        if any(cell.strip() for cell in record):
            flat = {k: v for k, v in zip(keys, record, strict=False) if k is not None}
            try:
                rows.append((line, to_case(flat)))
            except CsvRowError as exc:
                exc.case_no = case_no_of({"case_no": flat.get("case_no")})
                rows.append((line, exc))
        line = reader.line_num + 1
    return CsvTable(encoding, rows, tuple(ignored))


def to_case(flat: dict[str, str]) -> dict[str, Any]:
    """A flat CSV row → the API's row shape (applicant nested, suspensions parsed)."""
    row: dict[str, Any] = {}
    applicant = {}
    for key, raw in flat.items():
        value = raw.strip()
        if key in _APPLICANT:
            if value:
                applicant[_APPLICANT[key]] = value
        elif key == "suspensions":
            if value:
                row["suspensions"] = parse_suspensions(value)
        elif key in ("legal_days", "promised_days") and (m := _WORKDAYS.match(value)):
            row[key] = m.group(1)
        elif value or key in REQUIRED:
            row[key] = value
    if applicant:
        row["applicant"] = applicant
    return row


def parse_suspensions(value: str) -> list[dict[str, str | None]]:
    """``reason|start|end; …`` → suspension objects."""
    out: list[dict[str, str | None]] = []
    for entry in re.split(r"[;；]", value):
        if not entry.strip():
            continue
        parts = [p.strip() for p in entry.split("|")]
        if len(parts) not in (2, 3):
            raise CsvRowError(
                "suspensions: 格式应为 理由|开始时间|结束时间；… / expected reason|start|end; …"
            )
        out.append(
            {"reason": parts[0], "start": parts[1], "end": parts[2] if len(parts) == 3 else None}
        )
    return out


@dataclass(slots=True)
class ImportReport:
    encoding: str
    rows: int = 0
    counts: dict[str, int] = field(default_factory=lambda: {o.value: 0 for o in Outcome})
    rejected: list[RowResult] = field(default_factory=list)  # index = line number
    ignored_columns: tuple[str, ...] = ()
    dry_run: bool = False

    def add(self, results: Sequence[RowResult]) -> None:
        for r in results:
            self.counts[r.outcome.value] += 1
            if r.outcome is Outcome.REJECTED:
                self.rejected.append(r)


async def import_csv(
    engine: AsyncEngine,
    data: bytes,
    masker: ApplicantMasker,
    *,
    encoding: str = "auto",
    dry_run: bool = False,
    now: dt.datetime,
    progress: Callable[[int, int], None] | None = None,
) -> ImportReport:
    """Validate every row, store the good ones in chunks; ``progress(done, total)``.
    A dry run stores nothing but still says what would be created, revised or unchanged."""
    text, used = decode(data, encoding)
    table = parse(text, used)
    report = ImportReport(
        used, len(table.rows), ignored_columns=table.ignored_columns, dry_run=dry_run
    )
    total = len(table.rows)
    done = 0
    if progress is not None:
        progress(0, total)
    for i in range(0, total, CHUNK):
        chunk = table.rows[i : i + CHUNK]
        good, bad = _validate(chunk, masker, now)
        if dry_run:
            async with engine.connect() as conn:
                stored = await upsert_in(conn, good, Source.CSV, now) if good else []
                await conn.rollback()
        else:
            stored = await upsert(engine, good, source=Source.CSV, received_at=now)
        report.add(sorted([*stored, *bad], key=lambda r: r.index))
        done += len(chunk)
        if progress is not None:
            progress(done, total)
    return report


def _validate(
    chunk: list[tuple[int, dict[str, Any] | CsvRowError]], masker: ApplicantMasker, now: dt.datetime
) -> tuple[list[Any], list[RowResult]]:
    good, bad = [], []
    for line, row in chunk:
        if isinstance(row, CsvRowError):
            bad.append(RowResult(line, row.case_no, Outcome.REJECTED, errors=(str(row),)))
            continue
        g, b = validate_rows([row], masker, now=now, first_index=line)
        good += g
        bad += b
    return good, bad


def read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise CsvError(f"{path}: 无法读取 / cannot read: {exc.strerror}") from None
