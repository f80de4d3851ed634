"""Progress SMS to applicants (受理, 办结) where the case feed carries their consent and a
mobile number.

Called inside the case feed's transaction (``central.cases.store.upsert_in``), so a message
exists exactly when the case revision that caused it was stored; the keys
(``applicant:<case>:accepted``, ``…:completed``) make a case posted again send nothing new. The
number travels only in the message's payload and is erased once the message is delivered or
given up (``central.outbox.worker``); the case keeps its masked form as before. Off unless
``outbox.applicant_sms`` is set and an SMS gateway is configured (bound to the engine at
start, like the mapping book). An overdue apology is not sent yet: the feed would have to keep
the number until the deadline."""

from __future__ import annotations

import weakref
from collections.abc import Sequence
from typing import Protocol

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from central.outbox.store import Audience, Channel, enqueue

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


async def _send(conn: AsyncConnection, case: ProgressCase, event: str) -> None:
    assert case.sms_to is not None
    phone, ref = case.sms_to
    days = case.promised_days if case.promised_days is not None else case.legal_days
    await enqueue(
        conn,
        channel=Channel.SMS,
        key=f"applicant:{case.case_no}:{event}",
        kind=f"applicant.{event}",
        recipient=ref,
        payload={
            "event": f"applicant.{event}",
            "phone": phone,
            "params": {"case_no": case.case_no, "item_name": case.item_name, "days": days},
        },
        audience=Audience.CITIZEN,
    )


async def enqueue_progress(
    conn: AsyncConnection, created: Sequence[ProgressCase], stored: Sequence[ProgressCase]
) -> None:
    """``created``: cases new in this batch (受理); ``stored``: every case written (办结 when
    its status is completed)."""
    if not enabled(conn.engine):
        return
    for case in created:
        if case.sms_to is not None:
            await _send(conn, case, "accepted")
    for case in stored:
        if case.sms_to is not None and case.status == "completed":
            await _send(conn, case, "completed")


__all__ = ["enable", "enabled", "enqueue_progress"]
