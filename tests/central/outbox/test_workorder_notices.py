"""差评 work-order notices on a real store: the assignee on assignment, the department leader
at escalation level 1 and the supervisor at level 2, each once however often the scan runs,
in Chinese, naming the order and its stage but nobody's phone or address."""

from __future__ import annotations

import datetime as dt
import logging

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from central.correlation import followups as store
from central.outbox import workorders
from central.outbox.config import OutboxConfig
from central.outbox.templates import render
from central.rules.followup import FollowUpConfig, open_item
from central.rules.workdays import BUSINESS_TZ, WorkCalendar
from central.store.schema_outbox import outbox

CAL = WorkCalendar()
PHONES = ("13800000001", "13800000003")


@pytest.fixture
def database_at_head() -> bool:
    return True  # a copy of the migrated template: no migration run per test


def t(month: int, day: int, hour: int = 10) -> dt.datetime:
    return dt.datetime(2026, month, day, hour, tzinfo=BUSINESS_TZ)


def test_who_hears_of_what() -> None:
    assert workorders.recipients("followup.assigned", None, "staff:1", "人社局") == ["staff:1"]
    assert workorders.recipients("followup.escalated", 1, "staff:1", "人社局") == ["leader:人社局"]
    assert workorders.recipients("followup.escalated", 1, None, None) == ["supervisor"]
    assert workorders.recipients("followup.escalated", 2, "staff:1", "人社局") == ["supervisor"]
    assert workorders.recipients("followup.verified", None, "staff:1", "人社局") == []


async def test_assignment_and_escalation_notices(
    engine: AsyncEngine, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="central")
    item, events = open_item(item_id="FU-gw9-7", evaluation_id="gw9:7", key=4,
                             created_at=t(9, 30), hall="H9", window="3", staff="000123",
                             calendar=CAL)  # fmt: skip
    async with engine.begin() as conn:
        await store.insert_order(conn, item, events, gateway="gw9", seq=7, evaluation_version=1,
                                 department="市场监管局", evaluated_at=t(9, 30, 9),
                                 now=t(9, 30))  # fmt: skip
        await store.transition(conn, item.item_id, "assign", at=t(9, 30, 11), actor="监察室",
                               calendar=CAL, assignee="staff:000200")  # fmt: skip
        # 核实 due Thu 10-08: level 1 on Fri 10-09, level 2 on Tue 10-13 (10-10 a 调休 workday)
        assert await store.escalate_all(conn, t(10, 13, 9), CAL, FollowUpConfig()) == 2
    config = OutboxConfig.model_validate(
        {
            "sms": {"url": "http://127.0.0.1:9/sms"},
            "email": {"host": "127.0.0.1", "from_addr": "hallwatch@example.cn"},
            "contacts": {
                "staff:000200": {"phone": PHONES[0]},
                "leader:市场监管局": {"email": "leader@example.cn"},
                "supervisor": {"phone": PHONES[1]},
            },
        }
    )
    since = t(9, 30) - dt.timedelta(minutes=1)
    assert await workorders.scan(engine, config, since) == 3
    assert await workorders.scan(engine, config, since) == 3  # offered again, stored once
    async with engine.connect() as conn:
        rows = (await conn.execute(select(outbox).order_by(outbox.c.id))).all()
    assert [(r.channel, r.kind, r.recipient) for r in rows] == [
        ("sms", "workorder.assigned", "staff:000200"),
        ("email", "workorder.escalated.leader", "leader:市场监管局"),
        ("sms", "workorder.escalated.supervisor", "supervisor"),
    ]
    assigned, leader, supervisor = (render(r.payload["event"], r.payload["params"]) for r in rows)
    assert "请于 2026-10-08 前完成核实" in assigned.text and "办理时限" in assigned.text
    assert "核实环节已超过期限 2026-10-08，升级督办（1 级）" in leader.text
    assert "（2 级）" in supervisor.text and supervisor.subject.startswith("【差评工单严重逾期】")
    text = caplog.text + repr([r.payload for r in rows])
    assert not any(p in text for p in PHONES) and "example.cn" not in text
