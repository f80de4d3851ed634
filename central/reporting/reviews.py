"""复核: supervisors confirm or dismiss the flags of an evaluation.

An evaluation is an ``evaluator.key`` event, named by its gateway and seq. Its flags come from
the gateway (marks such as NO_SESSION) and from correlation (ORPHAN, SELF_PRESS_SUSPECTED…).
A decision is a new ``evaluation_reviews`` row; changing one's mind is another row that names
the one it replaces (``supersedes``), so the history of every flag stays readable and nothing
is edited. A caller must say which review it replaces (the current one): a decision taken on a
stale page is refused rather than silently overriding a colleague's newer one.

Who may see an evaluation: supervisors every one; hall managers their hall's; department
leaders those correlated to one of their department's cases. Camera evidence is the
``camera.verdict`` event that judged the key press.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from pydantic import ValidationError
from sqlalchemy import and_, exists, insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from central.security.access import Area, Reach, may, reach
from central.security.tokens import Principal, Role
from central.store.schema import cases, events
from central.store.schema_correlation import (
    correlation_case_links,
    correlation_heads,
    correlation_results,
)
from central.store.schema_dashboard import evaluation_reviews
from hallkit.clock import utc_now
from protocols.devices import EvaluatorKey

KEY_KIND = "evaluator.key"
VERDICT_KIND = "camera.verdict"
# Gateway marks worth a supervisor's decision; RETRANSMIT is the device repeating itself.
GATEWAY_FLAGS = frozenset({"NO_SESSION", "UNKNOWN_SESSION", "SESSION_REPEAT"})
# How far after the key press its camera verdict may be journaled (the verdict waits for the
# frames after the press; the gateway's default look-ahead is seconds, this is generous).
VERDICT_SEQ_SPAN = 5000
VERDICT_TIME_SPAN = dt.timedelta(minutes=10)


class Decision(StrEnum):
    CONFIRMED = "confirmed"  # 属实: the flag stands
    DISMISSED = "dismissed"  # 不属实: the flag was wrong


class ReviewError(Exception):
    """Refused; ``status`` is the HTTP status the API answers with."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True, slots=True)
class Evaluation:
    gateway: str
    seq: int
    hall: str
    window: int
    key: int
    utc: dt.datetime
    marks: tuple[str, ...]
    correlation_version: int | None
    correlation_flags: tuple[str, ...]

    @property
    def flags(self) -> tuple[str, ...]:
        gateway = [m for m in self.marks if m in GATEWAY_FLAGS]
        return tuple(dict.fromkeys([*gateway, *self.correlation_flags]))


async def _correlation(
    conn: AsyncConnection, gateway: str, seq: int
) -> tuple[int | None, tuple[str, ...]]:
    heads, results = correlation_heads, correlation_results
    row = (
        await conn.execute(
            select(results.c.version, results.c.flags)
            .join(
                heads,
                and_(
                    heads.c.gateway_id == results.c.gateway_id,
                    heads.c.seq == results.c.seq,
                    heads.c.version == results.c.version,
                ),
            )
            .where(results.c.gateway_id == gateway, results.c.seq == seq)
        )
    ).first()
    if row is None:
        return None, ()
    return row.version, tuple(str(f) for f in (row.flags or []))


async def _linked_to_department(
    conn: AsyncConnection, gateway: str, seq: int, department: str
) -> bool:
    heads, links = correlation_heads, correlation_case_links
    query = select(
        exists().where(
            heads.c.gateway_id == gateway,
            heads.c.seq == seq,
            links.c.gateway_id == heads.c.gateway_id,
            links.c.seq == heads.c.seq,
            links.c.version == heads.c.version,
            links.c.case_no == cases.c.case_no,
            cases.c.department == department,
        )
    )
    return bool((await conn.execute(query)).scalar())


async def visible(
    conn: AsyncConnection, who: Principal, gateway: str, seq: int
) -> Evaluation | None:
    """The evaluation if it exists and the caller may see it; None for both other cases, so
    that an id outside one's scope answers exactly like one that does not exist."""
    row = (
        await conn.execute(
            select(events).where(
                events.c.gateway_id == gateway, events.c.seq == seq, events.c.kind == KEY_KIND
            )
        )
    ).first()
    if row is None:
        return None
    try:
        key = EvaluatorKey.model_validate(row.body)
    except ValidationError:
        return None  # not an evaluation this version can read
    marks = tuple(key.marks)
    if "RETRANSMIT" in marks:
        return None  # the device's repeat of an event already journaled: not an evaluation
    if who.role is Role.HALL_MANAGER and row.hall_id not in who.halls:
        return None
    if who.role is Role.DEPARTMENT_LEADER and not (
        who.department and await _linked_to_department(conn, gateway, seq, who.department)
    ):
        return None
    if not may(who, Area.EVALUATIONS):
        return None
    version, flags = await _correlation(conn, gateway, seq)
    return Evaluation(
        gateway=gateway,
        seq=seq,
        hall=row.hall_id,
        window=key.window,
        key=key.key,
        utc=row.utc,
        marks=marks,
        correlation_version=version,
        correlation_flags=flags,
    )


async def history(conn: AsyncConnection, gateway: str, seq: int) -> list[Any]:
    """Every review of the evaluation, oldest first."""
    return list(
        (
            await conn.execute(
                select(evaluation_reviews)
                .where(evaluation_reviews.c.gateway_id == gateway, evaluation_reviews.c.seq == seq)
                .order_by(evaluation_reviews.c.flag, evaluation_reviews.c.generation)
            )
        ).all()
    )


def current_ids(rows: list[Any]) -> set[int]:
    """The reviews no later review replaces."""
    replaced = {r.supersedes for r in rows if r.supersedes is not None}
    return {r.id for r in rows if r.id not in replaced}


async def record(
    engine: AsyncEngine,
    who: Principal,
    gateway: str,
    seq: int,
    *,
    flag: str,
    decision: Decision,
    note: str,
    supersedes: int | None,
) -> Any:
    """Store a supervisor's decision on one flag; returns the new row."""
    if not may(who, Area.REVIEW_DECIDE):
        raise ReviewError(403, "仅监察室可复核 / only supervisors review flags")
    async with engine.begin() as conn:
        evaluation = await visible(conn, who, gateway, seq)
        if evaluation is None:
            raise ReviewError(404, "评价不存在 / no such evaluation")
        if flag not in evaluation.flags:
            raise ReviewError(422, f"该评价没有标记 {flag} / the evaluation is not flagged {flag}")
        previous = (
            await conn.execute(
                select(evaluation_reviews)
                .where(
                    evaluation_reviews.c.gateway_id == gateway,
                    evaluation_reviews.c.seq == seq,
                    evaluation_reviews.c.flag == flag,
                )
                .order_by(evaluation_reviews.c.generation.desc())
                .limit(1)
            )
        ).first()
        latest = None if previous is None else previous.id
        if supersedes != latest:
            raise ReviewError(
                409,
                "复核已被他人更新，请刷新后再试 / the flag was reviewed "
                f"meanwhile (current review: {latest}); reload and retry",
            )
        generation = 1 if previous is None else previous.generation + 1
        try:
            result = await conn.execute(
                insert(evaluation_reviews)
                .values(
                    gateway_id=gateway,
                    seq=seq,
                    hall_id=evaluation.hall,
                    flag=flag,
                    decision=decision.value,
                    note=note,
                    generation=generation,
                    supersedes=latest,
                    evaluation_version=evaluation.correlation_version,
                    reviewer=who.label or who.role.value,
                    reviewer_role=who.role.value,
                    created_at=utc_now(),
                )
                .returning(evaluation_reviews)
            )
            row = result.one()
        except IntegrityError:
            raise ReviewError(
                409,
                "复核已被他人更新，请刷新后再试 / the flag was reviewed "
                "meanwhile; reload and retry",
            ) from None
    return row


async def evidence(conn: AsyncConnection, evaluation: Evaluation) -> list[dict[str, Any]]:
    """The camera verdicts journaled for this key press (normally one)."""
    rows = (
        await conn.execute(
            select(events.c.seq, events.c.body)
            .where(
                events.c.gateway_id == evaluation.gateway,
                events.c.kind == VERDICT_KIND,
                events.c.seq > evaluation.seq,
                events.c.seq <= evaluation.seq + VERDICT_SEQ_SPAN,
                events.c.utc <= evaluation.utc + VERDICT_TIME_SPAN,
            )
            .order_by(events.c.seq)
        )
    ).all()
    return [
        {"seq": r.seq, **r.body} for r in rows if (r.body or {}).get("key_seq") == evaluation.seq
    ]


async def recent(
    engine: AsyncEngine, who: Principal, *, hall: str | None, limit: int
) -> tuple[list[Any], set[int]]:
    """The latest reviews in the caller's halls (supervisors and hall managers), and which of
    them a later review replaces."""
    query = select(evaluation_reviews).order_by(evaluation_reviews.c.id.desc()).limit(limit)
    found = reach(who, Area.REVIEW_LOG)
    if found is Reach.OWN_HALL:
        query = query.where(evaluation_reviews.c.hall_id.in_(sorted(who.halls)))
    elif found is not Reach.EVERY_HALL:
        raise ReviewError(403, "无权查看复核记录 / reviews are for supervisors and hall managers")
    if hall is not None:
        query = query.where(evaluation_reviews.c.hall_id == hall)
    async with engine.connect() as conn:
        rows = list((await conn.execute(query)).all())
        ids = [r.id for r in rows]
        replaced = (
            set()
            if not ids
            else set(
                (
                    await conn.execute(
                        select(evaluation_reviews.c.supersedes).where(
                            evaluation_reviews.c.supersedes.in_(ids)
                        )
                    )
                ).scalars()
            )
        )
    return rows, replaced
