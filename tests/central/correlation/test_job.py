"""The correlation job on a real database: a late event or a late case changes exactly the
results it should (new versions, re-issue rows, follow-up notes), follow-up items are opened
once and escalated on working days, a camera verdict re-issues, one runner at a time."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import func, insert, select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from central.correlation.config import CorrelationConfig
from central.correlation.job import LOCK_KEY, run_once
from central.store.schema import events
from central.store.schema_correlation import correlation_reissues, followup_events, followups
from tests.central.correlation.conftest import (
    all_versions,
    case_record,
    current,
    deliver,
    store_cases,
)
from tests.central.correlation.hallday import KEY_LABELS, RAPID_S, GenEvent, HallDay, generate

CFG = CorrelationConfig(rapid_repeat_s=RAPID_S)
FRIDAY = dt.datetime(2026, 11, 20, 10, 0, tzinfo=dt.UTC)  # due dates: working days on


def _set_key(ev: GenEvent, key: int) -> None:
    ev.body["key"], ev.body["label"] = key, KEY_LABELS[key]


def _repeat_pair(day: HallDay) -> tuple[GenEvent, GenEvent]:
    """A kept press and the SESSION_REPEAT press after it, in the same session."""
    by_seq = {e.seq: e for e in day.events}
    for seq, truth in sorted(day.truth.items()):
        if truth.category == "repeat" and "DUPLICATE" in truth.flags:
            first = next(
                s for s, t in sorted(day.truth.items()) if t.session == truth.session and t.counted
            )
            return by_seq[first], by_seq[seq]
    raise AssertionError("the generated day has no repeated press")


async def _reissues(engine: AsyncEngine) -> list[Any]:
    async with engine.connect() as conn:
        return list((await conn.execute(select(correlation_reissues))).all())


async def _followups(engine: AsyncEngine) -> dict[int, Any]:
    async with engine.connect() as conn:
        return {r.seq: r for r in (await conn.execute(select(followups))).all()}


async def _events_of(engine: AsyncEngine, item: str) -> list[Any]:
    async with engine.connect() as conn:
        return list(
            (
                await conn.execute(
                    select(followup_events)
                    .where(followup_events.c.item_id == item)
                    .order_by(followup_events.c.id)
                )
            ).all()
        )


async def test_a_late_earlier_press_makes_exactly_the_later_one_a_duplicate(
    engine: AsyncEngine,
) -> None:
    day = generate(seed=7)
    first, second = _repeat_pair(day)
    _set_key(first, 5)  # 业务不熟
    _set_key(second, 3)  # 服务态度不好
    await store_cases(engine, [case_record(c) for c in day.cases])
    await deliver(engine, day, [e for e in day.events if e is not first])  # a gap at its seq
    await run_once(engine, cfg=CFG, now=FRIDAY)
    before = await current(engine)
    assert first.seq not in before and before[second.seq].counted
    items = await _followups(engine)
    assert second.seq in items and items[second.seq].state == "created"

    await deliver(engine, day, [first])
    report = await run_once(engine, cfg=CFG, now=FRIDAY + dt.timedelta(hours=1))
    assert (report.new_results, report.reissued) == (1, 1)
    versions = await all_versions(engine)
    assert {s for s, rows in versions.items() if len(rows) > 1} == {second.seq}
    v1, v2 = versions[second.seq]
    assert (v2.version, v2.supersedes, v2.counted) == (2, 1, False)
    assert "DUPLICATE" in v2.flags and "DUPLICATE" not in v1.flags
    assert v2.digest != v1.digest
    (reissue,) = await _reissues(engine)
    assert (reissue.seq, reissue.from_version, reissue.to_version) == (second.seq, 1, 2)
    assert {"counted", "flags"} <= set(reissue.changed)
    after = await current(engine)
    assert after[first.seq].counted and after[first.seq].version == 1
    # follow-up: a new item for the press that now counts; the other item is kept, with a note
    items = await _followups(engine)
    assert items[first.seq].reason == 5 and items[second.seq].evaluation_version == 2
    kinds = [e.kind for e in await _events_of(engine, items[second.seq].item_id)]
    assert kinds == ["followup.created", "followup.reissued"]

    again = await run_once(engine, cfg=CFG, now=FRIDAY + dt.timedelta(hours=2))
    assert (again.new_results, again.reissued, again.followups_opened) == (0, 0, 0)
    assert await all_versions(engine) == versions


async def test_a_late_case_reissues_exactly_its_sessions_evaluations(engine: AsyncEngine) -> None:
    day = generate(seed=7)
    late = next(
        c
        for c in day.cases
        if c.session is not None and any(t.session == c.session for t in day.truth.values())
    )
    await store_cases(engine, [case_record(c) for c in day.cases if c is not late])
    await deliver(engine, day, day.events)
    await run_once(engine, cfg=CFG, now=FRIDAY)
    assert all(late.case_no not in r.case_nos for r in (await current(engine)).values())

    await store_cases(engine, [case_record(late)])
    report = await run_once(engine, cfg=CFG, now=FRIDAY)
    expected = {s for s, t in day.truth.items() if t.session == late.session}
    versions = await all_versions(engine)
    assert {s for s, rows in versions.items() if len(rows) > 1} == expected
    assert report.reissued == len(expected) and report.new_results == 0
    assert all(late.case_no in versions[s][-1].case_nos for s in expected)

    # the approval system corrects the case's window: it leaves those evaluations again
    await store_cases(engine, [case_record(late, window=99)])
    await run_once(engine, cfg=CFG, now=FRIDAY)
    now_current = await current(engine)
    assert all(late.case_no not in now_current[s].case_nos for s in expected)
    assert all(now_current[s].version == 3 for s in expected)


async def test_follow_up_items_are_opened_once_and_escalate_on_working_days(
    engine: AsyncEngine,
) -> None:
    day = generate(seed=7)
    await store_cases(engine, [case_record(c) for c in day.cases])
    await deliver(engine, day, day.events)
    report = await run_once(engine, cfg=CFG, now=FRIDAY)
    bad = {s for s, t in day.truth.items() if t.counted and t.key >= 3}
    assert bad and report.followups_opened == len(bad)
    items = await _followups(engine)
    assert set(items) == bad
    # 核实 is due Fri + 1 working day; the rating comes from the mapping version in force
    assert {(r.due, r.verify_due) for r in items.values()} == {(dt.date(2026, 11, 23),) * 2}
    assert {(r.level, r.mapping_version) for r in items.values()} == {(2, "2019")}

    # Tuesday 24th: the first working day after the due day → level 1, once
    tuesday = dt.datetime(2026, 11, 24, 2, 0, tzinfo=dt.UTC)
    assert (await run_once(engine, cfg=CFG, now=tuesday)).escalations == len(bad)
    assert (await run_once(engine, cfg=CFG, now=tuesday)).escalations == 0
    # Friday 27th: four working days after the due day → level 2
    friday = dt.datetime(2026, 11, 27, 2, 0, tzinfo=dt.UTC)
    assert (await run_once(engine, cfg=CFG, now=friday)).escalations == len(bad)
    levels = {r.escalation_level for r in (await _followups(engine)).values()}
    assert levels == {2}
    some = next(iter(items.values()))
    assert [e.level for e in await _events_of(engine, some.item_id)] == [None, 1, 2]
    async with engine.connect() as conn:
        opened = (await conn.execute(select(func.count()).select_from(followups))).scalar()
    assert opened == len(bad)  # nothing opened twice


async def test_an_absent_citizen_verdict_reissues_as_self_press_suspected(
    engine: AsyncEngine,
) -> None:
    day = generate(seed=7)
    await store_cases(engine, [case_record(c) for c in day.cases])
    await deliver(engine, day, day.events)
    await run_once(engine, cfg=CFG, now=FRIDAY)
    seq = next(s for s, t in sorted(day.truth.items()) if t.counted and t.key >= 3)
    press = next(e for e in day.events if e.seq == seq)
    assert press.utc is not None
    # a camera.verdict as the gateway journals it (central decodes it with its model)
    async with engine.begin() as conn:
        last = (await conn.execute(select(func.max(events.c.seq)))).scalar()
        await conn.execute(
            insert(events).values(
                gateway_id=day.gateway,
                seq=last + 1,
                hall_id=day.hall,
                kind="camera.verdict",
                utc=press.utc + dt.timedelta(seconds=2),
                mono_ns=press.mono_ns + 2_000_000_000,
                boot=press.boot,
                synced=press.synced,
                received_at=dt.datetime.now(dt.UTC),
                body={
                    "window": press.body["window"],
                    "addr": press.body["addr"],
                    "dev_seq": press.body["dev_seq"],
                    "verdict": "absent",
                    "confidence": 0.93,
                    "snapshot_sha256": "ab" * 32,
                    "reason": "nobody at the counter",
                    "at_mono_ns": press.mono_ns,
                    "frames": 12,
                    "occupied_frames": 0,
                    "manifest_seq": 1,
                    "manifest_head": "cd" * 32,
                    "key_seq": seq,
                },
            )
        )
    report = await run_once(engine, cfg=CFG, now=FRIDAY)
    assert report.reissued == 1
    row = (await current(engine))[seq]
    assert ("SELF_PRESS_SUSPECTED" in row.flags, row.counted, row.citizen) == (
        True,
        False,
        "absent",
    )
    item = (await _followups(engine))[seq]
    assert [e.kind for e in await _events_of(engine, item.item_id)][-1] == "followup.reissued"


async def test_one_runner_at_a_time(engine: AsyncEngine) -> None:
    if engine.dialect.name != "postgresql":
        assert not (await run_once(engine, cfg=CFG)).skipped  # SQLite: one process
        return
    async with engine.connect() as holder:
        await holder.execute(text("SELECT pg_advisory_lock(:k)"), {"k": LOCK_KEY})
        assert (await run_once(engine, cfg=CFG)).skipped
        await holder.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": LOCK_KEY})
    assert not (await run_once(engine, cfg=CFG)).skipped
