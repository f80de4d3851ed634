"""A hand-written gateway journal for small fixtures: queue messages, invitations, key presses,
published as the gateway does (consecutive seq batches) into central's real ingest."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from central.spine.ingest import Ingestor
from central.spine.reading import Incoming
from protocols import topics
from protocols.devices import KEY_LABELS as LABELS

TZ = dt.timezone(dt.timedelta(hours=8))


def at(day: dt.date, hhmm: str) -> dt.datetime:
    parts = [int(x) for x in hhmm.split(":")]
    h, m, s = [*parts, 0][:3]
    return dt.datetime(day.year, day.month, day.day, h, m, s, tzinfo=TZ)


class Journal:
    def __init__(self, hall: str, gateway: str, day: dt.date) -> None:
        self.hall, self.gateway, self.day = hall, gateway, day
        self.events: list[dict[str, Any]] = []
        self.mseq = 0
        self.tokens: dict[int, int] = {}
        self.dev_seq = 0
        self.last_fn: dict[int, dict[str, Any]] = {}

    def _add(self, when: str, kind: str, body: dict[str, Any]) -> dict[str, Any]:
        moment = at(self.day, when)
        ev = {
            "seq": len(self.events) + 1,
            "utc": moment.astimezone(dt.UTC).isoformat(),
            "mono_ns": int(moment.timestamp() * 1e9) - 1_700_000_000_000_000_000,
            "boot": "c0ffee00" * 2,
            "synced": True,
            "kind": kind,
            "body": body,
        }
        self.events.append(ev)
        return ev

    def q(self, when: str, type_: str, **fields: Any) -> dict[str, Any]:
        self.mseq += 1
        body = {"mseq": self.mseq, "type": type_, **fields, "raw": f"$QM,{self.mseq},{type_}"}
        ev = self._add(when, "queue.event", body)
        if type_ == "FN":
            self.last_fn[fields["window"]] = body
        return ev

    def invite(self, when: str, window: int) -> dict[str, Any]:
        fn = self.last_fn[window]
        token = self.tokens[window] = self.tokens.get(window, 0) + 1
        return self._add(
            when,
            "evaluator.invite",
            {
                "window": window,
                "addr": 0x80 + window,
                "invitation": {
                    "session": token,
                    "ticket": fn["ticket"],
                    "staff": fn["staff"],
                    "invited_mono_ns": 0,
                    "qm_mseq": fn["mseq"],
                },
                "timeout_s": 30,
                "status": "ok",
            },
        )

    def press(
        self, when: str, window: int, key: int, invitation: dict[str, Any] | None
    ) -> dict[str, Any]:
        self.dev_seq += 1
        inv = None if invitation is None else invitation["body"]["invitation"]
        return self._add(
            when,
            "evaluator.key",
            {
                "window": window,
                "addr": 0x80 + window,
                "dev_seq": self.dev_seq,
                "key": key,
                "label": LABELS[key],
                "session": inv["session"] if inv else 0,
                "invitation": inv,
                "marks": [] if inv else ["NO_SESSION"],
                "raw": "ff68",
            },
        )

    async def deliver(self, engine: AsyncEngine) -> None:
        doc = {
            "v": 1,
            "hall": self.hall,
            "gateway": self.gateway,
            "sender_boot": "c0ffee00" * 2,
            "events": self.events,
        }
        await Ingestor(engine).ingest(
            [
                Incoming(
                    topics.topic(self.hall, self.gateway, topics.Channel.EVENTS),
                    json.dumps(doc).encode(),
                    dt.datetime.now(dt.UTC),
                )
            ]
        )


DAY = dt.date(2026, 11, 20)  # a Friday


async def small_hall(engine: AsyncEngine) -> Journal:
    """Hall H9, one day, two windows (1: 市场监管局, staff 000101; 2: 人社局, 000202), the
    fixture INDICATORS are computed on by hand in test_indicators_api.py:

    S1 w1 A001 issued 08:50 called 09:00 served → 非常满意 (case C1)
    S2 w1 A002 issued 08:55 called 09:12 no-show
    S3 w1 A003 issued 09:05 called 09:15 served → 服务态度不好 (case C2)
    S4 w2 B001 issued 09:20 called 09:40 served → 基本满意, then a quick second press (C3)
    S5 w2 B002 issued 09:25 called 09:51 transferred to A at 10:00
    S6 w1 B002 queued 10:00 called 10:05 served, nobody pressed (case C4)
    A004 issued 15:00, never called. Presence: w1 08:59–12:00 and 13:00–16:00, w2 09:30–11:00.
    The machine's heartbeat (every 30 s, 08:45–17:30) stops between 14:00 and 15:00: the feed
    was not reporting then (journaled last, so the other events keep their seq numbers).
    """
    j = Journal("H9", "gw9", DAY)
    j.q("08:50", "TK", ticket="A001", service="A")
    j.q("08:55", "TK", ticket="A002", service="A")
    j.q("08:59", "LI", window=1, staff="000101")
    j.q("09:00", "CL", ticket="A001", window=1)
    j.q("09:01", "ST", ticket="A001", window=1, staff="000101")
    j.q("09:05", "TK", ticket="A003", service="A")
    j.q("09:11", "FN", ticket="A001", window=1, staff="000101")
    j.press("09:11:10", 1, 1, j.invite("09:11:01", 1))
    j.q("09:12", "CL", ticket="A002", window=1)
    j.q("09:13", "RC", ticket="A002", window=1)
    j.q("09:14", "NS", ticket="A002", window=1)
    j.q("09:15", "CL", ticket="A003", window=1)
    j.q("09:16", "ST", ticket="A003", window=1, staff="000101")
    j.q("09:20", "TK", ticket="B001", service="B")
    j.q("09:25", "TK", ticket="B002", service="B")
    j.q("09:30", "FN", ticket="A003", window=1, staff="000101")
    j.q("09:30", "LI", window=2, staff="000202")
    j.press("09:30:10", 1, 3, j.invite("09:30:01", 1))
    j.q("09:40", "CL", ticket="B001", window=2)
    j.q("09:41", "ST", ticket="B001", window=2, staff="000202")
    j.q("09:50", "FN", ticket="B001", window=2, staff="000202")
    j.press("09:50:05", 2, 2, j.invite("09:50:01", 2))
    j.press("09:50:06", 2, 2, None)
    j.q("09:51", "CL", ticket="B002", window=2)
    j.q("09:52", "ST", ticket="B002", window=2, staff="000202")
    j.q("10:00", "TR", ticket="B002", window=2, to_service="A")
    j.q("10:05", "CL", ticket="B002", window=1)
    j.q("10:06", "ST", ticket="B002", window=1, staff="000101")
    j.q("10:20", "FN", ticket="B002", window=1, staff="000101")
    j.invite("10:20:01", 1)
    j.q("11:00", "LO", window=2, staff="000202")
    j.q("12:00", "PS", window=1, staff="000101")
    j.q("13:00", "RS", window=1, staff="000101")
    j.q("15:00", "TK", ticket="A004", service="A")
    j.q("16:00", "LO", window=1, staff="000101")
    j.q("17:30", "HB", waiting=0)
    beat = at(DAY, "08:45")
    while beat < at(DAY, "17:30"):
        if not at(DAY, "14:00") < beat < at(DAY, "15:00"):
            j.q(beat.strftime("%H:%M:%S"), "HB", waiting=0)
        beat += dt.timedelta(seconds=30)
    await j.deliver(engine)
    return j


def small_hall_cases() -> list[dict[str, Any]]:
    """C1–C5 as CaseRecord fields (C5 accepted online: no window)."""

    def case(
        no: str,
        window: int | None,
        staff: str | None,
        department: str,
        accepted: str,
        legal: int,
        promised: int | None,
        completed: str | None,
    ) -> dict[str, Any]:
        return {
            "case_no": no,
            "item_code": f"ITEM-{no}",
            "item_name": f"事项{no}",
            "department": department,
            "hall": "H9",
            "window": window,
            "staff": staff,
            "accepted_at": at(DAY, accepted),
            "legal_days": legal,
            "promised_days": promised,
            "completed_at": at(DAY, completed) if completed else None,
            "status": "completed" if completed else "running",
            "suspensions": (),
            "applicant_masked": None,
            "applicant_digest": None,
        }

    return [
        case("C1", 1, "000101", "市场监管局", "09:05", 10, 5, "09:10"),
        case("C2", 1, "000101", "市场监管局", "09:20", 20, None, None),
        case("C3", 2, "000202", "人社局", "09:45", 0, None, "09:48"),
        case("C4", 1, "000101", "人社局", "10:10", 15, 10, None),
        case("C5", None, None, "市场监管局", "11:00", 10, 8, "11:30"),
    ]
