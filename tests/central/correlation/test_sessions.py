"""Service sessions and presence from a hand-written queue feed (pure)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from central.correlation.model import QueueRecord
from central.correlation.sessions import Outcome, ServiceSession, build_sessions

TZ = dt.timezone(dt.timedelta(hours=8))


def at(hhmmss: str) -> dt.datetime:
    h, m, s = (int(x) for x in hhmmss.split(":"))
    return dt.datetime(2026, 11, 20, h, m, s, tzinfo=TZ)


class Feed:
    """Queue records in gateway receive order; the machine's clock is five hours off."""

    def __init__(self, gateway: str = "gw1") -> None:
        self.gateway, self.mseq = gateway, 100
        self.records: list[QueueRecord] = []

    def __call__(self, when: str, type_: str, **fields: Any) -> QueueRecord:
        self.mseq += 1
        machine = (at(when) + dt.timedelta(hours=5)).replace(tzinfo=None).isoformat()
        r = QueueRecord(
            gateway=self.gateway,
            seq=len(self.records) + 1,
            at=at(when),
            mseq=self.mseq,
            type=type_,
            machine_time=machine,
            raw=f"$QM,{self.mseq},{type_}",
            **fields,
        )
        self.records.append(r)
        return r

    def again(self, when: str, record: QueueRecord) -> None:
        """The machine's replay of a line the gateway journaled once already."""
        self.records.append(
            QueueRecord(**{**_fields(record), "seq": len(self.records) + 1, "at": at(when)})
        )


def _fields(r: QueueRecord) -> dict[str, Any]:
    return {name: getattr(r, name) for name in r.__slots__}


def by_ticket(sessions: tuple[ServiceSession, ...]) -> dict[tuple[int | None, str], Any]:
    return {(s.window, s.ticket): s for s in sessions}


def test_a_window_morning() -> None:
    f = Feed()
    f("08:55:00", "LI", window=1, staff="000111")
    f("09:00:00", "TK", ticket="A001", service="A")
    f("09:01:00", "TK", ticket="A002", service="A")
    f("09:05:00", "CL", ticket="A001", window=1)
    f("09:05:30", "ST", ticket="A001", window=1, staff="000111")
    fn = f("09:10:00", "FN", ticket="A001", window=1, staff="000111")
    f("09:10:20", "CL", ticket="A002", window=1)
    f("09:10:50", "RC", ticket="A002", window=1)
    f("09:11:30", "NS", ticket="A002", window=1)
    f("09:12:00", "PS", window=1, staff="000111")
    f.again("09:12:05", fn)  # replayed after a reconnect: counts once
    f("09:20:00", "RS", window=1, staff="000111")
    f("09:21:00", "TK", ticket="B001", service="B")
    f("09:22:00", "CL", ticket="B001", window=1)
    f("09:22:20", "ST", ticket="B001", window=1, staff="000111")
    f("09:25:00", "TR", ticket="B001", window=1, to_service="C")
    f("09:00:00", "LI", window=2, staff="000222")
    f("09:30:00", "CL", ticket="B001", window=2)
    f("09:30:40", "ST", ticket="B001", window=2, staff="000222")
    f("09:35:00", "FN", ticket="B001", window=2, staff="000222")
    f("09:40:00", "TK", ticket="A003", service="A")
    f("09:45:00", "CL", ticket="A004", window=2)  # its TK was never seen
    f("09:46:00", "ST", ticket="A004", window=2, staff="000222")
    f("09:50:00", "LO", window=1, staff="000111")
    f("10:00:00", "HB")
    day = build_sessions("H1", f.records)
    s = by_ticket(day.sessions)
    assert day.repeats == 1 and day.horizon == at("10:00:00") and day.anomalies == ()

    a1 = s[(1, "A001")]
    assert (a1.outcome, a1.queued_at, a1.called_at, a1.started_at, a1.ended_at) == (
        Outcome.FINISHED,
        at("09:00:00"),
        at("09:05:00"),
        at("09:05:30"),
        at("09:10:00"),
    )
    assert a1.staff == "000111" and a1.finish_mseq == fn.mseq
    assert a1.next_call_at == at("09:10:20") and a1.wait_minutes() == 5.0
    # the next ticket never came (no-show): A001's citizen owns the window until the grace ends
    grace = dt.timedelta(seconds=30)
    assert a1.next_start_at is None and a1.belongs_until(grace) == at("09:10:50")
    assert a1.service_minutes() == 4.5
    # the machine's own clock is kept beside, never used
    assert dict(a1.machine_times)["called"] == "2026-11-20T14:05:00"

    a2 = s[(1, "A002")]
    assert (a2.outcome, a2.recalls, a2.ended_at) == (Outcome.NO_SHOW, 1, at("09:11:30"))
    assert a2.staff == "000111"  # nobody served it: the person at the window called it
    assert a2.next_call_at == at("09:22:00")
    assert a2.next_start_at == at("09:22:20") and a2.belongs_until(grace) == at("09:22:20")

    b_first, b_second = s[(1, "B001")], s[(2, "B001")]
    assert b_first.outcome is Outcome.TRANSFERRED and b_first.ended_at == at("09:25:00")
    assert b_second.queued_at == at("09:25:00") and b_second.service is not None
    assert b_second.service == "C" and b_second.outcome is Outcome.FINISHED

    a4 = s[(2, "A004")]
    assert (a4.outcome, a4.queued_at, a4.ended_at) == (Outcome.OPEN, None, None)
    assert s[(None, "A003")].outcome is Outcome.NOT_CALLED

    presence = [(p.window, p.staff, p.start, p.end, p.opened_by, p.closed_by) for p in day.presence]
    assert presence == [
        (1, "000111", at("08:55:00"), at("09:12:00"), "LI", "PS"),
        (1, "000111", at("09:20:00"), at("09:50:00"), "RS", "LO"),
        (2, "000222", at("09:00:00"), at("10:00:00"), "LI", "end_of_data"),
    ]


def test_calling_the_next_number_before_finishing() -> None:
    f = Feed()
    f("10:00:00", "TK", ticket="A010", service="A")
    f("10:00:10", "TK", ticket="A011", service="A")
    f("10:00:20", "TK", ticket="A012", service="A")
    f("10:00:30", "TK", ticket="A013", service="A")
    f("10:01:00", "CL", ticket="A010", window=3)
    f("10:01:30", "ST", ticket="A010", window=3, staff="000333")
    f("10:06:00", "CL", ticket="A011", window=3)  # called while A010 is still at the desk
    f("10:07:00", "FN", ticket="A010", window=3, staff="000333")  # … which then finishes
    f("10:07:30", "ST", ticket="A011", window=3, staff="000333")
    f("10:02:00", "CL", ticket="A012", window=4)
    f("10:02:30", "ST", ticket="A012", window=4, staff="000444")
    f("10:09:00", "CL", ticket="A013", window=4)  # A012 never finishes
    f("10:12:00", "FN", ticket="A012", window=3, staff="000333")  # at the wrong window
    day = build_sessions("H1", f.records)
    s = by_ticket(day.sessions)
    a10 = s[(3, "A010")]
    assert (a10.outcome, a10.ended_at, a10.next_call_at, a10.next_start_at) == (
        Outcome.FINISHED,
        at("10:07:00"),
        at("10:06:00"),
        at("10:07:30"),
    )
    assert s[(3, "A011")].outcome is Outcome.OPEN
    assert s[(3, "A011")].started_at == at("10:07:30")
    a12 = s[(4, "A012")]
    assert (a12.outcome, a12.ended_at) == (Outcome.INTERRUPTED, at("10:09:00"))
    assert a12.session_id == "gw1:10"  # the CL that opened it
    assert s[(4, "A013")].outcome is Outcome.OPEN
    # an end event whose call was never seen stands alone; the window's session stays open
    assert s[(3, "A012")].outcome is Outcome.FINISHED
    assert s[(3, "A012")].called_at is None
    # staff present from their first service event, without a login
    assert [(p.window, p.opened_by, p.start) for p in day.presence] == [
        (3, "activity", at("10:01:30")),
        (4, "activity", at("10:02:30")),
    ]
    # the same records handed over in another order give the same sessions
    assert build_sessions("H1", reversed(f.records)).sessions == day.sessions


def test_two_gateways_merge_by_time_and_keep_their_own_order() -> None:
    a, b = Feed("gwA"), Feed("gwB")
    a("09:00:00", "TK", ticket="A001", service="A")
    b("09:01:00", "CL", ticket="A001", window=5)
    b("09:01:20", "ST", ticket="A001", window=5, staff="000555")
    a("09:03:00", "FN", ticket="A001", window=5, staff="000555")
    day = build_sessions("H1", [*b.records, *a.records])
    (session,) = day.sessions
    assert (session.queued_at, session.called_at, session.ended_at) == (
        at("09:00:00"),
        at("09:01:00"),
        at("09:03:00"),
    )
