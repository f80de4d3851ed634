"""A simulated hall day with ground truth, through the real ingest and the real job, on SQLite
and PostgreSQL: precision and recall of session and case ties, every flag, every session's
corrected times; the same day with the uplink cut at 13:00 and the rest replayed out of order;
re-running changes nothing. The simulated staff call the next number before the citizen
presses, and some enter their cases in the approval system minutes after the service.

CASE_AMBIGUOUS is the engine's doubt, not a physical fact: it is not compared with the truth;
instead every evaluation whose cases differ from the truth must carry it (never a silent wrong
tie), and it must stay rare."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from central.correlation.config import CorrelationConfig
from central.correlation.job import run_once
from central.correlation.store import stored_content
from central.spine.registry import register
from central.store.db import make_engine
from central.store.migrate import upgrade
from central.store.schema_correlation import correlation_reissues, correlation_results
from tests.central.correlation.conftest import (
    all_versions,
    case_record,
    current,
    deliver,
    sessions,
    store_cases,
)
from tests.central.correlation.hallday import RAPID_S, Habits, HallDay, generate

CFG = CorrelationConfig(rapid_repeat_s=RAPID_S)
NOW = dt.datetime(2026, 11, 20, 10, 0, tzinfo=dt.UTC)
REQUIRED = 0.995
AMBIGUOUS = "CASE_AMBIGUOUS"
AMBIGUOUS_AT_MOST = 0.03  # of the evaluations


@dataclass
class Score:
    session_pairs: tuple[int, int, int] = (0, 0, 0)  # (correct, predicted, true)
    case_pairs: tuple[int, int, int] = (0, 0, 0)
    wrong: list[str] = field(default_factory=list)
    ambiguous: int = 0

    @staticmethod
    def ratio(pairs: tuple[int, int, int]) -> tuple[float, float]:
        correct, predicted, true = pairs
        return (correct / predicted if predicted else 1.0, correct / true if true else 1.0)


def score(day: HallDay, results: dict[int, Any], stored_sessions: dict[str, Any]) -> Score:
    """Pairs (evaluation, service) and (evaluation, case): predicted vs true."""
    where = {sid: (row.window, row.ticket) for sid, row in stored_sessions.items()}
    s_ok = s_pred = s_true = c_ok = c_pred = c_true = 0
    out = Score()
    for seq, truth in sorted(day.truth.items()):
        row = results.get(seq)
        if row is None:
            out.wrong.append(f"{seq} ({truth.category}): no result")
            s_true += truth.session is not None
            c_true += len(truth.cases)
            continue
        got = where.get(row.session_id) if row.session_id else None
        s_pred += got is not None
        s_true += truth.session is not None
        s_ok += got is not None and got == truth.session
        got_cases = set(row.case_nos)
        c_pred, c_true = c_pred + len(got_cases), c_true + len(truth.cases)
        c_ok += len(got_cases & truth.cases)
        flags = set(row.flags) - {AMBIGUOUS}
        if flags != truth.flags or row.counted != truth.counted or row.key != truth.key:
            out.wrong.append(
                f"{seq} ({truth.category}): flags {sorted(row.flags)} counted "
                f"{row.counted}, expected {sorted(truth.flags)} {truth.counted}"
            )
        out.ambiguous += AMBIGUOUS in row.flags
        if got_cases != truth.cases and AMBIGUOUS not in row.flags:
            out.wrong.append(
                f"{seq} ({truth.category}): cases {sorted(got_cases)} silently, "
                f"expected {sorted(truth.cases)}"
            )
    out.session_pairs, out.case_pairs = (s_ok, s_pred, s_true), (c_ok, c_pred, c_true)
    return out


def assert_matches_truth(day: HallDay, results: dict[int, Any], stored: dict[str, Any]) -> None:
    assert not set(results) & day.retransmits, "a device retransmission was correlated"
    assert set(results) == set(day.truth)
    s = score(day, results, stored)
    for name, pairs in (("session", s.session_pairs), ("case", s.case_pairs)):
        precision, recall = Score.ratio(pairs)
        print(f"\n[truth] {name} ties: precision {precision:.4f} recall {recall:.4f} {pairs}")
        assert precision >= REQUIRED and recall >= REQUIRED, (name, pairs)
    assert s.wrong == [], s.wrong[:20]
    assert s.ambiguous <= AMBIGUOUS_AT_MOST * len(day.truth), s.ambiguous


def assert_sessions_match(day: HallDay, stored: dict[str, Any]) -> None:
    """Every service with the gateway's corrected times (never the machine's own clock)."""
    served = {(r.window, r.ticket): r for r in stored.values() if r.outcome != "not_called"}
    assert set(served) == set(day.sessions)
    for key, truth in day.sessions.items():
        row = served[key]
        assert row.outcome == truth.outcome, key
        assert (row.called_at, row.started_at, row.ended_at) == (
            truth.called_at,
            truth.started_at,
            truth.ended_at,
        ), key
        assert row.next_start_at == truth.next_start_at, key  # LATE from then on
        assert row.queued_at == truth.queued_at, key
        assert row.staff == truth.staff, key
        assert sorted(row.case_nos) == sorted(truth.cases), key
    waiting = {r.ticket for r in stored.values() if r.outcome == "not_called"}
    assert waiting == day.not_called


async def test_a_hall_day_is_correlated_as_the_truth_says(engine: AsyncEngine) -> None:
    day = generate(seed=7)
    await store_cases(engine, [case_record(c) for c in day.cases])
    await deliver(engine, day, day.events)
    report = await run_once(engine, cfg=CFG, now=NOW)
    assert not report.skipped and report.reissued == 0
    assert report.new_results == len(day.truth)
    results, stored = await current(engine), await sessions(engine)
    assert_matches_truth(day, results, stored)
    assert_sessions_match(day, stored)
    # the first hour's unsynchronised stamps were repaired from the boot's offset
    first_hour = [
        r
        for r in results.values()
        if r.evaluated_at < dt.datetime(2026, 11, 20, 1, 40, tzinfo=dt.UTC)
    ]
    assert first_hour and {r.time_source for r in first_hour} == {"repaired"}

    again = await run_once(engine, cfg=CFG, now=NOW)
    assert (again.new_results, again.reissued, again.new_events, again.days) == (0, 0, 0, [])
    async with engine.connect() as conn:
        total = await conn.execute(select(func.count()).select_from(correlation_results))
        assert total.scalar() == len(day.truth)


async def _uninterrupted(tmp_path: Path, day: HallDay) -> dict[int, dict[str, Any]]:
    engine = make_engine(f"sqlite+aiosqlite:///{tmp_path / 'baseline.db'}")
    try:
        await upgrade(engine)
        await register(engine, day.hall, day.gateway)
        await store_cases(engine, [case_record(c) for c in day.cases])
        await deliver(engine, day, day.events)
        await run_once(engine, cfg=CFG, now=NOW)
        return {seq: stored_content(row) for seq, row in (await current(engine)).items()}
    finally:
        await engine.dispose()


async def test_uplink_cut_for_half_the_day_then_replayed_out_of_order(
    engine: AsyncEngine, tmp_path: Path
) -> None:
    day = generate(seed=11)
    cut = dt.datetime(2026, 11, 20, 13, 0, tzinfo=day.reboot_at.tzinfo)
    # the approval system is not behind the hall's uplink: its cases arrive all day
    await store_cases(engine, [case_record(c) for c in day.cases])
    await deliver(engine, day, [e for e in day.events if e.at < cut])
    first = await run_once(engine, cfg=CFG, now=NOW)
    assert first.new_results > 0
    before = {seq: stored_content(row) for seq, row in (await current(engine)).items()}
    # the gateway rebooted at 11:40 and had not synchronised its clock when the link went:
    # those presses sit at their unsynchronised stamps, some on the previous business day
    unsynced = [c for c in before.values() if c["time_source"] == "unsynced"]
    assert unsynced and any(c["evaluated_at"] < "2026-11-19T16:00" for c in unsynced)

    await deliver(engine, day, [e for e in day.events if e.at >= cut], shuffle_seed=5)
    second = await run_once(engine, cfg=CFG, now=NOW)
    after = {seq: stored_content(row) for seq, row in (await current(engine)).items()}
    assert after == await _uninterrupted(tmp_path, day)
    assert_matches_truth(day, await current(engine), await sessions(engine))
    assert_sessions_match(day, await sessions(engine))

    affected = {seq for seq, content in before.items() if after[seq] != content}
    versions = await all_versions(engine)
    reissued = {seq for seq, rows in versions.items() if len(rows) > 1}
    assert affected and reissued == affected
    assert all(
        len(rows) == 2 and rows[1].supersedes == 1 for s, rows in versions.items() if s in affected
    )
    assert second.reissued == len(affected)
    async with engine.connect() as conn:
        logged = {r.seq for r in (await conn.execute(select(correlation_reissues))).all()}
    assert logged == affected

    third = await run_once(engine, cfg=CFG, now=NOW)
    assert (third.new_results, third.reissued) == (0, 0)
    assert await all_versions(engine) == versions


@pytest.mark.parametrize("seed", [3])
async def test_another_day_shape_also_matches(engine: AsyncEngine, seed: int) -> None:
    day = generate(seed=seed, windows=12)
    await store_cases(engine, [case_record(c) for c in day.cases])
    await deliver(engine, day, day.events, shuffle_seed=seed)
    await run_once(engine, cfg=CFG, now=NOW)
    assert_matches_truth(day, await current(engine), await sessions(engine))


@pytest.mark.parametrize(
    "habits",
    [
        # every member of staff enters cases two minutes after the service (the next one runs)
        Habits(entry_lagging_share=1.0, entry_lag_range=(120.0, 120.0)),
        # every one with a habit of their own, up to nine and a half minutes
        Habits(entry_lagging_share=1.0, entry_lag_range=(20.0, 570.0)),
        # nobody lags; staff call the next number only after the citizen has pressed
        Habits(entry_lagging_share=0.0, call_after_finish=(35.0, 60.0)),
    ],
    ids=["all-lag-2min", "all-lag-up-to-10min", "prompt-late-calls"],
)
async def test_entry_lag_and_call_habits(engine: AsyncEngine, habits: Habits) -> None:
    day = generate(seed=5, habits=habits)
    await store_cases(engine, [case_record(c) for c in day.cases])
    await deliver(engine, day, day.events)
    await run_once(engine, cfg=CFG, now=NOW)
    assert_matches_truth(day, await current(engine), await sessions(engine))
