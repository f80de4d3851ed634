"""Progress SMS to applicants (受理, 办结) where the case feed carries their consent and a
mobile number.

Called inside the case feed's transaction (``central.cases.store.upsert_in``), so a message
exists exactly when the case revision that caused it was stored; the keys
(``applicant:<case>:accepted``, ``…:completed``) make a case posted again send nothing new. The
number travels only in the message's payload and is erased once the message is delivered or
given up (``central.outbox.worker``); the case keeps its masked form as before. Off unless
``outbox.applicant_sms`` is set and an SMS gateway is configured (bound to the engine at
start, like the mapping book).

The overdue apology (延误致歉) needs the number until the deadline, and the feed does not keep
it: when a consented case is accepted, its apology is enqueued at once as ``waiting`` (the
number in that one row, as for the other two). ``release_overdue`` (task ``outbox.apologies``)
lets it go when the ladder records the case's red light (时限已到, ``case_steps``); a case
completed or withdrawn before then deletes it, number and all. The key
``applicant:<case>:overdue`` makes it once per case."""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections.abc import Sequence
from typing import Protocol

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from central.outbox.store import Audience, Channel, Status, enqueue
from central.rules.timelimit import LadderStage
from central.store.schema_cases import case_steps
from central.store.schema_outbox import outbox
from hallkit.clock import utc_now

log = logging.getLogger(__name__)

OVERDUE = "overdue"
# the ladder stage that makes a case overdue for the applicant: its time limit has arrived
OVERDUE_STAGE = LadderStage.RED_LIGHT
CLOSED = frozenset({"completed", "withdrawn"})
EVERY_S = 60.0
_CHUNK = 500

_enabled: weakref.WeakSet[AsyncEngine] = weakref.WeakSet()


class ProgressCase(Protocol):
    @property
    def case_no(self) -> str: ...
    @property
    def item_name(self) -> str: ...
    @property
    def status(self) -> str: ...
    @property
    def legal_days(self) -> int: ...
    @property
    def promised_days(self) -> int | None: ...
    @property
    def sms_to(self) -> tuple[str, str] | None: ...


def enable(engine: AsyncEngine) -> None:
    _enabled.add(engine)


def enabled(engine: AsyncEngine) -> bool:
    return engine in _enabled


def _key(case_no: str, event: str) -> str:
    return f"applicant:{case_no}:{event}"


async def _send(
    conn: AsyncConnection, case: ProgressCase, event: str, *, waiting: bool = False
) -> None:
    assert case.sms_to is not None
    phone, ref = case.sms_to
    days = case.promised_days if case.promised_days is not None else case.legal_days
    await enqueue(
        conn,
        channel=Channel.SMS,
        key=_key(case.case_no, event),
        kind=f"applicant.{event}",
        recipient=ref,
        payload={
            "event": f"applicant.{event}",
            "phone": phone,
            "params": {"case_no": case.case_no, "item_name": case.item_name, "days": days},
        },
        audience=Audience.CITIZEN,
        status=Status.WAITING if waiting else Status.PENDING,
    )


async def enqueue_progress(
    conn: AsyncConnection, created: Sequence[ProgressCase], stored: Sequence[ProgressCase]
) -> None:
    """``created``: cases new in this batch (受理); ``stored``: every case written (办结 when
    its status is completed). An open case with consent has its apology waiting; a closed one,
    or one whose consent is gone, has none."""
    if not enabled(conn.engine):
        return
    for case in created:
        if case.sms_to is not None:
            await _send(conn, case, "accepted")
    settled: list[str] = []
    for case in stored:
        if case.sms_to is not None and case.status == "completed":
            await _send(conn, case, "completed")
        if case.sms_to is not None and case.status not in CLOSED:
            await _send(conn, case, OVERDUE, waiting=True)
        else:
            settled.append(_key(case.case_no, OVERDUE))
    for i in range(0, len(settled), _CHUNK):
        await conn.execute(
            delete(outbox).where(
                outbox.c.channel == Channel.SMS.value,
                outbox.c.status == Status.WAITING.value,
                outbox.c.idem_key.in_(settled[i : i + _CHUNK]),
            )
        )


async def release_overdue(engine: AsyncEngine) -> int:
    """Send the waiting apologies of cases whose red light is recorded; how many."""
    o = outbox.c
    prefix, suffix = "applicant:", f":{OVERDUE}"
    released = 0
    async with engine.begin() as conn:
        waiting = {
            key[len(prefix) : -len(suffix)]: message_id
            for message_id, key in await conn.execute(
                select(o.id, o.idem_key).where(
                    o.channel == Channel.SMS.value, o.status == Status.WAITING.value
                )
            )
        }
        numbers = sorted(waiting)
        for i in range(0, len(numbers), _CHUNK):
            overdue = (
                await conn.execute(
                    select(case_steps.c.case_no)
                    .where(
                        case_steps.c.case_no.in_(numbers[i : i + _CHUNK]),
                        case_steps.c.stage == OVERDUE_STAGE.value,
                    )
                    .distinct()
                )
            ).scalars()
            ids = [waiting[no] for no in overdue]
            if ids:
                done = await conn.execute(
                    update(outbox)
                    .where(o.id.in_(ids), o.status == Status.WAITING.value)
                    .values(status=Status.PENDING.value, next_attempt_at=utc_now())
                )
                released += int(done.rowcount)
    if released:
        log.info("applicant progress: %d overdue apologies released", released)
    return released


async def run_forever(engine: AsyncEngine, every_s: float = EVERY_S) -> None:
    while True:
        try:
            await release_overdue(engine)
        except Exception:
            log.exception("applicant progress: releasing overdue apologies failed; trying again")
        await asyncio.sleep(every_s)


__all__ = ["enable", "enabled", "enqueue_progress", "release_overdue", "run_forever"]
