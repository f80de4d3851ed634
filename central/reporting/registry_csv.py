"""Reading the registry of halls from a CSV file (UTF-8, with or without a BOM; the header in
Chinese or English). Every bad row is reported with its line number, so a file is fixed in
one pass; nothing is imported from a file with any bad row."""

from __future__ import annotations

import csv
import io

from pydantic import ValidationError

from central.reporting.registry import HallEntry, tree_errors

HEADERS: dict[str, str] = {
    "hall_id": "hall_id",
    "hall": "hall_id",
    "id": "hall_id",
    "大厅编号": "hall_id",
    "大厅代码": "hall_id",
    "编号": "hall_id",
    "name": "name",
    "名称": "name",
    "大厅名称": "name",
    "level": "level",
    "级别": "level",
    "层级": "level",
    "parent_id": "parent_id",
    "parent": "parent_id",
    "上级": "parent_id",
    "上级大厅": "parent_id",
    "上级编号": "parent_id",
    "region_code": "region_code",
    "区划代码": "region_code",
    "行政区划代码": "region_code",
    "address": "address",
    "地址": "address",
    "opening_hours": "opening_hours",
    "办公时间": "opening_hours",
}
REQUIRED = ("hall_id", "name", "level", "region_code")


class CsvRegistryError(ValueError):
    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


def parse_registry_csv(data: bytes, known: dict[str, HallEntry] | None = None) -> list[HallEntry]:
    """The file's halls; CsvRegistryError listing every bad line otherwise. ``known`` (the
    registry already stored) lets a row name a parent imported earlier."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise CsvRegistryError([f"不是 UTF-8 / not UTF-8 (byte {exc.start})"]) from None
    rows = csv.reader(io.StringIO(text, newline=""))
    header = next(rows, None)
    if header is None:
        raise CsvRegistryError(["空文件 / empty file"])
    fields: list[str | None] = [HEADERS.get(h.strip().lower()) for h in header]
    missing = [f for f in REQUIRED if f not in fields]
    unknown = [h for h, f in zip(header, fields, strict=True) if f is None and h.strip()]
    if missing or unknown:
        bad_header = [f"第 1 行 / line 1: 缺少列 / missing column {m}" for m in missing]
        bad_header += [f"第 1 行 / line 1: 未知列 / unknown column {u!r}" for u in unknown]
        raise CsvRegistryError(bad_header)
    problems: list[str] = []
    entries: dict[str, HallEntry] = {}
    lines: dict[str, int] = {}
    for row in rows:
        line = rows.line_num
        if not any(cell.strip() for cell in row):
            continue
        if len(row) != len(fields):
            problems.append(
                f"第 {line} 行 / line {line}: {len(row)} 列, 应为 {len(fields)} / "
                f"{len(row)} cells, the header has {len(fields)}"
            )
            continue
        doc = {f: cell.strip() for f, cell in zip(fields, row, strict=True) if f is not None}
        try:
            entry = HallEntry.model_validate(doc)
        except ValidationError as exc:
            why = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
            problems.append(f"第 {line} 行 / line {line}: {why}")
            continue
        if entry.hall_id in lines:
            problems.append(
                f"第 {line} 行 / line {line}: 大厅 {entry.hall_id} 重复 / hall {entry.hall_id!r} "
                f"already on line {lines[entry.hall_id]}"
            )
            continue
        entries[entry.hall_id] = entry
        lines[entry.hall_id] = line
    tree = tree_errors({**(known or {}), **entries})
    problems += [
        f"第 {lines[hall]} 行 / line {lines[hall]}: {why}"
        for hall, why in tree.items()
        if hall in lines
    ]
    if problems:
        raise CsvRegistryError(sorted(problems, key=_line_of))
    return list(entries.values())


def _line_of(problem: str) -> int:
    return int(problem.split(" ", 2)[1])
