"""Complaints over the real app and store (SQLite and PostgreSQL): the public form with hostile
input and its brake, routing to the department that owns the case or the window, each role's
scope, the reply sent back by SMS through the outbox to the fake gateway (or read on the status
page), escalation of overdue complaints, and the indicators."""

from __future__ import annotations

import asyncio
import datetime as dt
import re
import time
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from central.complaints import escalation
from central.complaints.model import ComplaintsConfig
from central.complaints.ratelimit import IntakeLimiter
from central.outbox.config import OutboxConfig, QuietHours, SmsTarget
from central.outbox.worker import Deliverer
from central.security.tokens import Role
from central.store.schema_outbox import outbox
from tests.central.outbox.fakes import FakeReceiver, serve
from tests.central.web.conftest import BASE, Site
from tests.central.web.seed import BEIJING, MARKET, SOCIAL

PHONE = "13912345678"


def _receipt(html: str) -> tuple[str, str]:
    number = re.search(r'id="receipt-number">([^<]+)<', html)
    code = re.search(r'id="receipt-code">([^<]+)<', html)
    assert number and code, html
    return number.group(1), code.group(1)


async def _submit(c: httpx.AsyncClient, **fields: Any) -> httpx.Response:
    return await c.post("/complaint", data={"text": "窗口工作人员态度很差", **fields})


# the form's validation, escaping and brake do not depend on the store: SQLite alone
@pytest.mark.parametrize("seeded_site_url", ["sqlite"], indirect=True)
async def test_public_form_refuses_hostile_input_escapes_markup_and_brakes(site: Site) -> None:
    site.app.state.complaint_limiter = IntakeLimiter(per_address_per_hour=4, global_per_minute=50)
    async with site.client() as c:
        form = await c.get("/complaint")
        assert form.status_code == 200 and "网上投诉" in form.text and 'name="text"' in form.text
        bad = await _submit(c, phone="1381234", staff_number="12a", text="短")
        assert bad.status_code == 422
        errors = re.findall(r"<li>([^<]+)</li>", bad.text)
        assert any(e.startswith("联系电话：") for e in errors), errors
        assert any(e.startswith("投诉内容：过短") for e in errors), errors
        huge = await c.post("/complaint", data={"text": "长" * 20_000})
        assert huge.status_code == 413
        hostile = '<script>alert(1)</script><img src=x onerror=alert(2)> 等了三小时 "&"'
        made = await _submit(c, text=hostile, hall="H2")
        assert made.status_code == 200, made.text
        number, code = _receipt(made.text)
        shown = await c.post("/complaint/status", data={"number": number, "code": code})
        assert shown.status_code == 200
        assert "<script>alert(1)" not in shown.text and "<img src=x" not in shown.text
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in shown.text
        assert 'id="status-state">待受理<' in shown.text
        wrong = await c.post("/complaint/status", data={"number": number, "code": "AAAAAAAA"})
        assert wrong.status_code == 404 and "不正确" in wrong.text
        limited = await _submit(c)
        assert limited.status_code == 429, limited.text
        assert "太频繁" in limited.text and int(limited.headers["Retry-After"]) > 0
    site.app.state.complaint_limiter = IntakeLimiter(per_address_per_hour=100, global_per_minute=1)
    async with site.client() as c:
        assert (await _submit(c)).status_code == 200
        crowded = await _submit(c)
        assert crowded.status_code == 429 and "较多" in crowded.text


async def _enter(c: httpx.AsyncClient, headers: dict[str, str], **fields: Any) -> dict[str, Any]:
    body = {"text": "办事时工作人员推诿", "channel": "phone", **fields}
    made = await c.post("/api/v1/complaints", json=body, headers=headers)
    assert made.status_code == 201, made.text
    return made.json()  # type: ignore[no-any-return]


async def _numbers(c: httpx.AsyncClient, headers: dict[str, str], **query: str) -> set[str]:
    found = await c.get("/api/v1/complaints", params=query, headers=headers)
    assert found.status_code == 200, found.text
    doc = found.json()
    assert doc["count"] == len(doc["items"])
    return {i["complaint_no"] for i in doc["items"]}


async def test_routing_scope_reply_by_sms_and_escalation(site: Site) -> None:
    async with site.client() as c:
        sup = await site.bearer(Role.SUPERVISOR, label="监察室")
        leader = await site.bearer(Role.DEPARTMENT_LEADER, department=MARKET, label="市场")
        h2 = await site.bearer(Role.HALL_MANAGER, hall="H2")
        tech = await site.bearer(Role.TECHNICIAN)
        # tied by the case number: hall, window, staff and department from the case
        by_case = await _enter(c, sup, case_no="SJ-003", phone=PHONE, consent=True)
        tied = by_case["complaint"]
        assert (tied["hall"], tied["window"], tied["staff"], tied["department"]) == (
            "H1", 2, "100232", MARKET,
        )  # fmt: skip
        assert tied["phone_masked"] == "139****5678" and PHONE not in str(by_case)
        # window 3 of H1: the roster inferred from its cases gives 人社局 and the staff on duty
        by_window = (await _enter(c, sup, hall="H1", window=3, channel="counter"))["complaint"]
        assert (by_window["department"], by_window["staff"]) == (SOCIAL, "100241")
        # an unknown case number and no hall: the supervisors' triage queue
        triage = (await _enter(c, sup, case_no="NO-SUCH-1"))["complaint"]
        assert triage["department"] is None and triage["case_no"] is None
        assert triage["case_ref"] == "NO-SUCH-1"
        on_h2 = (await _enter(c, h2, hall="H2", window=1))["complaint"]
        every = {by_case["complaint_no"], by_window["complaint_no"], triage["complaint_no"]}
        every |= {on_h2["complaint_no"]}

        assert await _numbers(c, sup) == every
        assert await _numbers(c, sup, triage="true") == {triage["complaint_no"]}
        assert await _numbers(c, leader) == {by_case["complaint_no"]}
        assert await _numbers(c, h2) == {on_h2["complaint_no"]}
        assert await _numbers(c, sup, case_no="SJ-003") == {by_case["complaint_no"]}
        assert await _numbers(c, sup, hall="H1", staff="100241") == {by_window["complaint_no"]}
        assert (await c.get("/api/v1/complaints", headers=tech)).status_code == 403
        hidden = await c.get(f"/api/v1/complaints/{by_case['complaint_no']}", headers=h2)
        assert hidden.status_code == 404

        # 归口: supervisors only; the leader then sees it
        path = f"/api/v1/complaints/{triage['complaint_no']}"
        for other in (leader, h2):
            refused = await c.post(f"{path}/route", json={"department": MARKET}, headers=other)
            assert refused.status_code == 403
        routed = await c.post(f"{path}/route", json={"department": MARKET}, headers=sup)
        assert routed.status_code == 200 and routed.json()["complaint"]["department"] == MARKET
        assert triage["complaint_no"] in await _numbers(c, leader)

        # the leader's department handles it: 受理 → 答复 (SMS where consented) → 办结
        case_path = f"/api/v1/complaints/{by_case['complaint_no']}"
        early = await c.post(f"{case_path}/reply", json={"note": "已核实"}, headers=leader)
        assert early.status_code == 409 and "待受理" in early.json()["detail"]
        for action, note in (("accept", ""), ("handle", "核实中"), ("reply", "已批评教育，致歉")):
            done = await c.post(f"{case_path}/{action}", json={"note": note}, headers=leader)
            assert done.status_code == 200, done.text
        detail = done.json()
        assert detail["complaint"]["state"] == "replied" and detail["complaint"]["on_time"]
        assert [e["action"] for e in detail["events"]] == [
            "received", "accept", "handle", "reply",
        ]  # fmt: skip
        # no consent, no SMS: the reply waits on the status page
        win_path = f"/api/v1/complaints/{by_window['complaint_no']}"
        for action, note in (("accept", ""), ("reply", "窗口已整改")):
            assert (
                await c.post(f"{win_path}/{action}", json={"note": note}, headers=sup)
            ).is_success

    async with site.engine.connect() as conn:
        rows = (await conn.execute(select(outbox))).all()
    assert [(r.channel, r.kind, r.recipient) for r in rows] == [
        ("sms", "complaint.replied", f"complainant:{by_case['complaint_no']}")
    ]
    fake = FakeReceiver(["500"])  # the gateway fails once: the retry delivers it
    with serve(fake) as url:
        config = OutboxConfig(
            sms=SmsTarget(url=url, template_id="T9"),
            backoff_s=0.05,
            quiet_hours=QuietHours(start=dt.time(0), end=dt.time(0)),  # whenever the test runs
        )
        deliverer = Deliverer(site.engine, config, worker="w")
        deadline = time.monotonic() + 30
        while not fake.accepted and time.monotonic() < deadline:
            await deliverer.run_once()
            await asyncio.sleep(0.05)
        await deliverer.adapters["sms"].close()
    assert sum(fake.seen.values()) == 2  # the failure, then the delivery
    (body,) = fake.accepted.values()
    assert body["phone"] == PHONE and body["params"]["reply"] == "已批评教育，致歉"
    assert body["params"]["complaint_no"] == by_case["complaint_no"]
    async with site.engine.connect() as conn:
        (sent,) = (await conn.execute(select(outbox))).all()
    assert sent.status == "delivered" and PHONE not in str(sent.payload)

    # closing erases the number; later, the still-open ones escalate once per level
    async with site.client() as c:
        closed = await c.post(f"{case_path}/close", json={"note": ""}, headers=sup)
        assert closed.json()["complaint"]["phone_masked"] == "139****5678"
        rules = ComplaintsConfig()
        contacts = OutboxConfig.model_validate(
            {
                "webhook": {"url": "http://127.0.0.1:9/hook"},
                "contacts": {"leader:人社局": {"phone": "13800000003"}},
            }
        )
        later = dt.datetime.now(dt.UTC) + dt.timedelta(days=30)
        for _ in range(2):
            await escalation.scan(site.engine, site.calendar, rules, contacts, later)
        levels = {
            i["complaint_no"]: i["escalation_level"]
            for i in (await c.get("/api/v1/complaints", headers=sup)).json()["items"]
        }
        assert levels == {
            by_case["complaint_no"]: 0,
            by_window["complaint_no"]: 0,  # replied in time
            triage["complaint_no"]: 2,
            on_h2["complaint_no"]: 2,
        }
        stats = await c.get("/api/v1/complaints/stats", params={"group": "department"}, headers=sup)
        by_department = {s["group"]: s for s in stats.json()}
        assert by_department[MARKET]["received"] == 2 and by_department[MARKET]["on_time"] == 1
        assert by_department[SOCIAL]["on_time_rate"] == 1.0
        month = dt.datetime.now(dt.UTC).astimezone(BEIJING).strftime("%Y-%m")
        csv = await c.get(
            "/api/v1/bulletin.csv", params={"month": month, "part": "complaints"}, headers=sup
        )
        assert csv.status_code == 200, csv.text
        lines = {r.split(",")[0]: r.split(",") for r in csv.text.lstrip("\ufeff").splitlines()}
        assert lines[MARKET][1:3] == ["2", "0"] and lines[SOCIAL][-1] == "100.0%"
    async with site.engine.connect() as conn:
        raw = (await conn.execute(select(outbox.c.kind, outbox.c.recipient))).all()
    assert (
        sorted(r.kind for r in raw if r.kind.startswith("complaint.escalated"))
        == ["complaint.escalated"] * 2
    )  # the webhook, once for each escalated complaint


# a NUL reaches PostgreSQL's text comparison (SQLite compares it happily): PostgreSQL alone
@pytest.mark.parametrize("seeded_site_url", ["postgresql"], indirect=True)
async def test_status_lookup_with_a_malformed_number_is_not_found_not_a_crash(site: Site) -> None:
    transport = httpx.ASGITransport(app=site.app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url=BASE) as c:
        for number in ("TS2026\x001234", "' OR 1=1 --", ""):
            found = await c.post("/complaint/status", data={"number": number, "code": "AAAAAAAA"})
            assert found.status_code == 404, (number, found.status_code)
            assert "不正确" in found.text


@pytest.mark.parametrize("seeded_site_url", ["sqlite"], indirect=True)
async def test_a_complaint_entered_for_another_scope_answers_with_its_receipt_alone(
    site: Site,
) -> None:
    # a hall manager of H2 naming H1's case: the complaint is tied to H1 and 市场监管局, and the
    # answer must not tell H2 whose case that is (hall, window, staff, department)
    async with site.client() as c:
        h2 = await site.bearer(Role.HALL_MANAGER, hall="H2")
        body = {"text": "办事时工作人员推诿", "channel": "counter", "case_no": "SJ-003"}
        made = await c.post("/api/v1/complaints", json=body, headers=h2)
        assert made.status_code == 201, made.text
        receipt = made.json()
        assert receipt["complaint"] is None and receipt["code"] and receipt["reply_due"]
        assert "100232" not in made.text and MARKET not in made.text and '"H1"' not in made.text
        sup = await site.bearer(Role.SUPERVISOR)
        stored = await c.get(f"/api/v1/complaints/{receipt['complaint_no']}", headers=sup)
        assert stored.json()["complaint"]["hall"] == "H1"


@pytest.mark.parametrize("seeded_site_url", ["sqlite"], indirect=True)
async def test_closing_a_complaint_withdraws_its_unsent_reply_sms_and_the_number(
    site: Site,
) -> None:
    # no SMS gateway has sent the reply yet (none configured, quiet hours, a rate hold): once
    # the complaint is closed its number must not stay behind in the outbox
    async with site.client() as c:
        sup = await site.bearer(Role.SUPERVISOR)
        made = await _enter(c, sup, hall="H1", window=1, phone=PHONE, consent=True)
        path = f"/api/v1/complaints/{made['complaint_no']}"
        for action, note in (("accept", ""), ("reply", "已整改"), ("close", "")):
            step = await c.post(f"{path}/{action}", json={"note": note}, headers=sup)
            assert step.status_code == 200, step.text
    async with site.engine.connect() as conn:
        rows = (await conn.execute(select(outbox.c.status, outbox.c.payload))).all()
    assert not any(PHONE in str(payload) for _, payload in rows), rows
