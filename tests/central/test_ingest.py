"""Ingest against real SQLite and PostgreSQL: exactly once, gaps, loss reports, quarantine."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from central.ingest import Incoming, Ingestor
from central.registry import register
from central.store.db import make_engine
from central.store.migrate import upgrade
from central.store.schema import events, lost_ranges, quarantine
from protocols import topics

BOOT = "ab" * 16
T0 = datetime(2026, 11, 20, 1, 2, 3, 456000, tzinfo=UTC)


def event(seq: int, *, utc: datetime = T0, kind: str = "gen.sample", body: object = None,
          synced: bool = True, mono_ns: int | None = None) -> dict[str, object]:
    return {"seq": seq, "utc": utc.isoformat().replace("+00:00", "Z"),
            "mono_ns": mono_ns if mono_ns is not None else seq * 1000, "boot": BOOT,
            "synced": synced, "kind": kind,
            "body": body if body is not None else {"n": seq, "run": "r1"}}


def message(seqs: range | list[int], *, hall: str = "H1", gateway: str = "gw1",
            topic_hall: str | None = None, lost_from: int | None = None,
            **kw: object) -> Incoming:
    doc: dict[str, object] = {"v": 1, "hall": hall, "gateway": gateway, "sender_boot": BOOT,
                              "events": [event(s, **kw) for s in seqs]}  # type: ignore[arg-type]
    if lost_from is not None:
        doc["lost_from"] = lost_from
    topic = topics.topic(topic_hall or hall, gateway, topics.Channel.EVENTS)
    return Incoming(topic, json.dumps(doc).encode(), datetime.now(UTC))


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    eng = make_engine(database_url)
    await upgrade(eng)
    await register(eng, "H1", "gw1")
    await register(eng, "H2", "gw2")
    yield eng
    await eng.dispose()


async def count(engine: AsyncEngine, table=events) -> int:  # type: ignore[no-untyped-def]
    async with engine.connect() as conn:
        return int((await conn.execute(select(func.count()).select_from(table))).scalar() or 0)


async def test_redelivery_changes_nothing_but_is_acknowledged(engine: AsyncEngine) -> None:
    ingestor = Ingestor(engine)
    first = await ingestor.ingest([message(range(1, 101))])
    again = await ingestor.ingest([message(range(1, 101)), message(range(51, 151))])
    assert first[0].committed_through == 100
    assert again[0].committed_through == 150 and again[0].replay_from is None
    assert await count(engine) == 150


async def test_gap_is_noticed_replay_requested_then_filled(engine: AsyncEngine) -> None:
    ingestor = Ingestor(engine)
    await ingestor.ingest([message(range(1, 11))])
    (ack,) = await ingestor.ingest([message(range(21, 31))])  # 11..20 went missing
    assert ack.committed_through == 10 and ack.replay_from == 11
    (ack,) = await ingestor.ingest([message(range(11, 21))])
    assert ack.committed_through == 30 and ack.replay_from is None
    assert await count(engine) == 30


async def test_many_events_in_one_millisecond_all_arrive(engine: AsyncEngine) -> None:
    await Ingestor(engine).ingest([message(range(1, 1001), utc=T0)])
    async with engine.connect() as conn:
        n, distinct_utc = (await conn.execute(
            select(func.count(), func.count(events.c.utc.distinct())))).one()
    assert (n, distinct_utc) == (1000, 1)


async def test_reported_loss_is_recorded_and_closes_the_gap(engine: AsyncEngine) -> None:
    ingestor = Ingestor(engine)
    await ingestor.ingest([message(range(1, 6))])
    (ack,) = await ingestor.ingest([message(range(9, 12), lost_from=6)])
    assert ack.committed_through == 11 and ack.replay_from is None
    async with engine.connect() as conn:
        row = (await conn.execute(select(lost_ranges))).one()
    assert (row.first_seq, row.last_seq) == (6, 8)


@pytest.mark.parametrize(("build", "reason"), [
    (lambda: message(range(1, 3), hall="H2"), "belongs to hall 'H1', not 'H2'"),
    (lambda: message(range(1, 3), topic_hall="H2"), "envelope says H1/gw1 but the topic says H2"),
    (lambda: message(range(1, 3), gateway="gw9"), "unknown gateway 'gw9'"),
    (lambda: Incoming("hw/v1/H1/gw1/events", b"{not json", T0), "schema:"),
    (lambda: Incoming("hw/v1/H1/gw1/events",
                      message(range(1, 3)).payload.replace(b'"v": 1', b'"v": 2'), T0),
     "unsupported protocol version 2"),
    (lambda: Incoming("hw/v1/H1/gw1/events", b"x" * (1024 * 1024 + 1), T0), "exceeds"),
    (lambda: Incoming("hw/v2/H1/gw1/events", message(range(1, 3)).payload, T0), "version"),
    (lambda: Incoming("hw/v1/H.1/gw1/events", message(range(1, 3)).payload, T0), "hall"),
    (lambda: message([1, 3]), "consecutive seq"),
])
async def test_invalid_messages_are_quarantined_with_reason(
    engine: AsyncEngine, build, reason: str  # type: ignore[no-untyped-def]
) -> None:
    ingestor = Ingestor(engine)
    acks = await ingestor.ingest([build()])
    assert acks == []
    assert await count(engine) == 0
    async with engine.connect() as conn:
        rows = (await conn.execute(select(quarantine))).all()
    assert len(rows) == 1 and reason in rows[0].reason, rows[0].reason
    await ingestor.ingest([build()])  # the same bad message again is not stored twice
    assert await count(engine, quarantine) == 1


async def test_bad_event_inside_good_batch_is_quarantined_and_seq_consumed(
    engine: AsyncEngine,
) -> None:
    good = message(range(1, 4))
    doc = json.loads(good.payload)
    doc["events"][1]["kind"] = "no.such_kind"
    doc["events"][2]["body"] = {"n": "three", "run": "r1"}
    (ack,) = await Ingestor(engine).ingest([Incoming(good.topic, json.dumps(doc).encode(), T0)])
    assert ack.committed_through == 3
    assert await count(engine) == 1
    async with engine.connect() as conn:
        reasons = sorted(r.reason for r in (await conn.execute(select(quarantine))).all())
    assert "unknown event kind 'no.such_kind'" in reasons[1]
    assert reasons[0].startswith("body of gen.sample: schema: n")


async def test_unsynced_stamps_are_corrected_from_the_same_boots_synced_event(
    engine: AsyncEngine,
) -> None:
    from central.api.events import list_events
    from central.auth import Principal, Role

    wrong = datetime(2001, 1, 1, tzinfo=UTC)  # a Pi after a power cut, before NTP
    true_t1 = T0 + timedelta(seconds=10)
    ingestor = Ingestor(engine)
    await ingestor.ingest([message([1], utc=wrong, synced=False, mono_ns=5_000_000_000)])
    await ingestor.ingest([message([2], utc=true_t1, synced=True, mono_ns=15_000_000_000)])
    page = await list_events(engine, Principal(Role.SUPERVISOR), gateway="gw1", hall=None,
                             kind=None, since=None, until=None, cursor=None, limit=10)
    first = next(i for i in page.items if i.seq == 1)
    assert first.utc == wrong and first.utc_corrected == T0
