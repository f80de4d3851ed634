"""Notifications on real stores: progress SMS to an applicant who consented (受理 once, 办结
once, the number erased once sent and never in the case), none without consent or to a
landline; the overdue apology once when the ladder marks the case red, none for a case closed
in time; ladder warnings to the staff member and the leader as configured."""

from __future__ import annotations

import datetime as dt
import logging
from pathlib import Path

import pytest
from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncEngine

from central.cases.masking import ApplicantMasker, load_or_create_salt
from central.cases.store import Source, feed
from central.outbox import progress, warnings
from central.outbox.config import OutboxConfig, SmsTarget
from central.outbox.worker import Deliverer
from central.store.schema import cases
from central.store.schema_cases import case_steps
from central.store.schema_outbox import outbox
from tests.central.cases.support import PHONE, case
from tests.central.outbox.fakes import FakeReceiver, serve

LATE_PHONE = "13912345670"
NOON = dt.datetime(2026, 9, 18, 4, 0, tzinfo=dt.UTC)  # 12:00 in Beijing: no quiet hours


async def _messages(engine: AsyncEngine) -> list[tuple[str, str, str, str]]:
    async with engine.connect() as conn:
        rows = await conn.execute(select(outbox).order_by(outbox.c.id))
        return [(r.channel, r.idem_key, r.recipient, r.status) for r in rows]


async def test_progress_sms_and_ladder_warnings(
    engine: AsyncEngine, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """One store for every part: a database of each kind costs seconds to make."""
    caplog.set_level(logging.DEBUG, logger="central")
    await _progress_sms_to_applicants_who_consented(engine, tmp_path)
    await _overdue_apology_once_when_the_ladder_turns_red(engine, tmp_path)
    await _ladder_warnings_reach_staff_and_leader(engine, tmp_path)
    assert PHONE not in caplog.text and LATE_PHONE not in caplog.text  # nothing personal


async def _step(engine: AsyncEngine, case_no: str, stage: str, at: dt.datetime) -> None:
    async with engine.begin() as conn:
        await conn.execute(
            insert(case_steps).values(
                case_no=case_no, at=at, stage=stage, on_date=at.date(), days_over=0,
                revision=1, recorded_at=NOON - dt.timedelta(hours=1),  # before the warnings' scan
            )
        )  # fmt: skip


async def _progress_sms_to_applicants_who_consented(engine: AsyncEngine, tmp_path: Path) -> None:
    masker = ApplicantMasker(load_or_create_salt(tmp_path / "data"))
    progress.enable(engine)
    consented = {"phone": PHONE, "sms_consent": True}
    rows = [
        case("A1", applicant=consented),
        case("A2", applicant={"phone": PHONE}),  # no consent
        case("A3", applicant={"phone": "0571-87654321", "sms_consent": True}),  # a landline
    ]
    await feed(engine, rows, masker, source=Source.API, now=NOON)
    done = {"status": "办结", "completed_at": "2026-09-18 11:30"}
    await feed(
        engine, [case("A1", applicant=consented, **done)], masker, source=Source.API, now=NOON
    )
    await feed(
        engine, [case("A1", applicant=consented, **done)], masker, source=Source.API, now=NOON
    )
    found = await _messages(engine)
    assert [(ch, key, st) for ch, key, _, st in found] == [
        ("sms", "applicant:A1:accepted", "pending"),
        ("sms", "applicant:A1:completed", "pending"),
    ]
    assert found[0][2].startswith("applicant:") and PHONE not in found[0][2]
    fake = FakeReceiver()
    with serve(fake) as url:
        config = OutboxConfig(sms=SmsTarget(url=url, template_id="T1"), applicant_sms=True)
        deliverer = Deliverer(engine, config, worker="w", clock=lambda: NOON)
        assert await deliverer.run_once() == 2
        await deliverer.adapters["sms"].close()
    assert {body["phone"] for body in fake.accepted.values()} == {PHONE}
    assert {body["params"]["case_no"] for body in fake.accepted.values()} == {"A1"}
    async with engine.connect() as conn:
        payloads = [r.payload for r in await conn.execute(select(outbox.c.payload))]
        kept = [r.applicant_masked for r in await conn.execute(select(cases))]
    assert all("phone" not in p for p in payloads)  # erased once sent
    assert PHONE not in repr(kept)


async def _overdue_apology_once_when_the_ladder_turns_red(
    engine: AsyncEngine, tmp_path: Path
) -> None:
    masker = ApplicantMasker(load_or_create_salt(tmp_path / "data"))
    consented = {"phone": LATE_PHONE, "sms_consent": True}  # its own rate limit
    in_time = {"phone": "13912345671", "sms_consent": True}
    rows = [
        case("D1", applicant=consented),  # late: apologised to
        case("D2", applicant=in_time),  # completed in time: no apology
        case("D3", applicant={"phone": LATE_PHONE}),  # late, but no consent
    ]
    await feed(engine, rows, masker, source=Source.API, now=NOON)

    async def apologies() -> dict[str, str]:
        return {
            key: status
            for _, key, _, status in await _messages(engine)
            if key.startswith("applicant:D") and key.endswith(":overdue")
        }

    assert await apologies() == {
        "applicant:D1:overdue": "waiting",
        "applicant:D2:overdue": "waiting",
    }
    done = {"status": "办结", "completed_at": "2026-09-18 11:40"}
    await feed(
        engine, [case("D2", applicant=consented, **done)], masker, source=Source.API, now=NOON
    )
    assert await apologies() == {"applicant:D1:overdue": "waiting"}  # its number went with it
    yellow = NOON + dt.timedelta(days=4)
    await _step(engine, "D1", "yellow_light", yellow)
    assert await progress.release_overdue(engine) == 0  # not late yet
    red = NOON + dt.timedelta(days=7)
    for case_no in ("D1", "D2", "D3"):
        await _step(engine, case_no, "red_light", red)
    assert await progress.release_overdue(engine) == 1
    assert await progress.release_overdue(engine) == 0  # once per case
    await _step(engine, "D1", "yellow_card", red + dt.timedelta(days=1))
    await feed(engine, [case("D1", applicant=consented)], masker, source=Source.API, now=NOON)
    assert await progress.release_overdue(engine) == 0
    assert await apologies() == {"applicant:D1:overdue": "pending"}
    fake = FakeReceiver()
    with serve(fake) as url:
        templates = {"applicant.accepted": "SMS_ACCEPTED", "applicant.overdue": "SMS_SORRY"}
        target = SmsTarget(url=url, template_id="T1", templates=templates)
        config = OutboxConfig(sms=target, applicant_sms=True)
        deliverer = Deliverer(engine, config, worker="w", clock=lambda: NOON)
        await deliverer.run_once()
        await deliverer.adapters["sms"].close()
    sent = [b for b in fake.accepted.values() if b["params"]["case_no"] == "D1"]
    assert [b["phone"] for b in sent] == [LATE_PHONE] * 2
    assert sorted(b["template_id"] for b in sent) == ["SMS_ACCEPTED", "SMS_SORRY"]
    assert await apologies() == {"applicant:D1:overdue": "delivered"}
    async with engine.connect() as conn:
        payloads = [r.payload for r in await conn.execute(select(outbox.c.payload))]
    assert all("phone" not in p for p in payloads)  # erased once sent


async def _ladder_warnings_reach_staff_and_leader(engine: AsyncEngine, tmp_path: Path) -> None:
    masker = ApplicantMasker(load_or_create_salt(tmp_path / "data"))
    await feed(engine, [case("L1")], masker, source=Source.API, now=NOON)
    async with engine.begin() as conn:
        for stage, at in (("yellow_light", NOON), ("red_card", NOON + dt.timedelta(days=9))):
            await conn.execute(
                insert(case_steps).values(
                    case_no="L1", at=at, stage=stage, on_date=at.date(), days_over=3,
                    revision=1, recorded_at=NOON,
                )
            )  # fmt: skip
    config = OutboxConfig.model_validate(
        {
            "sms": {"url": "http://127.0.0.1:9/sms"},
            "webhook": {"url": "http://127.0.0.1:9/hook"},
            "contacts": {
                "staff:000123": {"phone": "13800000001"},
                "leader:市场监管局": {"phone": "13800000002"},
            },
        }
    )
    since = NOON - dt.timedelta(minutes=1)
    await warnings.scan(engine, config, since)
    await warnings.scan(engine, config, since)  # again: nothing new
    found = {
        (ch, key.split(":")[2], to)
        for ch, key, to, _ in await _messages(engine)
        if key.startswith("ladder:")
    }
    assert found == {
        ("sms", "yellow_light", "staff:000123"),
        ("webhook", "yellow_light", "webhook"),
        ("sms", "red_card", "staff:000123"),
        ("sms", "red_card", "leader:市场监管局"),
        ("webhook", "red_card", "webhook"),
    }
    assert len([m for m in await _messages(engine) if m[1].startswith("ladder:")]) == 5
