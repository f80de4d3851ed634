"""差评 work orders: the state machine, per-stage deadlines on the 2026 working-day calendar
(中秋 and National Day with their 调休 days), appeals and escalation.

The 2026 table (chinese-calendar): Fri 09-25 中秋 off, Sun 09-20 worked; 10-01 … 10-07 off,
Sat 10-10 worked. Order opened Wed 2026-09-30 10:00, the day before National Day:
- 核实 (1 working day, the opening day not counted): → Thu 10-08.
- verified Fri 10-09 (one day late); 整改 (5): 10-10(1, 调休 Saturday) 12(2) 13(3) 14(4)
  15(5) → Thu 10-15.
- rectified Thu 10-15 (on time); 回访 (15): 10-16(1) 19 20 21 22 23(6) 26 27 28 29 30(11)
  11-02(12) 03(13) 04(14) 05(15) → Thu 11-05.
Escalation of the 核实 stage (defaults 1, 4 working days after its due day 10-08): level 1
(department leader) on Fri 10-09, level 2 (supervisor) on 10-09(1) 10(2) 12(3) 13(4) → Tue 10-13.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

import pytest

from central.rules.followup import (
    AppealGround,
    CallBackAnswer,
    FollowUpConfig,
    FollowUpError,
    FollowUpEvent,
    FollowUpItem,
    FollowUpState,
    Stage,
    StageDays,
    appeal,
    assign,
    call_back,
    close,
    decide_appeal,
    escalate,
    escalation_level,
    escalation_target,
    open_item,
    overdue,
    rectify,
    verify,
)
from central.rules.scale import (
    DEFAULT_MAPPING,
    DeviceKey,
    KeyRule,
    MappingBook,
    MappingVersion,
    NationalLevel,
    Tag,
)
from central.rules.workdays import BUSINESS_TZ, WorkCalendar

CAL = WorkCalendar()
St = FollowUpState
OK = CallBackAnswer.SATISFIED


def t(month: int, day: int, hour: int = 10) -> dt.datetime:
    return dt.datetime(2026, month, day, hour, tzinfo=BUSINESS_TZ)


def new_item(
    key: int = 3,
    cfg: FollowUpConfig | None = None,
    created: dt.datetime | None = None,
    book: MappingBook | None = None,
) -> FollowUpItem:
    item, events = open_item(
        item_id="fu-1",
        evaluation_id="ev-9",
        key=key,
        created_at=created or t(9, 30),
        hall="H1",
        window="W2",
        staff="000123",
        case_no="c3",
        calendar=CAL,
        cfg=cfg or FollowUpConfig(),
        book=book or MappingBook(),
    )
    assert [(e.kind, e.state) for e in events] == [("followup.created", St.CREATED)]
    return item


def assigned() -> FollowUpItem:
    return assign(new_item(), at=t(9, 30, 11), actor="监察室", assignee="staff:000200")[0]


def test_every_bad_review_key_opens_an_order_and_good_ones_do_not() -> None:
    for key in (3, 4, 5, 6):
        item = new_item(key)
        assert item.reason is DeviceKey(key) and item.level is NationalLevel.DISSATISFIED
        assert item.tag is DEFAULT_MAPPING.keys[key].tag and item.mapping_version == "2019"
    for key in (1, 2):
        with pytest.raises(FollowUpError, match="not a bad review"):
            new_item(key)


def test_the_mapping_in_force_decides_what_opens_an_order() -> None:
    keys = dict(DEFAULT_MAPPING.keys)
    keys[6] = KeyRule(level=NationalLevel.BASICALLY_SATISFIED)  # 其他 is no longer 差评
    keys[3] = KeyRule(level=NationalLevel.VERY_DISSATISFIED, tag=Tag.ATTITUDE)
    later = MappingVersion(version="2026", effective_from=dt.date(2026, 9, 1), keys=keys)
    book = MappingBook([DEFAULT_MAPPING, later])
    assert new_item(3, book=book).level is NationalLevel.VERY_DISSATISFIED
    with pytest.raises(FollowUpError, match="基本满意 under mapping 2026"):
        new_item(6, book=book)
    # an evaluation before the change keeps the old mapping's rating
    old = new_item(6, created=t(8, 31), book=book)
    assert (old.level, old.mapping_version) == (NationalLevel.DISSATISFIED, "2019")


def test_stage_deadlines_across_the_2026_national_day_table() -> None:
    item = new_item()
    assert (item.stage, item.due, item.verify_due) == (Stage.VERIFY, *[dt.date(2026, 10, 8)] * 2)
    item, _ = assign(item, at=t(9, 30, 11), actor="监察室", assignee="staff:000200")
    assert overdue(item, t(10, 9)) and not overdue(item, t(10, 8, 17))
    item, events = verify(item, at=t(10, 9), actor="staff:000200", founded=True, calendar=CAL)
    assert events[0].stage is Stage.VERIFY  # the stage that ended
    assert (item.stage, item.rectify_due, item.due) == (Stage.RECTIFY, dt.date(2026, 10, 15),
                                                        dt.date(2026, 10, 15))  # fmt: skip
    item, _ = rectify(item, at=t(10, 15, 16), actor="staff:000200", calendar=CAL)
    assert (item.stage, item.call_back_due) == (Stage.CALL_BACK, dt.date(2026, 11, 5))
    # 中秋: opened Thu 09-24, 核实 due Mon 09-28 (Fri 09-25 off, then the weekend)
    assert new_item(created=t(9, 24)).due == dt.date(2026, 9, 28)
    # opened on the 调休 Sunday 09-20: the next working day counts
    assert new_item(created=t(9, 20)).due == dt.date(2026, 9, 21)


def test_stage_lengths_are_configurable_per_site_and_kept_on_the_order() -> None:
    cfg = FollowUpConfig(
        stage_workdays=StageDays(verify=2, rectify=3, call_back=5),
        hall_stage_workdays={"H9": StageDays(verify=4)},
    )
    item = new_item(cfg=cfg)
    assert item.due == dt.date(2026, 10, 9)  # 10-08(1) 09(2)
    item, _ = assign(item, at=t(10, 8), actor="a", assignee="b")
    item, _ = verify(item, at=t(10, 8), actor="b", founded=False, calendar=CAL)
    assert (item.stage, item.due) == (Stage.CALL_BACK, dt.date(2026, 10, 14))  # 09 10 12 13 14
    assert cfg.stages_for("H9") == StageDays(verify=4) and cfg.stages_for("H1").verify == 2


def test_the_full_path_with_the_citizens_answer() -> None:
    item = assigned()
    item, ev2 = verify(item, at=t(10, 8), actor="b", founded=True, calendar=CAL, note="属实")
    item, ev3 = rectify(item, at=t(10, 9), actor="b", calendar=CAL, note="窗口人员已培训")
    item, ev4 = call_back(item, at=t(10, 12), actor="监察室", answer=CallBackAnswer.BASICALLY)
    item, ev5 = close(item, at=t(10, 13, 16), actor="监察室")
    kinds = [e.kind for e in ev2 + ev3 + ev4 + ev5]
    assert kinds == ["followup.verified", "followup.rectified", "followup.called_back",
                     "followup.closed"]  # fmt: skip
    assert ev4[0].answer is CallBackAnswer.BASICALLY and item.answer is CallBackAnswer.BASICALLY
    assert item.state is St.CLOSED and item.closed_late is False and item.stage is Stage.DONE
    assert not overdue(item, t(12, 30))
    with pytest.raises(FollowUpError, match="已办结"):
        close(item, at=t(10, 14), actor="监察室")


def test_unfounded_review_skips_rectification() -> None:
    item, _ = verify(assigned(), at=t(10, 8), actor="b", founded=False, calendar=CAL)
    with pytest.raises(FollowUpError, match="不属实"):
        rectify(item, at=t(10, 8, 11), actor="b", calendar=CAL)
    item, events = call_back(item, at=t(10, 8, 15), actor="监察室", answer=OK)
    assert item.state is St.CALLED_BACK and events[0].kind == "followup.called_back"


def test_appeal_upheld_closes_the_order_as_excluded() -> None:
    with pytest.raises(FollowUpError, match="理由"):
        appeal(assigned(), at=t(10, 8), actor="h", ground=AppealGround.MALICIOUS, note=" ")
    sha = "a" * 64
    item, events = appeal(assigned(), at=t(10, 8), actor="hall_manager:王", note="录像：连按 6 次",
                          ground=AppealGround.MALICIOUS, evidence_sha256=sha)  # fmt: skip
    assert (events[0].kind, events[0].ground, events[0].evidence_sha256) == (
        "followup.appealed", AppealGround.MALICIOUS, sha)  # fmt: skip
    assert item.stage is Stage.APPEAL and not overdue(item, t(12, 30))
    assert escalate(item, t(12, 30), CAL) == (item, [])  # waits on the supervisor, not the hall
    with pytest.raises(FollowUpError, match="申诉待审"):
        close(item, at=t(10, 9), actor="h")
    with pytest.raises(FollowUpError, match="cannot go to rectified"):
        rectify(item, at=t(10, 9), actor="h", calendar=CAL)
    done, events = decide_appeal(item, at=t(10, 12), actor="supervisor:李", upheld=True,
                                 calendar=CAL, note="录像属实")  # fmt: skip
    assert [(e.kind, e.actor, e.at) for e in events] == [
        ("followup.appeal_upheld", "supervisor:李", t(10, 12))
    ]
    assert done.state is St.CLOSED and done.excluded and done.appeal_upheld is True
    assert done.closed_late is False
    with pytest.raises(FollowUpError, match="没有待审的申诉"):
        decide_appeal(done, at=t(10, 13), actor="s", upheld=False, calendar=CAL)


def test_appeal_rejected_goes_back_to_rectify_with_a_fresh_deadline() -> None:
    item, _ = appeal(assigned(), at=t(10, 8), actor="h", ground=AppealGround.MISJUDGED, note="误按")
    item, events = decide_appeal(item, at=t(10, 12), actor="s", upheld=False, calendar=CAL)
    assert events[0].kind == "followup.appeal_rejected" and events[0].state is St.VERIFIED
    assert (item.stage, item.founded, item.excluded) == (Stage.RECTIFY, True, False)
    assert item.rectify_due == dt.date(2026, 10, 19)  # 10-13(1) 14 15 16 19(5)
    item, _ = rectify(item, at=t(10, 19), actor="h", calendar=CAL)
    assert item.state is St.RECTIFIED


@pytest.mark.parametrize(
    ("steps_done", "attempt", "message"),
    [
        (0, "verify", "不能转为「已核实」"),  # verify before assignment
        (0, "close", "下一步只能是：已分派"),
        (1, "rectify", "cannot go to rectified"),
        (2, "call_back", "须先整改再回访"),  # founded: must rectify first
        (3, "close", "allowed next: called_back"),
        (2, "appeal", "不能转为「申诉待审」"),  # appeals belong to 核实
    ],
)
def test_invalid_transitions_are_refused(steps_done: int, attempt: str, message: str) -> None:
    item = new_item()
    path: list[Callable[[FollowUpItem], tuple[FollowUpItem, list[FollowUpEvent]]]] = [
        lambda i: assign(i, at=t(10, 8), actor="a", assignee="b"),
        lambda i: verify(i, at=t(10, 8), actor="b", founded=True, calendar=CAL),
        lambda i: rectify(i, at=t(10, 8), actor="b", calendar=CAL),
    ]
    for step in path[:steps_done]:
        item, _ = step(item)
    actions = {
        "verify": lambda: verify(item, at=t(10, 9), actor="b", founded=True, calendar=CAL),
        "rectify": lambda: rectify(item, at=t(10, 9), actor="b", calendar=CAL),
        "call_back": lambda: call_back(item, at=t(10, 9), actor="b", answer=OK),
        "close": lambda: close(item, at=t(10, 9), actor="b"),
        "appeal": lambda: appeal(
            item, at=t(10, 9), actor="b", ground=AppealGround.MISJUDGED, note="x"
        ),
    }
    before = item
    with pytest.raises(FollowUpError, match=message):
        actions[attempt]()
    assert item == before  # nothing changed


def test_steps_cannot_go_back_in_time() -> None:
    item, _ = assign(new_item(), at=t(10, 8), actor="a", assignee="b")
    with pytest.raises(FollowUpError, match="earlier"):
        verify(item, at=t(9, 30, 11), actor="b", founded=True, calendar=CAL)


def test_overdue_and_escalation_levels_of_the_verify_stage() -> None:
    item = new_item()  # 核实 due Thu 10-08
    table = [  # (day, overdue, level) worked out by hand in the module docstring above
        ((10, 8), False, 0),
        ((10, 9), True, 1),
        ((10, 10), True, 1),  # the 调休 Saturday is a working day, but only the 2nd
        ((10, 11), True, 1),
        ((10, 12), True, 1),
        ((10, 13), True, 2),
        ((10, 30), True, 2),  # no level 3 by default
    ]
    for (m, d), is_overdue, level in table:
        now = t(m, d, 9)
        assert overdue(item, now) is is_overdue, (m, d)
        assert escalation_level(item, now, CAL) == level, (m, d)
    assert (escalation_target(1), escalation_target(2)) == ("leader", "supervisor")


def test_escalate_returns_each_level_once_and_a_new_stage_starts_again() -> None:
    item = new_item()
    item, events = escalate(item, t(10, 8, 17), CAL)
    assert events == []
    item, events = escalate(item, t(10, 9, 8), CAL)
    assert [(e.kind, e.level, e.stage, e.at) for e in events] == [
        ("followup.escalated", 1, Stage.VERIFY, dt.datetime(2026, 10, 9, tzinfo=BUSINESS_TZ))
    ]
    item, again = escalate(item, t(10, 9, 15), CAL)
    assert again == [] and item.escalation_level == 1
    # a gateway cut off for a week: both levels come at once, each dated when it fell due
    late, events = escalate(new_item(), t(10, 21), CAL)
    assert [(e.level, e.at.date()) for e in events] == [
        (1, dt.date(2026, 10, 9)),
        (2, dt.date(2026, 10, 13)),
    ]
    assert late.escalation_level == 2
    # the 整改 stage (due 10-15) starts at level 0 and escalates on its own due day
    item, _ = assign(item, at=t(10, 9, 9), actor="a", assignee="b")
    item, _ = verify(item, at=t(10, 9, 10), actor="b", founded=True, calendar=CAL)
    assert item.escalation_level == 0 and escalate(item, t(10, 15), CAL)[1] == []
    item, events = escalate(item, t(10, 16), CAL)
    assert [(e.level, e.stage) for e in events] == [(1, Stage.RECTIFY)]


def test_config_validation() -> None:
    with pytest.raises(ValueError, match="escalate_after"):
        FollowUpConfig(escalate_after=(4, 1))
    with pytest.raises(ValueError):
        StageDays(verify=0)
    cfg = FollowUpConfig(stage_workdays=StageDays(verify=3), escalate_after=(1, 2, 3))
    item = new_item(cfg=cfg)  # 10-08 09 10 → due Sat 10-10 (调休)
    assert item.due == dt.date(2026, 10, 10)
    assert escalation_level(item, t(10, 14), CAL, cfg) == 3  # 10-12(1) 13(2) 14(3)


def test_a_site_config_from_before_work_orders_is_refused_naming_the_stages() -> None:
    with pytest.raises(ValueError, match=r"stage_workdays.*核实 / 整改 / 回访"):
        FollowUpConfig.model_validate({"due_workdays": 5})
