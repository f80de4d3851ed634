"""The review queue at scale: filters, counts per flag and pages over the flagged evaluations,
and bulk decisions (one note for many rows, each row still its own append-only review).

Filters narrow what ``flagged.find`` already limited to the caller's scope, so counts and pages
never show more than the caller may see. A bulk decision checks every row against the caller's
scope before writing anything: one row outside it refuses the whole request.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from central.reporting.flagged import Flagged
from central.reporting.reviews import Decision, ReviewError, history, visible
from central.security.access import Area, may
from central.security.tokens import Principal
from central.store.schema_dashboard import evaluation_reviews
from hallkit.clock import utc_now

MAX_BULK = 1000  # rows one bulk request may decide


@dataclass(frozen=True, slots=True)
class QueueFilter:
    hall: str | None = None
    window: int | None = None
    staff: str | None = None
    key: int | None = None
    flag: str | None = None
    undecided: bool = False

    def _flags_of(self, item: Flagged) -> list[str]:
        """The flags of the item that count under this filter (open ones only if undecided)."""
        return item.open_flags if self.undecided else item.all_flags

    def matches_but_flag(self, item: Flagged) -> bool:
        return (
            (self.hall is None or item.hall == self.hall)
            and (self.window is None or item.window == self.window)
            and (self.staff is None or item.staff == self.staff)
            and (self.key is None or item.key == self.key)
            and bool(self._flags_of(item))
        )

    def matches(self, item: Flagged) -> bool:
        return self.matches_but_flag(item) and (
            self.flag is None or self.flag in self._flags_of(item)
        )


@dataclass(frozen=True, slots=True)
class QueuePage:
    total: int
    counts: dict[str, int]  # flag → evaluations carrying it under every filter but the flag
    items: list[Flagged]


def page(items: list[Flagged], wanted: QueueFilter, offset: int, limit: int) -> QueuePage:
    counts: Counter[str] = Counter()
    matching: list[Flagged] = []
    for item in items:
        if not wanted.matches_but_flag(item):
            continue
        counts.update(wanted._flags_of(item))
        if wanted.flag is None or wanted.flag in wanted._flags_of(item):
            matching.append(item)
    return QueuePage(len(matching), dict(counts), matching[offset : offset + limit])


@dataclass(frozen=True, slots=True)
class Target:
    gateway: str
    seq: int
    flag: str | None  # None: every flag of the evaluation not decided yet


@dataclass
class BulkOutcome:
    decided: list[Any] = field(default_factory=list)  # the new evaluation_reviews rows
    already: list[Any] = field(default_factory=list)  # the current review of flags decided before


def _current(rows: list[Any], flag: str) -> Any:
    mine = [r for r in rows if r.flag == flag]
    return max(mine, key=lambda r: r.generation) if mine else None


async def decide_many(
    engine: AsyncEngine, who: Principal, targets: list[Target], decision: Decision, note: str
) -> BulkOutcome:
    """First decisions on many flags in one transaction. A flag already decided is reported
    back (its current review), not decided again: changing a decision stays a single,
    deliberate act that names the review it replaces."""
    if not may(who, Area.REVIEW_DECIDE):
        raise ReviewError(403, "仅监察室可复核 / only supervisors review flags")
    if len(targets) > MAX_BULK:
        raise ReviewError(422, f"一次最多 {MAX_BULK} 条 / at most {MAX_BULK} rows at once")
    unique = list(dict.fromkeys(targets))
    outcome = BulkOutcome()
    now = utc_now()
    reviewer = who.label or who.role.value
    try:
        async with engine.begin() as conn:
            found = [(t, await visible(conn, who, t.gateway, t.seq)) for t in unique]
            outside = [f"{t.gateway}/{t.seq}" for t, e in found if e is None]
            if outside:
                shown = ", ".join(outside[:10]) + (" …" if len(outside) > 10 else "")
                raise ReviewError(
                    403,
                    f"{len(outside)} 条评价不存在或不在您的范围内，未作任何复核 / "
                    f"{len(outside)} rows do not exist or are outside your scope; nothing "
                    f"was decided: {shown}",
                )
            for target, evaluation in found:
                assert evaluation is not None
                if target.flag is not None and target.flag not in evaluation.flags:
                    raise ReviewError(
                        422,
                        f"评价 {target.gateway}/{target.seq} 没有标记 {target.flag} / the "
                        f"evaluation is not flagged {target.flag}",
                    )
                rows = await history(conn, target.gateway, target.seq)
                flags = evaluation.flags if target.flag is None else (target.flag,)
                for flag in flags:
                    current = _current(rows, flag)
                    if current is not None:
                        outcome.already.append(current)
                        continue
                    result = await conn.execute(
                        insert(evaluation_reviews)
                        .values(
                            gateway_id=target.gateway,
                            seq=target.seq,
                            hall_id=evaluation.hall,
                            flag=flag,
                            decision=decision.value,
                            note=note,
                            generation=1,
                            supersedes=None,
                            evaluation_version=evaluation.correlation_version,
                            reviewer=reviewer,
                            reviewer_role=who.role.value,
                            created_at=now,
                        )
                        .returning(evaluation_reviews)
                    )
                    outcome.decided.append(result.one())
    except IntegrityError:
        raise ReviewError(
            409, "复核已被他人更新，请刷新后再试 / rows were reviewed meanwhile; reload and retry"
        ) from None
    return outcome
