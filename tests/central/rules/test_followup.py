"""Bad-review follow-up: the state machine, due dates on the working-day calendar, escalation.

Created Wed 2026-09-30 10:00, the day before National Day. Due (5 working days, the creation
day not counted): 10-08(1) 10-09(2) 10-10(3, 调休 Saturday) 10-12(4) 10-13(5) → Tue 10-13.
Escalation (defaults 1, 4 working days after the due day): level 1 on Wed 10-14, level 2 on
10-14(1) 15(2) 16(3) 19(4) → Mon 10-19.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Callable

import pytest

from central.rules.followup import (
    FollowUpConfig,
    FollowUpError,
    FollowUpEvent,
    FollowUpItem,
    FollowUpState,
    assign,
    call_back,
    close,
    escalate,
    escalation_level,
    open_item,
    overdue,
    rectify,
    verify,
)
from central.rules.scale import DeviceKey
from central.rules.workdays import BUSINESS_TZ, WorkCalendar

CAL = WorkCalendar()
St = FollowUpState


def t(month: int, day: int, hour: int = 10) -> dt.datetime:
    return dt.datetime(2026, month, day, hour, tzinfo=BUSINESS_TZ)


def new_item(key: int = 3, cfg: FollowUpConfig | None = None) -> FollowUpItem:
    item, events = open_item(
        item_id="fu-1",
        evaluation_id="ev-9",
        key=key,
        created_at=t(9, 30),
        hall="H1",
        window="W2",
        staff="000123",
        case_no="c3",
        calendar=CAL,
        **({"cfg": cfg} if cfg else {}),
    )
    assert [(e.kind, e.state) for e in events] == [("followup.created", St.CREATED)]
    return item


def test_every_bad_review_key_opens_an_item_and_good_ones_do_not() -> None:
    for key in (3, 4, 5, 6):
        assert new_item(key).reason is DeviceKey(key)
    for key in (1, 2):
        with pytest.raises(FollowUpError, match="not a bad review"):
            new_item(key)


def test_due_date_counts_working_days_over_the_holiday() -> None:
    assert new_item().due == dt.date(2026, 10, 13)
    assert new_item(cfg=FollowUpConfig(due_workdays=1)).due == dt.date(2026, 10, 8)


def test_the_full_path() -> None:
    item = new_item()
    item, ev1 = assign(item, at=t(9, 30, 11), actor="监察室", assignee="人社局联络员")
    item, ev2 = verify(item, at=t(10, 8), actor="人社局联络员", founded=True, note="属实")
    item, ev3 = rectify(item, at=t(10, 9), actor="人社局联络员", note="窗口人员已培训")
    item, ev4 = call_back(item, at=t(10, 12), actor="监察室", note="群众表示满意")
    item, ev5 = close(item, at=t(10, 13, 16), actor="监察室")
    kinds = [e.kind for e in ev1 + ev2 + ev3 + ev4 + ev5]
    assert kinds == ["followup.assigned", "followup.verified", "followup.rectified",
                     "followup.called_back", "followup.closed"]  # fmt: skip
    assert ev1[0].assignee == "人社局联络员" and ev2[0].founded is True
    assert item.state is St.CLOSED and item.closed_late is False  # closed on its due day
    assert not overdue(item, t(10, 30))
    with pytest.raises(FollowUpError, match="已办结"):
        close(item, at=t(10, 14), actor="监察室")


def test_unfounded_review_skips_rectification() -> None:
    item, _ = assign(new_item(), at=t(9, 30, 11), actor="监察室", assignee="联络员")
    item, _ = verify(item, at=t(10, 8), actor="联络员", founded=False, note="经核实不属实")
    with pytest.raises(FollowUpError, match="不属实"):
        rectify(item, at=t(10, 8, 11), actor="联络员")
    item, events = call_back(item, at=t(10, 8, 15), actor="监察室")
    assert item.state is St.CALLED_BACK and events[0].kind == "followup.called_back"


@pytest.mark.parametrize(
    ("steps_done", "attempt", "message"),
    [
        (0, "verify", "不能转为「已核实」"),  # verify before assignment
        (0, "close", "下一步只能是：已分派"),
        (1, "rectify", "cannot go to rectified"),
        (2, "call_back", "须先整改再回访"),  # founded: must rectify first
        (3, "close", "allowed next: called_back"),
    ],
)
def test_invalid_transitions_are_refused(steps_done: int, attempt: str, message: str) -> None:
    item = new_item()
    path: list[Callable[[FollowUpItem], tuple[FollowUpItem, list[FollowUpEvent]]]] = [
        lambda i: assign(i, at=t(10, 8), actor="a", assignee="b"),
        lambda i: verify(i, at=t(10, 8), actor="b", founded=True),
        lambda i: rectify(i, at=t(10, 8), actor="b"),
    ]
    for step in path[:steps_done]:
        item, _ = step(item)
    actions = {
        "verify": lambda: verify(item, at=t(10, 9), actor="b", founded=True),
        "rectify": lambda: rectify(item, at=t(10, 9), actor="b"),
        "call_back": lambda: call_back(item, at=t(10, 9), actor="b"),
        "close": lambda: close(item, at=t(10, 9), actor="b"),
    }
    before = item
    with pytest.raises(FollowUpError, match=message):
        actions[attempt]()
    assert item == before  # nothing changed


def test_steps_cannot_go_back_in_time() -> None:
    item, _ = assign(new_item(), at=t(10, 8), actor="a", assignee="b")
    with pytest.raises(FollowUpError, match="earlier"):
        verify(item, at=t(9, 30, 11), actor="b", founded=True)


def test_overdue_and_escalation_levels() -> None:
    item = new_item()  # due Tue 10-13
    table = [  # (day, overdue, level) worked out by hand in the module docstring above
        ((10, 13), False, 0),
        ((10, 14), True, 1),
        ((10, 16), True, 1),
        ((10, 17), True, 1),  # Saturday: no new level
        ((10, 18), True, 1),
        ((10, 19), True, 2),
        ((10, 30), True, 2),  # no level 3 by default
    ]
    for (m, d), is_overdue, level in table:
        now = t(m, d, 9)
        assert overdue(item, now) is is_overdue, (m, d)
        assert escalation_level(item, now, CAL) == level, (m, d)


def test_a_weekend_after_the_due_day_is_overdue_before_it_escalates() -> None:
    assert new_item(cfg=FollowUpConfig(due_workdays=4)).due == dt.date(2026, 10, 12)
    item = dataclasses.replace(new_item(), due=dt.date(2026, 10, 16))  # due on a Friday
    assert overdue(item, t(10, 17)) and escalation_level(item, t(10, 17), CAL) == 0
    assert escalation_level(item, t(10, 19), CAL) == 1


def test_escalate_returns_each_level_once() -> None:
    item = new_item()
    item, events = escalate(item, t(10, 13, 17), CAL)
    assert events == []
    item, events = escalate(item, t(10, 14, 8), CAL)
    assert [(e.kind, e.level, e.at) for e in events] == [
        ("followup.escalated", 1, dt.datetime(2026, 10, 14, tzinfo=BUSINESS_TZ))
    ]
    item, again = escalate(item, t(10, 15), CAL)
    assert again == [] and item.escalation_level == 1
    # a gateway cut off for a week: both levels come at once, each dated when it fell due
    late, events = escalate(new_item(), t(10, 21), CAL)
    assert [(e.level, e.at.date()) for e in events] == [
        (1, dt.date(2026, 10, 14)),
        (2, dt.date(2026, 10, 19)),
    ]
    assert late.escalation_level == 2
    # closing stops escalation; closing after the due day is late
    item, _ = assign(item, at=t(10, 15), actor="a", assignee="b")
    item, _ = verify(item, at=t(10, 15), actor="b", founded=False)
    item, _ = call_back(item, at=t(10, 15), actor="a")
    item, _ = close(item, at=t(10, 15, 11), actor="a")
    assert item.closed_late is True
    assert escalate(item, t(10, 30), CAL) == (item, [])


def test_config_validation() -> None:
    with pytest.raises(ValueError, match="escalate_after"):
        FollowUpConfig(escalate_after=(4, 1))
    with pytest.raises(ValueError):
        FollowUpConfig(due_workdays=0)
    cfg = FollowUpConfig(due_workdays=3, escalate_after=(1, 2, 3))
    item = new_item(cfg=cfg)  # 10-08 09 10 → due Sat 10-10 (调休)
    assert item.due == dt.date(2026, 10, 10)
    assert escalation_level(item, t(10, 14), CAL, cfg) == 3  # 10-12(1) 13(2) 14(3)
