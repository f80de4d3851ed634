"""What verification reports: each problem found, and the summary."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from enum import StrEnum

from central.records.ledger.chain import Record


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
