"""Correlation's storage: loading a hall-day's inputs, writing its sessions, presence and
versioned results. Finding the hall-days with new input is ``central.correlation.intake``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError
from sqlalchemy import and_, bindparam, delete, insert, select, text, tuple_, update
from sqlalchemy.ext.asyncio import AsyncConnection

from central.correlation.camera_presence import CameraPresence
from central.correlation.config import CorrelationConfig
from central.correlation.engine import Correlation, CorrelationDay
from central.correlation.model import (
    CaseInfo,
    InviteRecord,
    Press,
    QueueRecord,
    TimeSource,
    Verdict,
)
from central.correlation.sessions import PresencePeriod, ServiceSession, SessionDay
from central.rules.workdays import business_date, day_start
from central.store.schema import cases, events
from central.store.schema_correlation import (
    correlation_case_links,
    correlation_days,
    correlation_event_days,
    correlation_heads,
    correlation_reissues,
    correlation_results,
    presence_periods,
    service_sessions,
)
from protocols.camera import CameraPresence as CameraPresenceBody

log = logging.getLogger(__name__)

_CHUNK = 500


async def lock_for_write(conn: AsyncConnection) -> None:
    """SQLite: take the write lock before reading, so the reads and writes of one transaction
    see one state (a deferred transaction would only lock at its first write)."""
    if conn.dialect.name == "sqlite":
        await conn.execute(text("UPDATE correlation_state SET name = name WHERE 0"))


def chunks(items: Sequence[Any], size: int = _CHUNK) -> Iterable[Sequence[Any]]:
    """Slices of ``items``: IN lists and multi-row statements stay within parameter limits."""
    for i in range(0, len(items), size):
        yield items[i : i + size]


# ------------------------------------------------------------------------------ loading


@dataclass
class DayInputs:
    queue: list[QueueRecord] = field(default_factory=list)
    presses: list[Press] = field(default_factory=list)
    invites: list[InviteRecord] = field(default_factory=list)
    verdicts: list[Verdict] = field(default_factory=list)
    cases: list[CaseInfo] = field(default_factory=list)
    camera_presence: list[CameraPresence] = field(default_factory=list)
    retransmits: int = 0
    undecodable: int = 0


async def load_day(
    conn: AsyncConnection, hall: str, day: dt.date, cfg: CorrelationConfig
) -> DayInputs:
    ed = correlation_event_days
    rows = (
        await conn.execute(
            select(
                ed.c.gateway_id,
                ed.c.seq,
                ed.c.kind,
                ed.c.at,
                ed.c.time_source,
                events.c.body,
                events.c.boot,
                events.c.mono_ns,
            )
            .select_from(
                ed.join(
                    events, and_(events.c.gateway_id == ed.c.gateway_id, events.c.seq == ed.c.seq)
                )
            )
            .where(ed.c.hall_id == hall, ed.c.business_day == day)
        )
    ).all()
    inputs = DayInputs()
    for r in rows:
        try:
            _take_event(inputs, r)
        except ValidationError as exc:  # stored before the strict contract: skipped, said
            inputs.undecodable += 1
            log.warning(
                "correlation: event %s:%d (%s) does not fit its model, skipped: %s",
                r.gateway_id,
                r.seq,
                r.kind,
                str(exc).splitlines()[0],
            )
    # a case may be accepted before its service (clock) or after it (entry lag)
    first = day_start(day) - dt.timedelta(seconds=cfg.case_tolerance_s)
    last = day_start(day + dt.timedelta(days=1)) + dt.timedelta(seconds=cfg.case_entry_lag_s)
    for c in await conn.execute(
        select(
            cases.c.case_no,
            cases.c.hall_id,
            cases.c.window,
            cases.c.staff,
            cases.c.accepted_at,
            cases.c.department,
            cases.c.item_code,
            cases.c.applicant_digest,
        ).where(cases.c.hall_id == hall, cases.c.accepted_at >= first, cases.c.accepted_at < last)
    ):
        inputs.cases.append(
            CaseInfo(
                c.case_no,
                c.hall_id,
                c.window,
                c.staff,
                c.accepted_at,
                c.department,
                c.item_code,
                c.applicant_digest,
            )
        )
    return inputs


def _take_event(inputs: DayInputs, r: Any) -> None:
    """One stored event into the day's inputs, decoded with its protocol model."""
    source = TimeSource(r.time_source)
    if r.kind == "queue.event":
        inputs.queue.append(QueueRecord.from_body(r.gateway_id, r.seq, r.at, r.body, source))
    elif r.kind == "evaluator.key":
        if "RETRANSMIT" in r.body.get("marks", ()):
            inputs.retransmits += 1  # the device's repeat of a journaled key: never counted
            return
        inputs.presses.append(
            Press.from_body(r.gateway_id, r.seq, r.at, source, r.boot, r.mono_ns, r.body)
        )
    elif r.kind == "evaluator.invite":
        inputs.invites.append(InviteRecord.from_body(r.gateway_id, r.seq, r.at, r.body))
    elif r.kind == "camera.verdict":
        verdict = Verdict.from_body(r.gateway_id, r.seq, r.at, r.body)
        if verdict is not None:
            inputs.verdicts.append(verdict)
    elif r.kind == "camera.presence":
        seen = CameraPresenceBody.model_validate(r.body)
        inputs.camera_presence.append(CameraPresence(seen.window, seen.staff, seen.since))


# ------------------------------------------------------------------------------ writing


def _iso(value: dt.datetime | None) -> str | None:
    return None if value is None else value.astimezone(dt.UTC).isoformat()


def session_row(s: ServiceSession, day: dt.date) -> dict[str, Any]:
    return {
        "session_id": s.session_id,
        "hall_id": s.hall,
        "business_day": day,
        "ticket": s.ticket,
        "service": s.service,
        "window": s.window,
        "staff": s.staff,
        "outcome": s.outcome.value,
        "queued_at": s.queued_at,
        "called_at": s.called_at,
        "started_at": s.started_at,
        "ended_at": s.ended_at,
        "next_call_at": s.next_call_at,
        "next_start_at": s.next_start_at,
        "machine_times": dict(s.machine_times),
        "time_sources": dict(s.time_sources),
        "recalls": s.recalls,
        "finish_mseq": s.finish_mseq,
        "case_nos": list(s.case_nos),
    }


def _comparable(row: Mapping[Any, Any]) -> tuple[tuple[str, Any], ...]:
    return tuple(sorted((k, _iso(v) if isinstance(v, dt.datetime) else v) for k, v in row.items()))


async def _replace_sessions(
    conn: AsyncConnection, hall: str, day: dt.date, sessions: Sequence[ServiceSession]
) -> bool:
    new = {s.session_id: session_row(s, day) for s in sessions}
    old_rows = (
        await conn.execute(
            select(service_sessions).where(
                service_sessions.c.hall_id == hall, service_sessions.c.business_day == day
            )
        )
    ).all()
    old = {r.session_id: _comparable(r._mapping) for r in old_rows}
    if old == {k: _comparable(v) for k, v in new.items()}:
        return False
    await conn.execute(
        delete(service_sessions).where(
            service_sessions.c.hall_id == hall, service_sessions.c.business_day == day
        )
    )
    ids = list(new)
    for chunk in chunks(ids):  # a session whose events moved here from another day
        await conn.execute(delete(service_sessions).where(service_sessions.c.session_id.in_(chunk)))
    for chunk in chunks(list(new.values()), 1000):
        await conn.execute(insert(service_sessions), list(chunk))
    return True


def presence_row(p: PresencePeriod, day: dt.date) -> dict[str, Any]:
    return {
        "hall_id": p.hall,
        "window": p.window,
        "staff": p.staff,
        "start": p.start,
        "business_day": day,
        "end": p.end,
        "opened_by": p.opened_by,
        "closed_by": p.closed_by,
    }


async def _replace_presence(
    conn: AsyncConnection, hall: str, day: dt.date, periods: Sequence[PresencePeriod]
) -> None:
    pp = presence_periods
    new = sorted(_comparable(presence_row(p, day)) for p in periods)
    old = sorted(
        _comparable(r._mapping)
        for r in (
            await conn.execute(select(pp).where(pp.c.hall_id == hall, pp.c.business_day == day))
        ).all()
    )
    if new == old:
        return
    await conn.execute(delete(pp).where(pp.c.hall_id == hall, pp.c.business_day == day))
    keys = [(p.hall, p.window, p.staff, p.start) for p in periods]
    for chunk in chunks(keys):
        await conn.execute(
            delete(pp).where(
                tuple_(pp.c.hall_id, pp.c.window, pp.c.staff, pp.c.start).in_(list(chunk))
            )
        )
    rows = [presence_row(p, day) for p in periods]
    for chunk in chunks(rows, 1000):
        await conn.execute(insert(pp), list(chunk))


RESULT_FIELDS = (
    "hall",
    "window",
    "addr",
    "dev_seq",
    "key",
    "evaluated_at",
    "time_source",
    "session_id",
    "ticket",
    "staff",
    "case_nos",
    "confidence",
    "flags",
    "counted",
    "basis",
    "citizen",
)


def stored_content(row: Any) -> dict[str, Any]:
    """A stored result in the form of ``Correlation.content()``."""
    return {
        "hall": row.hall_id,
        "window": row.window,
        "addr": row.addr,
        "dev_seq": row.dev_seq,
        "key": row.key,
        "evaluated_at": _iso(row.evaluated_at),
        "time_source": row.time_source,
        "session_id": row.session_id,
        "ticket": row.ticket,
        "staff": row.staff,
        "case_nos": list(row.case_nos),
        "confidence": row.confidence,
        "flags": list(row.flags),
        "counted": row.counted,
        "basis": row.basis,
        "citizen": row.citizen,
    }


def digest(previous: str | None, content: Mapping[str, Any]) -> str:
    text_ = json.dumps(
        {"previous": previous, "content": content},
        sort_keys=True,
        ensure_ascii=False,
        separators=(",", ":"),
    )
    return hashlib.sha256(text_.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class Issued:
    """A version written by this run."""

    result: Correlation
    version: int
    previous: dict[str, Any] | None  # the superseded version's content
    changed: tuple[str, ...]


async def current_results(
    conn: AsyncConnection, ids: Sequence[tuple[str, int]]
) -> dict[tuple[str, int], Any]:
    r, h = correlation_results, correlation_heads
    out: dict[tuple[str, int], Any] = {}
    for chunk in chunks(list(ids)):
        query = (
            select(r)
            .select_from(
                h.join(
                    r,
                    and_(
                        r.c.gateway_id == h.c.gateway_id,
                        r.c.seq == h.c.seq,
                        r.c.version == h.c.version,
                    ),
                )
            )
            .where(tuple_(h.c.gateway_id, h.c.seq).in_(list(chunk)))
        )
        for row in await conn.execute(query):
            out[(row.gateway_id, row.seq)] = row
    return out


async def _issue(
    conn: AsyncConnection, results: Sequence[Correlation], now: dt.datetime
) -> list[Issued]:
    heads = await current_results(conn, [c.id for c in results])
    issued: list[Issued] = []
    rows, links, new_heads, moved_heads, reissues = [], [], [], [], []
    for c in results:
        content = c.content()
        day = business_date(c.evaluated_at)
        head = heads.get(c.id)
        changed: tuple[str, ...] = ()
        if head is None:
            version, previous, prev_digest = 1, None, None
        else:
            previous = stored_content(head)
            if previous == content:
                continue
            version, prev_digest = head.version + 1, head.digest
            changed = tuple(k for k in RESULT_FIELDS if previous.get(k) != content.get(k))
        rows.append(
            {
                "gateway_id": c.gateway,
                "seq": c.seq,
                "version": version,
                "supersedes": None if head is None else head.version,
                "hall_id": c.hall,
                "business_day": day,
                "window": c.window,
                "addr": c.addr,
                "dev_seq": c.dev_seq,
                "key": c.key,
                "evaluated_at": c.evaluated_at,
                "time_source": c.time_source.value,
                "session_id": c.session_id,
                "ticket": c.ticket,
                "staff": c.staff,
                "case_nos": list(c.case_nos),
                "confidence": c.confidence,
                "flags": [f.value for f in c.flags],
                "counted": c.counted,
                "basis": c.basis.value,
                "citizen": c.citizen,
                "computed_at": now,
                "digest": digest(prev_digest, content),
            }
        )
        links += [
            {"gateway_id": c.gateway, "seq": c.seq, "version": version, "case_no": n}
            for n in c.case_nos
        ]
        head_row = {
            "gateway_id": c.gateway,
            "seq": c.seq,
            "version": version,
            "hall_id": c.hall,
            "business_day": day,
        }
        if head is None:
            new_heads.append(head_row)
        else:
            moved_heads.append(head_row)
            reissues.append(
                {
                    "gateway_id": c.gateway,
                    "seq": c.seq,
                    "from_version": head.version,
                    "to_version": version,
                    "hall_id": c.hall,
                    "business_day": day,
                    "changed": list(changed),
                    "reissued_at": now,
                }
            )
        issued.append(Issued(c, version, previous, changed))
    for table, batch in (
        (correlation_results, rows),
        (correlation_case_links, links),
        (correlation_heads, new_heads),
        (correlation_reissues, reissues),
    ):
        for chunk in chunks(batch, 1000):
            await conn.execute(insert(table), list(chunk))
    h = correlation_heads
    if moved_heads:
        await conn.execute(
            update(h).where(
                h.c.gateway_id == bindparam("b_gateway"), h.c.seq == bindparam("b_seq")
            ),
            [
                {
                    "b_gateway": x["gateway_id"],
                    "b_seq": x["seq"],
                    "version": x["version"],
                    "hall_id": x["hall_id"],
                    "business_day": x["business_day"],
                }
                for x in moved_heads
            ],
        )
    return issued


@dataclass(frozen=True, slots=True)
class DaySaved:
    sessions_changed: bool
    issued: list[Issued]


async def save_day(
    conn: AsyncConnection,
    hall: str,
    day: dt.date,
    built: SessionDay,
    outcome: CorrelationDay,
    now: dt.datetime,
) -> DaySaved:
    sessions_changed = await _replace_sessions(conn, hall, day, outcome.sessions)
    await _replace_presence(conn, hall, day, built.presence)
    issued = await _issue(conn, outcome.results, now)
    this_day = (correlation_days.c.hall_id == hall, correlation_days.c.business_day == day)
    runs = (await conn.execute(select(correlation_days.c.runs).where(*this_day))).scalar()
    await conn.execute(delete(correlation_days).where(*this_day))
    await conn.execute(
        insert(correlation_days).values(
            hall_id=hall,
            business_day=day,
            run_at=now,
            sessions=len(outcome.sessions),
            evaluations=len(outcome.results),
            new_versions=len(issued),
            reporting=[[_iso(a), _iso(b)] for a, b in built.reporting],
            runs=(runs or 0) + 1,
        )
    )
    return DaySaved(sessions_changed, issued)
