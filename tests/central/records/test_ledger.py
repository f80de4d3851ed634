# Long module: one tampering per test, each forging its own rows on the same fixtures; together they
# are the ledger's threat list.
"""The ledger on SQLite and PostgreSQL: rows changed, deleted or inserted behind the
application's back are reported with their key; untouched data verifies clean."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import delete, insert, select, text, update
from sqlalchemy.ext.asyncio import AsyncEngine
from typer.testing import CliRunner

from central.records.ledger.append import append_once, run_forever
from central.records.ledger.chain import EVENT_COLUMNS, Record, chain_next, genesis, row_hash
from central.records.ledger.findings import Problem, Report
from central.records.ledger.heads import heads, parse_heads, seal_once
from central.records.ledger.verify import verify
from central.rules.workdays import business_date
from central.spine.ingest import Ingestor
from central.spine.reading import Incoming
from central.spine.registry import register
from central.store.db import make_engine
from central.store.migrate import upgrade
from central.store.schema import (
    case_revisions,
    case_suspensions,
    cases,
    events,
    pending_ranges,
)
from central.store.schema_tsledger import ledger_entries, ledger_seals
from protocols import topics
from protocols.envelope import GatewayState, JournalState
from tests.support.hallevents import Gateway, key_press, queue

NOW = datetime(2026, 11, 20, 3, 0, tzinfo=UTC)  # 11:00 in Shanghai
DAY = date(2026, 11, 20)


@pytest.fixture
def database_at_head() -> bool:
    return True  # every test migrates first: start from the migrated template


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    eng = make_engine(database_url)
    await upgrade(eng)
    await register(eng, "H1", "gw1")
    await register(eng, "H2", "gw2")
    yield eng
    await eng.dispose()


async def evaluations(engine: AsyncEngine, gw: Gateway, n: int, *, start: datetime = NOW) -> None:
    """n key presses with a queue event between each (only the keys are chained)."""
    items: list[tuple[str, dict[str, Any], datetime]] = []
    for i in range(n):
        at = start + timedelta(minutes=i)
        items.append(
            ("queue.event", queue(100 + i, "FN", ticket=f"A{i:03d}", window=3, staff="100231"), at)
        )
        items.append(("evaluator.key", key_press(3, 1 + i % 6, session=1 + i), at))
    await Ingestor(engine).ingest([gw.batch(items)])


async def store_case(
    engine: AsyncEngine,
    case_no: str,
    revision: int,
    *,
    hall: str = "H1",
    status: str = "running",
    received_at: datetime = NOW,
    suspended: tuple[datetime, datetime | None] | None = None,
) -> None:
    """What the case store does in one transaction: the revision, the case row brought up to
    it, its suspensions replaced."""
    row = {
        "case_no": case_no,
        "revision": revision,
        "item_code": "11510100MB1",
        "item_name": "营业执照",
        "department": "市场监管局",
        "hall_id": hall,
        "window": 3,
        "staff": "100231",
        "accepted_at": NOW - timedelta(days=2),
        "legal_days": 20,
        "promised_days": 5,
        "completed_at": None,
        "status": status,
        "applicant_masked": "张*",
        "applicant_digest": "ab" * 32,
        "received_at": received_at,
        "source": "api",
    }
    doc = {
        k: (v.isoformat() if isinstance(v, datetime) else v)
        for k, v in row.items()
        if k not in ("revision", "received_at", "source", "hall_id")
    }
    doc["hall"] = hall
    async with engine.begin() as conn:
        if revision == 1:
            await conn.execute(insert(cases).values(**row))
        else:
            await conn.execute(update(cases).where(cases.c.case_no == case_no).values(**row))
            await conn.execute(
                delete(case_suspensions).where(case_suspensions.c.case_no == case_no)
            )
        if suspended is not None:
            await conn.execute(
                insert(case_suspensions).values(
                    case_no=case_no, started_at=suspended[0], ended_at=suspended[1], reason="补正"
                )
            )
        await conn.execute(
            insert(case_revisions).values(
                case_no=case_no, revision=revision, doc=doc, received_at=received_at
            )
        )


def json_param(engine: AsyncEngine) -> str:
    return "CAST(:doc AS jsonb)" if engine.dialect.name == "postgresql" else ":doc"


async def raw(engine: AsyncEngine, sql: str, **params: object) -> None:
    async with engine.begin() as conn:
        await conn.execute(text(sql), params)


def keys(report: Report, problem: Problem) -> list[tuple[str, str, int | None]]:
    return [
        (f.record.value if f.record else "", f.ref, f.ref_no)
        for f in report.findings
        if f.problem is problem
    ]


async def test_untouched_records_verify_clean_in_one_chain_per_hall_and_day(
    engine: AsyncEngine,
) -> None:
    await evaluations(engine, Gateway("H1", "gw1"), 5)
    await evaluations(engine, Gateway("H2", "gw2"), 3)
    await store_case(engine, "C1", 1, suspended=(NOW - timedelta(days=1), None))
    before = await verify(engine)
    assert before.ok and before.pending == 9 and before.entries == 0

    assert await append_once(engine, now=NOW) == 10  # 8 keys, a revision, a case state
    assert await append_once(engine, now=NOW) == 0  # nothing new: nothing added
    await store_case(
        engine, "C1", 2, status="suspended", suspended=(NOW - timedelta(days=1), NOW)
    )  # revised the proper way
    next_day = NOW + timedelta(days=1)
    assert await append_once(engine, now=next_day) == 2

    report = await verify(engine)
    assert report.findings == [] and report.pending == 0
    assert (report.chains, report.entries) == (3, 12)  # H1 and H2 on DAY, H1 on the next day
    day_heads = await heads(engine, DAY)
    assert [(h.hall, h.entries) for h in day_heads] == [("H1", 7), ("H2", 3)]
    assert (await verify(engine, hall="H2", day=DAY)).entries == 3


async def test_edited_evaluation_is_reported_as_changed_with_its_key(engine: AsyncEngine) -> None:
    await evaluations(engine, Gateway("H1", "gw1"), 4)
    await append_once(engine, now=NOW)
    async with engine.connect() as conn:
        body = (
            await conn.execute(
                select(events.c.body).where(events.c.gateway_id == "gw1", events.c.seq == 4)
            )
        ).scalar_one()
    assert body["key"] == 2
    body["key"], body["label"] = 1, "非常满意"  # a bad review turned into a good one
    await raw(
        engine,
        f"UPDATE events SET body = {json_param(engine)} WHERE gateway_id = 'gw1' AND seq = 4",
        doc=json.dumps(body),
    )

    report = await verify(engine)
    assert keys(report, Problem.CHANGED) == [("evaluation", "gw1", 4)]
    assert len(report.findings) == 1
    (finding,) = report.findings
    assert finding.hall == "H1" and finding.day == DAY and finding.position == 2
    assert "gw1#4" in finding.line() and "changed" in finding.line()


async def test_deleted_evaluation_is_reported_missing(engine: AsyncEngine) -> None:
    await evaluations(engine, Gateway("H1", "gw1"), 4)
    await append_once(engine, now=NOW)
    await raw(engine, "DELETE FROM events WHERE gateway_id = 'gw1' AND seq = 6")
    report = await verify(engine)
    assert keys(report, Problem.DELETED) == [("evaluation", "gw1", 6)]
    assert len(report.findings) == 1


async def test_forged_evaluations_are_reported_not_in_ledger(engine: AsyncEngine) -> None:
    gw = Gateway("H1", "gw1")
    await evaluations(engine, gw, 2)
    # seq 5 arrives broken (quarantined): its number is used, no row is stored
    await Ingestor(engine).ingest([gw.batch([("evaluator.key", {"window": 3}, NOW)])])
    await evaluations(engine, gw, 1)
    await append_once(engine, now=NOW)
    assert (await verify(engine)).ok

    async with engine.connect() as conn:
        genuine = dict(
            (
                await conn.execute(
                    select(events).where(events.c.gateway_id == "gw1", events.c.seq == 4)
                )
            )
            .mappings()
            .one()
        )
    async with engine.begin() as conn:
        for seq in (5, 40):  # into the quarantined number, and ahead of the gateway
            await conn.execute(insert(events).values({**genuine, "seq": seq}))

    report = await verify(engine)
    assert keys(report, Problem.NOT_IN_LEDGER) == [
        ("evaluation", "gw1", 5),
        ("evaluation", "gw1", 40),
    ]
    assert len(report.findings) == 2
    assert "committed sequence" in report.findings[1].detail
    # the job does not take the forgeries in either
    await append_once(engine, now=NOW)
    assert len((await verify(engine)).findings) == 2


async def test_case_records_changed_deleted_or_forged_are_reported(engine: AsyncEngine) -> None:
    for no in ("C1", "C2", "C3", "C4"):
        await store_case(engine, no, 1, suspended=(NOW - timedelta(days=1), None))
    await store_case(engine, "C1", 2, status="completed")
    await append_once(engine, now=NOW)
    assert (await verify(engine)).ok

    await raw(engine, "UPDATE cases SET status = 'withdrawn' WHERE case_no = 'C1'")
    await raw(engine, "UPDATE case_suspensions SET ended_at = started_at WHERE case_no = 'C2'")
    doc = {"case_no": "C3", "status": "completed", "hall": "H1"}
    await raw(
        engine,
        f"UPDATE case_revisions SET doc = {json_param(engine)} "
        "WHERE case_no = 'C3' AND revision = 1",
        doc=json.dumps(doc),
    )
    await raw(engine, "DELETE FROM case_revisions WHERE case_no = 'C4'")
    old = NOW - timedelta(hours=2)
    async with engine.begin() as conn:  # a revision and a case nobody reported
        await conn.execute(
            insert(case_revisions).values(case_no="C1", revision=3, doc=doc, received_at=old)
        )
        await conn.execute(
            insert(cases).values(
                case_no="C9",
                revision=1,
                item_code="x",
                item_name="x",
                department="x",
                hall_id="H1",
                accepted_at=old,
                legal_days=1,
                status="running",
                received_at=old,
                source="api",
            )
        )

    report = await verify(engine)
    assert sorted(keys(report, Problem.CHANGED)) == [
        ("case", "C1", 2),
        ("case", "C2", 1),
        ("case_revision", "C3", 1),
    ]
    assert keys(report, Problem.DELETED) == [("case_revision", "C4", 1)]
    assert sorted(keys(report, Problem.NOT_IN_LEDGER)) == [
        ("case", "C9", 1),
        ("case_revision", "C1", 3),
    ]
    assert len(report.findings) == 6


async def test_ledger_entries_rewritten_removed_or_truncated_break_the_chain(
    engine: AsyncEngine,
) -> None:
    await evaluations(engine, Gateway("H1", "gw1"), 6)
    await append_once(engine, now=NOW)
    published = await heads(engine, DAY)

    # someone edits a row and its entry's row hash to match: the chain shows it
    await raw(engine, "UPDATE events SET boot = 'ffffffff' WHERE gateway_id = 'gw1' AND seq = 6")
    async with engine.connect() as conn:
        row = (
            (
                await conn.execute(
                    select(events).where(events.c.gateway_id == "gw1", events.c.seq == 6)
                )
            )
            .mappings()
            .one()
        )
    forged = row_hash(Record.EVALUATION, row)
    await raw(
        engine, "UPDATE ledger_entries SET row_hash = :h WHERE ref = 'gw1' AND ref_no = 6", h=forged
    )
    await raw(engine, "DELETE FROM ledger_entries WHERE position = 5")
    report = await verify(engine)
    broken = [(f.position, f.detail) for f in report.findings if f.problem is Problem.CHAIN_BROKEN]
    assert broken == [
        (3, "entry does not follow from the one before"),
        (6, "entry 5 is missing (next is 6)"),
    ]
    assert keys(report, Problem.NOT_IN_LEDGER) == [("evaluation", "gw1", 10)]

    # the tail cut off together with its rows: only the published head can tell
    await raw(engine, "DELETE FROM ledger_entries WHERE position = 6")
    await raw(engine, "DELETE FROM events WHERE gateway_id = 'gw1' AND seq = 12")
    report = await verify(engine, published=published)
    assert [
        (f.problem, f.position) for f in report.findings if f.problem is Problem.HEAD_MISMATCH
    ] == [(Problem.HEAD_MISMATCH, 6)]


def test_cli_verify_ledger_exit_code_and_report(database_url: str, tmp_path: Path) -> None:
    import asyncio

    from central.cli import app

    async def setup(tamper: bool) -> None:
        engine = make_engine(database_url)
        try:
            if not tamper:
                await upgrade(engine)
                await register(engine, "H1", "gw1")
                await evaluations(engine, Gateway("H1", "gw1"), 3)
            else:
                await raw(engine, "DELETE FROM events WHERE gateway_id = 'gw1' AND seq = 2")
        finally:
            await engine.dispose()

    config = tmp_path / "central.yaml"
    config.write_text(f"database_url: {database_url}\ndata_dir: {tmp_path}\n")
    runner = CliRunner()
    asyncio.run(setup(tamper=False))
    assert runner.invoke(app, ["ledger", "append", "-c", str(config)]).output.startswith("3 ")
    clean = runner.invoke(app, ["verify-ledger", "-c", str(config)])
    assert clean.exit_code == 0, clean.output
    assert "ledger intact" in clean.output
    today = business_date(datetime.now(UTC)).isoformat()
    head = runner.invoke(app, ["ledger", "head", "--day", today, "-c", str(config)])
    assert json.loads(head.output)["entries"] == 3
    assert json.loads(head.output)["final"] is False  # today's chain can still grow
    (tmp_path / "heads.jsonl").write_text(head.output)

    asyncio.run(setup(tamper=True))
    bad = runner.invoke(
        app,
        [
            "verify-ledger",
            "-c",
            str(config),
            "--hall",
            "H1",
            "--heads",
            str(tmp_path / "heads.jsonl"),
        ],
    )
    assert bad.exit_code == 1
    assert "已被删除 deleted: evaluation gw1#2 (hall H1" in bad.output
    assert "NOT intact: 1 problem(s)" in bad.output
    assert (
        runner.invoke(app, ["verify-ledger", "--day", "2026-13-01", "-c", str(config)]).exit_code
        == 2
    )


def test_row_hash_is_independent_of_key_order_and_sensitive_to_every_column() -> None:
    """Keys in another order (as PostgreSQL's JSONB returns them) hash the same."""
    row = {
        "gateway_id": "gw1",
        "seq": 1,
        "hall_id": "H1",
        "kind": "evaluator.key",
        "utc": NOW,
        "mono_ns": 1,
        "boot": "ab",
        "synced": True,
        "body": {"b": 1, "a": [1.5, "好"]},
        "received_at": NOW,
    }
    reordered = {**row, "body": {"a": [1.5, "好"], "b": 1}}
    assert row_hash(Record.EVALUATION, row) == row_hash(Record.EVALUATION, reordered)
    assert row_hash(Record.EVALUATION, row) != row_hash(
        Record.EVALUATION, {**row, "received_at": NOW + timedelta(microseconds=1)}
    )
    for column in EVENT_COLUMNS:
        value = row[column]
        changed = {
            **row,
            column: value + timedelta(seconds=1)
            if isinstance(value, datetime)
            else str(value) + "x",
        }
        assert row_hash(Record.EVALUATION, changed) != row_hash(Record.EVALUATION, row), column


async def gateway_state(engine: AsyncEngine, gw: Gateway, *, head_seq: int, at: datetime) -> None:
    """What the gateway says about itself: its journal's head, by its own clock."""
    state = GatewayState(
        hall=gw.hall,
        gateway=gw.gateway,
        boot=gw.boot,
        online=True,
        utc=at,
        synced=True,
        journal=JournalState(
            head_seq=head_seq,
            acked_seq=0,
            backlog=0,
            disk_bytes=0,
            limit_bytes=1,
            dropped_unacked=0,
        ),
    )
    await Ingestor(engine).ingest_state(
        Incoming(
            topics.topic(gw.hall, gw.gateway, topics.Channel.STATE),
            state.model_dump_json().encode(),
            datetime.now(UTC),
        )
    )


async def forge(engine: AsyncEngine, like: dict[str, Any], seq: int, **changes: Any) -> None:
    """An evaluation row put in behind ingest's back, ahead of the committed sequence, with the
    pending range that makes it look like a batch that arrived early."""
    async with engine.begin() as conn:
        await conn.execute(insert(events).values({**like, "seq": seq, **changes}))
        await conn.execute(
            insert(pending_ranges).values(
                gateway_id=like["gateway_id"], first_seq=seq, last_seq=seq
            )
        )


async def test_an_evaluation_no_stored_event_explains_is_reported_despite_its_pending_range(
    engine: AsyncEngine,
) -> None:
    gw = Gateway("H1", "gw1")
    await evaluations(engine, gw, 3)  # seqs 1–6, committed through 6
    gw.seq += 2  # 7 and 8 lost on the way: 9–10 arrive early, a genuine pending range
    await evaluations(engine, gw, 1, start=NOW + timedelta(minutes=10))
    await append_once(engine, now=NOW)
    report = await verify(engine)
    assert report.ok and report.pending == 1  # the early key (10) waits for the gap

    async with engine.connect() as conn:
        genuine = dict(
            (
                await conn.execute(
                    select(events).where(events.c.gateway_id == "gw1", events.c.seq == 4)
                )
            )
            .mappings()
            .one()
        )
    await forge(engine, genuine, 40)  # a copy of seq 4: its clock says it came before 10
    later = NOW + timedelta(minutes=20)
    await forge(
        engine,
        genuine,
        50,
        utc=later,  # a careful one: clock and time after 10
        mono_ns=genuine["mono_ns"] + 20 * 60 * 10**9,
    )
    report = await verify(engine)
    assert keys(report, Problem.NOT_IN_LEDGER) == [("evaluation", "gw1", 40)]
    assert "gateway clock puts it before seq 6" in report.findings[0].detail
    assert report.pending == 2  # 10, and 50 that nothing contradicts yet

    # the gateway reports, by its own clock after both, that its journal ends at 12
    await gateway_state(engine, gw, head_seq=12, at=later + timedelta(minutes=1))
    report = await verify(engine)
    assert keys(report, Problem.NOT_IN_LEDGER) == [
        ("evaluation", "gw1", 40),
        ("evaluation", "gw1", 50),
    ]
    assert all("journal ending at 12" in f.detail for f in report.findings)
    assert report.pending == 1  # the genuine early key is still explained
    await append_once(engine, now=NOW)  # and the job never takes a forgery in
    assert len((await verify(engine)).findings) == 2


async def rewrite_chain(engine: AsyncEngine, hall: str, day: date) -> None:
    """What someone who can write every table does to hide an edit: recompute the chain."""
    async with engine.begin() as conn:
        entries = (
            await conn.execute(
                select(ledger_entries)
                .where(ledger_entries.c.hall_id == hall, ledger_entries.c.day == day)
                .order_by(ledger_entries.c.position)
            )
        ).all()
        head = genesis(hall, day)
        for entry in entries:
            row = (
                (
                    await conn.execute(
                        select(events).where(
                            events.c.gateway_id == entry.ref, events.c.seq == entry.ref_no
                        )
                    )
                )
                .mappings()
                .one()
            )
            digest = row_hash(Record.EVALUATION, row)
            head = chain_next(head, digest)
            await conn.execute(
                update(ledger_entries)
                .where(
                    ledger_entries.c.hall_id == hall,
                    ledger_entries.c.day == day,
                    ledger_entries.c.position == entry.position,
                )
                .values(row_hash=digest, chain_hash=head)
            )


async def test_a_rewrite_of_todays_chain_is_caught_by_the_heads_sealed_during_the_day(
    engine: AsyncEngine,
    tmp_path: Path,
) -> None:
    seals = tmp_path / "ledger-seals.jsonl"
    gw = Gateway("H1", "gw1")
    await evaluations(engine, gw, 3)
    await append_once(engine, now=NOW)
    assert [(h.hall, h.entries) for h in await seal_once(engine, NOW, seals)] == [("H1", 3)]
    assert await seal_once(engine, NOW, seals) == []  # nothing grew: nothing sealed
    await evaluations(engine, gw, 2, start=NOW + timedelta(minutes=5))
    await append_once(engine, now=NOW + timedelta(minutes=5))
    assert [h.entries for h in await seal_once(engine, NOW, seals)] == [5]
    assert (await verify(engine)).ok

    # a bad review turned into a good one, and today's chain recomputed to match
    await raw(
        engine,
        f"UPDATE events SET body = {json_param(engine)} WHERE gateway_id = 'gw1' AND seq = 4",
        doc=json.dumps({"window": 3, "key": 1, "label": "非常满意"}),
    )
    await rewrite_chain(engine, "H1", DAY)
    report = await verify(engine)
    assert [(f.problem, f.position) for f in report.findings] == [
        (Problem.HEAD_MISMATCH, 3),
        (Problem.HEAD_MISMATCH, 5),
    ]  # only the seals see it
    assert "sealed head" in report.findings[0].detail

    # the seals' table emptied too: the file outside the database still holds them
    await raw(engine, "DELETE FROM ledger_seals")
    assert (await verify(engine)).ok  # what the database alone can tell
    from_file = parse_heads(seals.read_text(encoding="utf-8").splitlines())
    report = await verify(engine, published=from_file)
    assert [f.problem for f in report.findings] == [Problem.HEAD_MISMATCH] * 2


async def test_the_ledger_job_seals_at_its_interval(engine: AsyncEngine, tmp_path: Path) -> None:
    await evaluations(engine, Gateway("H1", "gw1"), 2)
    job = asyncio.create_task(
        run_forever(engine, 0.05, seal_every_s=0.2, seal_file=tmp_path / "seals.jsonl")
    )
    try:
        for _ in range(600):  # the first seal is due 0.2 s in; a loaded host may lag
            if (tmp_path / "seals.jsonl").exists():
                break
            await asyncio.sleep(0.05)
    finally:
        job.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await job
    async with engine.connect() as conn:
        sealed = (await conn.execute(select(ledger_seals))).all()
    assert [(s.hall_id, s.entries) for s in sealed] == [("H1", 2)]


def test_cli_seal_and_verify_against_the_seal_file(database_url: str, tmp_path: Path) -> None:
    from central.cli import app

    async def setup() -> None:
        engine = make_engine(database_url)
        try:
            await upgrade(engine)
            await register(engine, "H1", "gw1")
            await evaluations(engine, Gateway("H1", "gw1"), 3)
        finally:
            await engine.dispose()

    async def tamper() -> None:
        engine = make_engine(database_url)
        try:
            await raw(
                engine,
                f"UPDATE events SET body = {json_param(engine)} "
                "WHERE gateway_id = 'gw1' AND seq = 2",
                doc=json.dumps({"window": 3, "key": 1}),
            )
            day = business_date(datetime.now(UTC))
            await rewrite_chain(engine, "H1", day)
            await raw(engine, "DELETE FROM ledger_seals")
        finally:
            await engine.dispose()

    config = tmp_path / "central.yaml"
    config.write_text(f"database_url: {database_url}\ndata_dir: {tmp_path}\n")
    runner = CliRunner()
    asyncio.run(setup())
    assert runner.invoke(app, ["ledger", "append", "-c", str(config)]).exit_code == 0
    sealed = runner.invoke(app, ["ledger", "seal", "-c", str(config)])
    assert sealed.exit_code == 0 and json.loads(sealed.stdout)["entries"] == 3
    assert (tmp_path / "ledger-seals.jsonl").exists()
    assert runner.invoke(app, ["verify-ledger", "-c", str(config)]).exit_code == 0
    asyncio.run(tamper())
    bad = runner.invoke(app, ["verify-ledger", "-c", str(config)])
    assert bad.exit_code == 1 and "链头不符 head mismatch" in bad.output, bad.output
    assert runner.invoke(app, ["verify-ledger", "--no-seals", "-c", str(config)]).exit_code == 0
