"""Complaint rules without a store: what the form accepts, deadlines across the 2026 National
Day 调休, the state machine, escalation, the indicators' arithmetic and the public form's brake."""

from __future__ import annotations

import datetime as dt
from types import SimpleNamespace

import pytest
from pydantic import ValidationError

from central.complaints.model import (
    MAX_TEXT,
    ComplaintError,
    ComplaintIn,
    ComplaintsConfig,
    ComplaintState,
    deadlines,
    escalation_level,
    is_mobile,
    mask_phone,
    next_state,
)
from central.complaints.ratelimit import IntakeLimiter
from central.complaints.stats import summarise
from central.rules.workdays import WorkCalendar

CALENDAR = WorkCalendar()
DEFAULTS = ComplaintsConfig()


def _errors(**fields: object) -> set[str]:
    with pytest.raises(ValidationError) as caught:
        ComplaintIn.model_validate({"text": "窗口工作人员态度恶劣", **fields})
    return {str(e["loc"][0]) if e["loc"] else "" for e in caught.value.errors()}


def test_hostile_and_malformed_input_is_refused_field_by_field() -> None:
    assert _errors(text="x" * (MAX_TEXT + 1)) == {"text"}
    assert _errors(text="短") == {"text"}
    assert _errors(text="态度很差\x00\x1b[2J") == {"text"}  # control characters
    assert _errors(phone="138-1234-5678x") == {"phone"}
    assert _errors(phone="12345678901") == {"phone"}  # no such mobile prefix
    assert _errors(phone="<script>") == {"phone"}
    assert _errors(staff_number="12345") == {"staff_number"}
    assert _errors(case_no="SJ-001<img src=x>") == {"case_no"}
    assert _errors(hall="H1/../H2") == {"hall"}
    assert _errors(window=0) == {"window"}
    assert _errors(staff_name="王\n芳") == {"staff_name"}
    assert _errors(name="n" * 33) == {"name"}
    assert _errors(unexpected="x") == {"unexpected"}
    assert _errors(consent=True) == {""}  # consent without a phone
    assert _errors(day=(dt.date.today() + dt.timedelta(days=3)).isoformat()) == {""}


def test_markup_is_kept_as_text_for_escaping_and_good_input_passes() -> None:
    hostile = "<script>alert('x')</script> 窗口让我等了三个小时 & 没有解释"
    given = ComplaintIn.model_validate(
        {"text": f"  {hostile}\n", "phone": "13812345678", "consent": True, "window": "3"}
    )
    assert given.text == hostile and given.window == 3
    assert ComplaintIn.model_validate({"text": "电话打不通啊", "phone": "0571-87654321"}).phone
    assert is_mobile("13812345678") and not is_mobile("0571-87654321") and not is_mobile(None)
    assert mask_phone("13812345678") == "138****5678"


@pytest.mark.parametrize(
    ("received", "ack_due", "reply_due"),
    [
        # Wed 30 Sep: 1–7 Oct off (国庆 + 中秋), Sat 10 Oct a working day (调休)
        (dt.date(2026, 9, 30), dt.date(2026, 10, 8), dt.date(2026, 10, 13)),
        # received on the holiday itself: the same working days follow (8, 9, 10, 12, 13)
        (dt.date(2026, 10, 3), dt.date(2026, 10, 8), dt.date(2026, 10, 13)),
        # Fri 9 Oct: the 调休 Saturday counts, Sunday does not (10, 12, 13, 14, 15)
        (dt.date(2026, 10, 9), dt.date(2026, 10, 10), dt.date(2026, 10, 15)),
    ],
)
def test_deadlines_across_the_2026_national_day(
    received: dt.date, ack_due: dt.date, reply_due: dt.date
) -> None:
    found = deadlines(CALENDAR, received, DEFAULTS)
    assert (found.ack_due, found.reply_due) == (ack_due, reply_due)
    longer = deadlines(CALENDAR, received, ComplaintsConfig(ack_days=2, reply_days=10))
    assert longer.reply_due > reply_due


def test_states_move_only_along_the_process() -> None:
    s = ComplaintState
    assert next_state(s.PENDING, "accept") is s.ACCEPTED
    assert next_state(s.PENDING, "reject") is s.REJECTED
    assert next_state(s.ACCEPTED, "reply") is s.REPLIED
    assert next_state(s.HANDLING, "reply") is s.REPLIED
    assert next_state(s.REPLIED, "close") is s.CLOSED
    for state, action in ((s.PENDING, "reply"), (s.CLOSED, "accept"), (s.ACCEPTED, "reject")):
        with pytest.raises(ComplaintError, match="不能执行"):
            next_state(state, action)
    assert [x.label for x in s] == ["待受理", "已受理", "办理中", "已答复", "已办结", "不予受理"]


def test_escalation_levels_count_working_days_past_the_deadline() -> None:
    due = deadlines(CALENDAR, dt.date(2026, 9, 30), DEFAULTS)  # ack 8 Oct, reply 13 Oct

    def level(state: ComplaintState, today: dt.date) -> int:
        return escalation_level(CALENDAR, state, due, today, DEFAULTS)

    assert level(ComplaintState.PENDING, dt.date(2026, 10, 8)) == 0
    assert level(ComplaintState.PENDING, dt.date(2026, 10, 9)) == 1  # not acknowledged
    assert level(ComplaintState.ACCEPTED, dt.date(2026, 10, 9)) == 0
    assert level(ComplaintState.HANDLING, dt.date(2026, 10, 14)) == 1
    assert level(ComplaintState.HANDLING, dt.date(2026, 10, 15)) == 1  # 2 working days late
    assert level(ComplaintState.HANDLING, dt.date(2026, 10, 16)) == 2  # 3: 督办
    assert level(ComplaintState.REPLIED, dt.date(2026, 12, 1)) == 0


def test_on_time_rate_by_hand() -> None:
    today = dt.date(2026, 10, 20)

    def row(hall: str, state: str, due: dt.date, replied: dt.date | None = None) -> object:
        return SimpleNamespace(hall_id=hall, state=state, reply_due=due, replied_on=replied)

    rows = [
        row("H1", "closed", dt.date(2026, 10, 13), dt.date(2026, 10, 12)),  # on time
        row("H1", "replied", dt.date(2026, 10, 13), dt.date(2026, 10, 14)),  # late
        row("H1", "handling", dt.date(2026, 10, 16)),  # overdue: due, not on time
        row("H1", "accepted", dt.date(2026, 10, 23)),  # not due yet: in neither
        row("H1", "rejected", dt.date(2026, 10, 13)),  # 不予受理: counted, never due
        row("H2", "replied", dt.date(2026, 10, 23), dt.date(2026, 10, 19)),  # early
    ]
    by_hall = {s.group: s for s in summarise(rows, today, lambda r: r.hall_id)}
    h1 = by_hall["H1"]
    assert (h1.received, h1.rejected, h1.open, h1.overdue, h1.due, h1.on_time) == (
        5, 1, 2, 1, 3, 1,
    )  # fmt: skip
    assert h1.on_time_rate == pytest.approx(1 / 3)
    assert by_hall["H2"].on_time_rate == 1.0


def test_the_brake_limits_each_address_and_everyone() -> None:
    now = [0.0]
    brake = IntakeLimiter(per_address_per_hour=2, global_per_minute=3, clock=lambda: now[0])
    assert brake.admit("10.0.0.1") is None and brake.admit("10.0.0.1") is None
    assert brake.admit("10.0.0.1") == "address"
    assert 3500 <= brake.retry_after("10.0.0.1", "address") <= 3601
    assert brake.admit("10.0.0.2") is None
    assert brake.admit("10.0.0.3") == "global"  # three in this minute from everyone
    now[0] = 61.0
    assert brake.admit("10.0.0.3") is None
    assert brake.admit("10.0.0.1") == "address"  # still within its hour
    now[0] = 3601.0
    assert brake.admit("10.0.0.1") is None


def test_the_brake_counts_an_ipv6_subscriber_once_whatever_address_it_picks() -> None:
    # one subscriber is given a whole /64 and may use any address in it
    brake = IntakeLimiter(per_address_per_hour=2, global_per_minute=100, clock=lambda: 0.0)
    assert brake.admit("2001:db8:1:2::1") is None
    assert brake.admit("2001:db8:1:2:abcd::99") is None
    assert brake.admit("2001:db8:1:2:ffff:ffff:ffff:fffe") == "address"
    assert 3500 <= brake.retry_after("2001:db8:1:2::7", "address") <= 3601
    assert brake.admit("2001:db8:1:3::1") is None  # the next /64 is someone else
    # an IPv4 client written as IPv4-mapped IPv6 is the same client
    assert brake.admit("192.0.2.7") is None and brake.admit("::ffff:192.0.2.7") is None
    assert brake.admit("192.0.2.7") == "address"
    assert brake.admit("?") is None  # no address known: still counted, not a crash
