"""差评 work orders (差评整改) in the store: orders opened by the correlation job, moved
along by people through the API, escalated by the job. The state machine, stage deadlines and
escalation rules are ``central.rules.followup``; this module only loads and records.

An order is opened for every evaluation that correlation counts and that the 好差评 mapping
in force on its business day rates 不满意 or 非常不满意 (``central.rules.scale``, the book
bound to the engine), once (keyed by the evaluation), dated when central first counted it: a
review held back by an uplink cut cannot be followed up before central knows of it. When a
later version of the correlation changes the evaluation (no longer counted, another case or
staff member), the order is not deleted: a ``followup.reissued`` event says what changed and
the order's case, staff and department follow the new version.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import and_, insert, select, tuple_, update
from sqlalchemy.ext.asyncio import AsyncConnection

from central.correlation import workqueue
from central.correlation.engine import Correlation
from central.correlation.store import Issued
from central.rules import followup as rules
from central.rules.followup import (
    AppealGround,
    CallBackAnswer,
    FollowUpConfig,
    FollowUpEvent,
    FollowUpItem,
    FollowUpState,
    Stage,
    StageDays,
)
from central.rules.scale import DEFAULT_BOOK, MappingBook, NationalLevel, Tag, device_key
from central.rules.workdays import CalendarError, WorkCalendar, business_date
from central.rules.workorder_stats import OrderFact
from central.store.schema_correlation import correlation_heads, followup_events, followups

log = logging.getLogger(__name__)


def item_id(gateway: str, seq: int) -> str:
    return f"FU-{gateway}-{seq}"


def _opt(kind: Any, value: Any) -> Any:
    return None if value is None else kind(value)


def item_from_row(row: Any) -> FollowUpItem:
    level = NationalLevel.DISSATISFIED if row.level is None else NationalLevel(row.level)
    return FollowUpItem(
        item_id=row.item_id,
        evaluation_id=f"{row.gateway_id}:{row.seq}",
        reason=device_key(row.reason),
        hall=row.hall_id,
        window=str(row.window),
        staff=row.staff,
        case_no=row.case_no,
        created_at=row.created_at,
        due=row.due,
        state=FollowUpState(row.state),
        updated_at=row.updated_at,
        assignee=row.assignee,
        founded=row.founded,
        escalation_level=row.escalation_level,
        closed_at=row.closed_at,
        level=level,
        tag=_opt(Tag, row.tag),
        mapping_version=row.mapping_version or "",
        stage_days=StageDays.model_validate(row.stage_days or {}),
        verify_due=row.verify_due,
        rectify_due=row.rectify_due,
        call_back_due=row.call_back_due,
        verified_at=row.verified_at,
        rectified_at=row.rectified_at,
        called_back_at=row.called_back_at,
        answer=_opt(CallBackAnswer, row.answer),
        appeal_ground=_opt(AppealGround, row.appeal_ground),
        appeal_evidence=row.appeal_evidence,
        appeal_upheld=row.appeal_upheld,
        excluded=bool(row.excluded),
    )


def _item_values(item: FollowUpItem) -> dict[str, Any]:
    return {
        "state": item.state.value,
        "updated_at": item.updated_at or item.created_at,
        "assignee": item.assignee,
        "founded": item.founded,
        "escalation_level": item.escalation_level,
        "closed_at": item.closed_at,
        "due": item.due,
        "rectify_due": item.rectify_due,
        "call_back_due": item.call_back_due,
        "verified_at": item.verified_at,
        "rectified_at": item.rectified_at,
        "called_back_at": item.called_back_at,
        "answer": _opt(str, item.answer and item.answer.value),
        "appeal_ground": _opt(str, item.appeal_ground and item.appeal_ground.value),
        "appeal_evidence": item.appeal_evidence,
        "appeal_upheld": item.appeal_upheld,
        "excluded": item.excluded,
    }


def _opening_values(item: FollowUpItem) -> dict[str, Any]:
    """What is fixed when the order opens: its rating and stage lengths."""
    return {
        "level": int(item.level),
        "tag": _opt(str, item.tag and item.tag.value),
        "mapping_version": item.mapping_version,
        "stage_days": item.stage_days.model_dump(),
        "verify_due": item.verify_due,
    }


def _event_rows(evs: Sequence[FollowUpEvent], now: dt.datetime) -> list[dict[str, Any]]:
    return [
        {
            "item_id": e.item_id,
            "kind": e.kind,
            "at": e.at,
            "state": e.state.value,
            "actor": e.actor,
            "note": e.note,
            "level": e.level,
            "assignee": e.assignee,
            "founded": e.founded,
            "recorded_at": now,
            "stage": _opt(str, e.stage and e.stage.value),
            "ground": _opt(str, e.ground and e.ground.value),
            "evidence_sha256": e.evidence_sha256,
            "answer": _opt(str, e.answer and e.answer.value),
        }
        for e in evs
    ]


def _department(
    c: Correlation, case_departments: Mapping[str, str], roster: Mapping[str, str]
) -> str | None:
    for case_no in c.case_nos:
        if case_no in case_departments:
            return case_departments[case_no]
    return roster.get(str(c.window))


def order_row(
    item: FollowUpItem,
    *,
    gateway: str,
    seq: int,
    evaluation_version: int,
    department: str | None,
    evaluated_at: dt.datetime,
) -> dict[str, Any]:
    """The ``followups`` row of a newly opened order."""
    return {
        "item_id": item.item_id,
        "gateway_id": gateway,
        "seq": seq,
        "evaluation_version": evaluation_version,
        "reason": int(item.reason),
        "hall_id": item.hall,
        "window": int(item.window),
        "staff": item.staff,
        "case_no": item.case_no,
        "department": department,
        "evaluated_at": evaluated_at,
        "created_at": item.created_at,
        **_item_values(item),
        **_opening_values(item),
    }


async def insert_order(
    conn: AsyncConnection,
    item: FollowUpItem,
    events: Sequence[FollowUpEvent],
    *,
    gateway: str,
    seq: int,
    evaluation_version: int,
    department: str | None,
    evaluated_at: dt.datetime,
    now: dt.datetime,
) -> None:
    """Store one newly opened order and its opening events."""
    row = order_row(
        item,
        gateway=gateway,
        seq=seq,
        evaluation_version=evaluation_version,
        department=department,
        evaluated_at=evaluated_at,
    )
    await insert_orders(conn, [row], _event_rows(events, now))


async def insert_orders(
    conn: AsyncConnection, orders: Sequence[dict[str, Any]], events: Sequence[dict[str, Any]]
) -> None:
    """Store newly opened orders (``order_row``) and their opening events: one statement each
    for a hall-day's, not two round trips per order."""
    if orders:
        await conn.execute(insert(followups), list(orders))
    if events:
        await conn.execute(insert(followup_events), list(events))


async def ensure_items(
    conn: AsyncConnection,
    results: Sequence[Correlation],
    issued: Sequence[Issued],
    now: dt.datetime,
    calendar: WorkCalendar,
    cfg: FollowUpConfig,
    case_departments: Mapping[str, str],
    roster: Mapping[str, str],
    book: MappingBook = DEFAULT_BOOK,
) -> tuple[int, bool]:
    """Open the items this hall-day's results call for; note re-issues on existing items.
    Returns (items opened, complete); not complete when the calendar could not date an item
    (the day is then correlated again on the next run, which retries)."""
    ids = [c.id for c in results]
    existing: dict[tuple[str, int], Any] = {}
    for i in range(0, len(ids), 500):
        for found in await conn.execute(
            select(followups).where(
                tuple_(followups.c.gateway_id, followups.c.seq).in_(ids[i : i + 500])
            )
        ):
            existing[(found.gateway_id, found.seq)] = found
    versions = {x.result.id: x.version for x in issued}
    complete, opened = True, 0
    orders: list[dict[str, Any]] = []
    opening: list[dict[str, Any]] = []
    for c in results:
        version = versions.get(c.id)
        row: Any = existing.get(c.id)
        department = _department(c, case_departments, roster)
        if row is None and c.counted and rules.opens_order(c.key, c.evaluated_at, book):
            try:
                item, evs = rules.open_item(
                    item_id=item_id(c.gateway, c.seq),
                    evaluation_id=f"{c.gateway}:{c.seq}",
                    key=c.key,
                    created_at=now,
                    hall=c.hall,
                    window=str(c.window),
                    staff=c.staff,
                    calendar=calendar,
                    case_no=c.case_nos[0] if c.case_nos else None,
                    cfg=cfg,
                    evaluated_at=c.evaluated_at,
                    book=book,
                )
            except CalendarError as exc:
                log.error("follow-up for %s:%d not opened yet: %s", c.gateway, c.seq, exc)
                complete = False
                continue
            orders.append(
                order_row(
                    item,
                    gateway=c.gateway,
                    seq=c.seq,
                    evaluation_version=version or 1,
                    department=department,
                    evaluated_at=c.evaluated_at,
                )
            )
            opening.extend(_event_rows(evs, now))
            opened += 1
        elif row is not None and version is not None and version != row.evaluation_version:
            case_no = c.case_nos[0] if c.case_nos else None
            counted = "计入满意率" if c.counted else "不再计入满意率"
            flags = "、".join(f.value for f in c.flags) or "无"
            note = (
                f"评价关联结果已更新（第 {version} 版）：{counted}；标记：{flags}；办件："
                f"{case_no or '无'} / correlation re-issued as version {version}: "
                f"counted={c.counted}, flags={[f.value for f in c.flags]}, case={case_no}"
            )
            await conn.execute(
                update(followups)
                .where(followups.c.item_id == row.item_id)
                .values(
                    evaluation_version=version,
                    staff=c.staff,
                    case_no=case_no,
                    department=department,
                )
            )
            await conn.execute(
                insert(followup_events).values(
                    item_id=row.item_id,
                    kind="followup.reissued",
                    at=now,
                    state=row.state,
                    actor=None,
                    note=note,
                    level=None,
                    assignee=None,
                    founded=None,
                    recorded_at=now,
                )
            )
    await insert_orders(conn, orders, opening)
    return opened, complete


async def escalate_all(
    conn: AsyncConnection, now: dt.datetime, calendar: WorkCalendar, cfg: FollowUpConfig
) -> int:
    """Record every escalation level reached by ``now`` on the orders with a stage overdue."""
    rows = (await conn.execute(select(followups).where(overdue_clause(now)))).all()
    recorded = 0
    for row in rows:
        try:
            item, evs = rules.escalate(item_from_row(row), now, calendar, cfg)
        except CalendarError as exc:
            log.error("follow-up %s: escalation not decided: %s", row.item_id, exc)
            continue
        if not evs:
            continue
        await conn.execute(
            update(followups)
            .where(followups.c.item_id == row.item_id)
            .values(escalation_level=item.escalation_level)
        )
        await conn.execute(insert(followup_events), _event_rows(evs, now))
        recorded += len(evs)
    return recorded


ACTIONS: dict[str, Any] = {
    "assign": rules.assign,
    "verify": rules.verify,
    "appeal": rules.appeal,
    "decide_appeal": rules.decide_appeal,
    "rectify": rules.rectify,
    "call_back": rules.call_back,
    "close": rules.close,
}
# the steps that start a stage, so need the calendar to date its deadline
NEEDS_CALENDAR = frozenset({"verify", "decide_appeal", "rectify"})


async def transition(
    conn: AsyncConnection,
    item: str,
    action: str,
    *,
    at: dt.datetime,
    actor: str,
    calendar: WorkCalendar,
    note: str = "",
    **kwargs: Any,
) -> Any | None:
    """Apply one step of the state machine; raises FollowUpError when it is not allowed.
    Returns the updated row, or None when there is no such item."""
    query = select(followups).where(followups.c.item_id == item)
    if conn.dialect.name == "postgresql":
        query = query.with_for_update()
    row = (await conn.execute(query)).first()
    if row is None:
        return None
    if action in NEEDS_CALENDAR:
        kwargs["calendar"] = calendar
    new, evs = ACTIONS[action](item_from_row(row), at=at, actor=actor, note=note, **kwargs)
    await conn.execute(
        update(followups).where(followups.c.item_id == item).values(**_item_values(new))
    )
    await conn.execute(insert(followup_events), _event_rows(evs, at))
    if action == "decide_appeal":
        await _requeue_evaluation_day(conn, row.gateway_id, row.seq)
    return (await conn.execute(select(followups).where(followups.c.item_id == item))).one()


async def _requeue_evaluation_day(conn: AsyncConnection, gateway: str, seq: int) -> None:
    """An appeal decision moves 满意率 (申诉核减): the evaluation's hall-day goes back on the
    work queue in the decision's transaction, so the job refreshes its rollups."""
    h = correlation_heads
    head = (
        await conn.execute(
            select(h.c.hall_id, h.c.business_day).where(h.c.gateway_id == gateway, h.c.seq == seq)
        )
    ).first()
    if head is not None:
        await workqueue.mark(conn, [(head.hall_id, head.business_day)])


async def history(conn: AsyncConnection, item: str) -> list[Any]:
    return list(
        (
            await conn.execute(
                select(followup_events)
                .where(followup_events.c.item_id == item)
                .order_by(followup_events.c.id)
            )
        ).all()
    )


WAITING_ON_HALL = [s.value for s in FollowUpState if rules.waits_on_hall(s)]


def overdue_clause(now: dt.datetime) -> Any:
    """Orders whose current stage is past its due day (an appeal waits on the supervisor)."""
    return and_(followups.c.state.in_(WAITING_ON_HALL), followups.c.due < business_date(now))


def order_fact(row: Any) -> OrderFact:
    """The figures' view of one stored order (``central.rules.workorder_stats``)."""

    def day(moment: dt.datetime | None) -> dt.date | None:
        return None if moment is None else business_date(moment)

    return OrderFact(
        opened=business_date(row.created_at),
        level=NationalLevel(row.level or NationalLevel.DISSATISFIED),
        tag=_opt(Tag, row.tag),
        due={
            Stage.VERIFY: row.verify_due,
            Stage.RECTIFY: row.rectify_due,
            Stage.CALL_BACK: row.call_back_due,
        },
        done={
            Stage.VERIFY: day(row.verified_at),
            Stage.RECTIFY: day(row.rectified_at),
            Stage.CALL_BACK: day(row.called_back_at),
        },
        closed=day(row.closed_at),
        appealed=row.appeal_ground is not None,
        appeal_upheld=row.appeal_upheld,
        answer=_opt(CallBackAnswer, row.answer),
    )
