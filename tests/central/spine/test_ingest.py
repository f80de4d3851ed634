"""Ingest against real SQLite and PostgreSQL: exactly once, gaps, loss reports, quarantine."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import TypedDict, Unpack

import pytest
from sqlalchemy import Table, delete, func, select
from sqlalchemy import event as sqlalchemy_event
from sqlalchemy.ext.asyncio import AsyncEngine

from central.spine.ingest import Ingestor
from central.spine.reading import Incoming
from central.spine.registry import register
from central.store.db import make_engine
from central.store.migrate import upgrade
from central.store.schema import events, gateways, lost_ranges, pending_ranges, quarantine
from protocols import topics

BOOT = "ab" * 16
T0 = datetime(2026, 11, 20, 1, 2, 3, 456000, tzinfo=UTC)


class EventFields(TypedDict, total=False):
    """What a test may set on the events of ``message``: ``event``'s keywords."""

    utc: datetime
    kind: str
    body: object
    synced: bool
    mono_ns: int | None


def event(
    seq: int,
    *,
    utc: datetime = T0,
    kind: str = "gen.sample",
    body: object = None,
    synced: bool = True,
    mono_ns: int | None = None,
) -> dict[str, object]:
    return {
        "seq": seq,
        "utc": utc.isoformat().replace("+00:00", "Z"),
        "mono_ns": mono_ns if mono_ns is not None else seq * 1000,
        "boot": BOOT,
        "synced": synced,
        "kind": kind,
        "body": body if body is not None else {"n": seq, "run": "r1"},
    }


def message(
    seqs: range | list[int],
    *,
    hall: str = "H1",
    gateway: str = "gw1",
    topic_hall: str | None = None,
    lost_from: int | None = None,
    epoch: str | None = None,
    **kw: Unpack[EventFields],
) -> Incoming:
    doc: dict[str, object] = {
        "v": 1,
        "hall": hall,
        "gateway": gateway,
        "sender_boot": BOOT,
        "events": [event(s, **kw) for s in seqs],
    }
    if lost_from is not None:
        doc["lost_from"] = lost_from
    if epoch is not None:
        doc["epoch"] = epoch
    topic = topics.topic(topic_hall or hall, gateway, topics.Channel.EVENTS)
    return Incoming(topic, json.dumps(doc).encode(), datetime.now(UTC))


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


async def count(engine: AsyncEngine, table: Table = events) -> int:
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
        n, distinct_utc = (
            await conn.execute(select(func.count(), func.count(events.c.utc.distinct())))
        ).one()
    assert (n, distinct_utc) == (1000, 1)


async def test_reported_loss_is_recorded_and_closes_the_gap(engine: AsyncEngine) -> None:
    ingestor = Ingestor(engine)
    await ingestor.ingest([message(range(1, 6))])
    (ack,) = await ingestor.ingest([message(range(9, 12), lost_from=6)])
    assert ack.committed_through == 11 and ack.replay_from is None
    async with engine.connect() as conn:
        row = (await conn.execute(select(lost_ranges))).one()
    assert (row.first_seq, row.last_seq) == (6, 8)


@pytest.mark.parametrize(
    ("build", "reason"),
    [
        (lambda: message(range(1, 3), hall="H2"), "belongs to hall 'H1', not 'H2'"),
        (
            lambda: message(range(1, 3), topic_hall="H2"),
            "envelope says H1/gw1 but the topic says H2",
        ),
        (lambda: message(range(1, 3), gateway="gw9"), "unknown gateway 'gw9'"),
        (lambda: Incoming("hw/v1/H1/gw1/events", b"{not json", T0), "schema:"),
        (
            lambda: Incoming(
                "hw/v1/H1/gw1/events",
                message(range(1, 3)).payload.replace(b'"v": 1', b'"v": 2'),
                T0,
            ),
            "unsupported protocol version 2",
        ),
        (lambda: Incoming("hw/v1/H1/gw1/events", b"x" * (1024 * 1024 + 1), T0), "exceeds"),
        (lambda: Incoming("hw/v2/H1/gw1/events", message(range(1, 3)).payload, T0), "version"),
        (lambda: Incoming("hw/v1/H.1/gw1/events", message(range(1, 3)).payload, T0), "hall"),
        (lambda: message([1, 3]), "consecutive seq"),
    ],
)
async def test_invalid_messages_are_quarantined_with_reason(
    engine: AsyncEngine, build: Callable[[], Incoming], reason: str
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
    from central.security.tokens import Principal, Role

    wrong = datetime(2001, 1, 1, tzinfo=UTC)  # a Pi after a power cut, before NTP
    true_t1 = T0 + timedelta(seconds=10)
    ingestor = Ingestor(engine)
    await ingestor.ingest([message([1], utc=wrong, synced=False, mono_ns=5_000_000_000)])
    await ingestor.ingest([message([2], utc=true_t1, synced=True, mono_ns=15_000_000_000)])
    page = await list_events(
        engine,
        Principal(Role.SUPERVISOR),
        gateway="gw1",
        hall=None,
        kind=None,
        since=None,
        until=None,
        cursor=None,
        limit=10,
    )
    first = next(i for i in page.items if i.seq == 1)
    assert first.utc == wrong and first.utc_corrected == T0


# -- isolation ----------------------------------------------------------------------------


def poisoned(msg: Incoming, index: int, path: tuple[str, ...], value: object) -> Incoming:
    doc = json.loads(msg.payload)
    target = doc["events"][index]
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return Incoming(msg.topic, json.dumps(doc).encode(), msg.received_at)


async def outcome_by_seq(engine: AsyncEngine, gateway: str) -> dict[int, str]:
    """Each seq central answers for: 'stored' or the quarantine reason."""
    async with engine.connect() as conn:
        stored = (
            (await conn.execute(select(events.c.seq).where(events.c.gateway_id == gateway)))
            .scalars()
            .all()
        )
        held = (
            await conn.execute(
                select(quarantine.c.seq, quarantine.c.reason).where(
                    quarantine.c.gateway_id == gateway, quarantine.c.seq.is_not(None)
                )
            )
        ).all()
    found = {seq: "stored" for seq in stored}
    for seq, reason in held:
        assert seq not in found, f"seq {seq} both stored and quarantined"
        found[seq] = reason
    return found


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (("body", "run"), "a\x00b"),  # PostgreSQL text/jsonb cannot hold U+0000
        (("mono_ns",), 2**63),  # past a signed 64-bit column
        (("body", "n"), 2**64),  # past every integer column
        (("utc",), "0001-01-01T00:00:00Z"),  # the clock offset overflows int64
        (("body",), {"n": 1, "run": "r", "x": {"y": [[[[[[[[[[1]]]]]]]]]]}}),  # not in the model
    ],
)
async def test_one_poisoned_event_is_quarantined_and_the_rest_of_the_group_commits(
    engine: AsyncEngine, path: tuple[str, ...], value: object
) -> None:
    bad = poisoned(message(range(1, 6)), 2, path, value)
    acks = await Ingestor(engine).ingest([bad, message(range(1, 6), hall="H2", gateway="gw2")])
    assert {(a.gateway, a.committed_through) for a in acks} == {("gw1", 5), ("gw2", 5)}
    assert await outcome_by_seq(engine, "gw2") == dict.fromkeys(range(1, 6), "stored")
    gw1 = await outcome_by_seq(engine, "gw1")
    assert sorted(gw1) == [1, 2, 3, 4, 5]  # each seq stored or quarantined, never both
    assert all(gw1[s] == "stored" for s in (1, 2, 4, 5))
    if gw1[3] != "stored":  # where it was quarantined, the whole event is kept
        async with engine.connect() as conn:
            payload = (
                await conn.execute(select(quarantine.c.payload).where(quarantine.c.seq == 3))
            ).scalar_one()
        assert json.loads(payload)["seq"] == 3 and gw1[3]


async def test_unreadable_message_holds_back_only_its_own_gateway(engine: AsyncEngine) -> None:
    deep = "[" * 5000 + "]" * 5000
    good = message(range(1, 4))
    payload = good.payload.replace(b'"run": "r1"}', b'"run": "r1", "x": ' + deep.encode() + b"}", 1)
    acks = await Ingestor(engine).ingest(
        [Incoming(good.topic, payload, T0), message(range(1, 4), hall="H2", gateway="gw2")]
    )
    assert [(a.gateway, a.committed_through) for a in acks] == [("gw2", 3)]
    async with engine.connect() as conn:
        (reason,) = (await conn.execute(select(quarantine.c.reason))).scalars().all()
    assert reason.startswith(("schema:", "unreadable:")), reason


# -- sequence truth -----------------------------------------------------------------------


async def alarms(engine: AsyncEngine, gateway: str) -> dict[str, tuple[int, str]]:
    from central.api.gateways import list_gateways
    from central.security.tokens import Principal, Role

    (gw,) = [
        g
        for g in await list_gateways(engine, Principal(Role.SUPERVISOR), None)
        if g.gateway == gateway
    ]
    return {a.kind: (a.count, a.detail) for a in gw.alarms}


async def test_seq_again_with_other_content_is_quarantined_and_raised_never_ignored(
    engine: AsyncEngine,
) -> None:
    ingestor = Ingestor(engine)
    await ingestor.ingest([message(range(1, 4))])
    (ack,) = await ingestor.ingest([message(range(1, 4))])  # the same again: fine, silent
    assert ack.committed_through == 3 and await alarms(engine, "gw1") == {}
    changed = poisoned(message(range(1, 4)), 1, ("body", "n"), 200)
    (ack,) = await ingestor.ingest([changed])  # a gateway without epochs: kept here, raised
    assert ack.committed_through == 3
    assert alarms_kinds(await alarms(engine, "gw1")) == {"seq_conflict": 1}
    async with engine.connect() as conn:
        row = (await conn.execute(select(quarantine))).one()
        body = (await conn.execute(select(events.c.body).where(events.c.seq == 2))).scalar_one()
    assert "seq 2 arrived again with other content" in row.reason
    assert json.loads(row.payload)["events"][1]["body"]["n"] == 200 and body["n"] == 2


def alarms_kinds(found: dict[str, tuple[int, str]]) -> dict[str, int]:
    return {kind: n for kind, (n, _) in found.items()}


async def test_other_content_from_an_epoch_gateway_is_refused_and_renumbered(
    engine: AsyncEngine,
) -> None:
    ingestor = Ingestor(engine)
    await ingestor.ingest([message(range(1, 11), epoch="aaaa0001")])
    # restored from an old copy: 1..5 as central has them, 6.. are new events under old numbers
    (ack,) = await ingestor.ingest([message(range(1, 6), epoch="aaaa0001")])
    assert ack.committed_through == 5, "never acknowledge what the gateway did not send"
    restored = poisoned(message(range(5, 9), epoch="aaaa0001"), 1, ("body", "n"), 600)
    (ack,) = await ingestor.ingest([restored])
    assert (ack.epoch, ack.committed_through, ack.rebase_to) == ("aaaa0001", 5, 11)
    assert alarms_kinds(await alarms(engine, "gw1")) == {"seq_conflict": 1}
    (ack,) = await ingestor.ingest([message(range(11, 14), epoch="bbbb0002")])
    assert (ack.epoch, ack.committed_through, ack.rebase_to) == ("bbbb0002", 13, None)
    assert alarms_kinds(await alarms(engine, "gw1")) == {"seq_conflict": 1, "journal_epoch": 1}
    assert await count(engine) == 13


async def test_a_replaced_journal_is_a_new_epoch_renumbered_above_the_old_one(
    engine: AsyncEngine,
) -> None:
    ingestor = Ingestor(engine)
    (ack,) = await ingestor.ingest([message(range(1, 11), epoch="aaaa0001")])
    assert (ack.epoch, ack.committed_through) == ("aaaa0001", 10)
    (ack,) = await ingestor.ingest(
        [message(range(1, 4), epoch="cccc0003", body={"n": 0, "run": "new"})]
    )
    assert (ack.epoch, ack.committed_through, ack.rebase_to) == ("cccc0003", 0, 11)
    assert await count(engine) == 10  # nothing of the new journal taken for the old one's
    found = await alarms(engine, "gw1")
    assert "asked to renumber from 11" in found["journal_epoch"][1]
    (ack,) = await ingestor.ingest([message(range(11, 14), epoch="dddd0004")])
    assert (ack.epoch, ack.committed_through) == ("dddd0004", 13)
    async with engine.connect() as conn:
        epoch = (await conn.execute(select(gateways.c.epoch))).scalars().all()
    assert "dddd0004" in epoch


async def test_seq_jump_and_lost_from_abuse_are_refused_and_lose_nothing(
    engine: AsyncEngine,
) -> None:
    ingestor = Ingestor(engine)
    await ingestor.ingest([message(range(1, 4))])
    assert await ingestor.ingest([message([4 + 2**62], lost_from=4)]) == []
    assert await ingestor.ingest([message([2**40])]) == []
    (ack,) = await ingestor.ingest([message(range(4, 7))])  # the real next events
    assert ack.committed_through == 6 and await count(engine) == 6
    assert await count(engine, lost_ranges) == 0
    assert alarms_kinds(await alarms(engine, "gw1")) == {"seq_jump": 2}


async def test_quarantine_is_bounded_per_gateway_oldest_first_counted(
    engine: AsyncEngine,
) -> None:
    ingestor = Ingestor(engine, quarantine_rows=5, quarantine_bytes=300_000)
    junk = [Incoming("hw/v1/H1/gw1/events", b"{" + bytes([65 + i]) * 1000, T0) for i in range(8)]
    big = [Incoming("hw/v1/H2/gw2/events", b"[" + bytes([65 + i]) * 100_000, T0) for i in range(6)]
    for msg in [*junk, *big]:
        await ingestor.ingest([msg])
    async with engine.connect() as conn:
        kept: dict[str, int] = dict(
            (
                await conn.execute(
                    select(quarantine.c.gateway_id, func.count()).group_by(quarantine.c.gateway_id)
                )
            ).all()
        )
        newest = (
            (
                await conn.execute(
                    select(quarantine.c.payload)
                    .where(quarantine.c.gateway_id == "gw1")
                    .order_by(quarantine.c.id)
                )
            )
            .scalars()
            .all()
        )
    assert kept == {"gw1": 5, "gw2": 2}
    assert [bytes(p[1:2]) for p in newest] == [b"D", b"E", b"F", b"G", b"H"]
    assert alarms_kinds(await alarms(engine, "gw1")) == {"quarantine_dropped": 3}
    assert alarms_kinds(await alarms(engine, "gw2")) == {"quarantine_dropped": 4}


async def test_a_state_message_the_store_cannot_hold_is_quarantined_not_raised(
    engine: AsyncEngine,
) -> None:
    state = {
        "v": 1,
        "hall": "H1",
        "gateway": "gw1",
        "boot": BOOT,
        "online": True,
        "utc": "2026-11-20T01:02:03Z",
        "synced": True,
        "software": "x",
        "health": {"evaluator": "a\x00b", "n": 2**70},
    }
    msg = Incoming("hw/v1/H1/gw1/state", json.dumps(state).encode(), T0)
    ingestor = Ingestor(engine)
    stored = await ingestor.ingest_state(msg)  # never raises: one gateway's state is its own
    async with engine.connect() as conn:
        reasons = (await conn.execute(select(quarantine.c.reason))).scalars().all()
        online = (
            await conn.execute(select(gateways.c.online).where(gateways.c.gateway_id == "gw1"))
        ).scalar()
    assert (stored is None and len(reasons) == 1 and online is False) or (
        stored is not None and reasons == [] and online is True
    ), reasons
    (ack,) = await ingestor.ingest([message(range(1, 3))])  # the stream goes on
    assert ack.committed_through == 2


async def test_a_group_costs_the_same_statements_for_one_gateway_or_twenty(
    engine: AsyncEngine,
) -> None:
    """Round trips per group, not per message: the gateways' rows, their ranges beyond a gap,
    the events and the new committed seqs each take one statement for the whole group."""
    for n in range(3, 21):
        await register(engine, f"H{n}", f"gw{n}")
    statements: list[str] = []

    def counted(_conn: object, _cursor: object, sql: str, *_rest: object) -> None:
        statements.append(sql.split()[0].upper())

    sqlalchemy_event.listen(engine.sync_engine, "before_cursor_execute", counted)
    ingestor = Ingestor(engine)
    try:
        await ingestor.ingest([message(range(1, 4))])
        alone = len(statements)
        statements.clear()
        group = [message(range(1, 4), hall=f"H{n}", gateway=f"gw{n}") for n in range(2, 21)] + [
            message(range(4, 7))
        ]
        acks = await ingestor.ingest(group)
    finally:
        sqlalchemy_event.remove(engine.sync_engine, "before_cursor_execute", counted)
    assert len(acks) == 20 and all(a.committed_through in (3, 6) for a in acks)
    assert await count(engine) == 63
    assert len(statements) == alone, statements  # the same few, whatever the group holds
    assert alone <= 5, statements


async def test_a_stored_row_where_none_can_be_sends_the_group_again_by_insert(
    engine: AsyncEngine,
) -> None:
    """Events known to be new go in by COPY on PostgreSQL; a row there all the same (beyond
    the committed seq, with no range beyond a gap) fails it on the key, and the group is
    committed again with INSERT … ON CONFLICT DO NOTHING: nothing quarantined, nothing twice."""
    ingestor = Ingestor(engine)
    await ingestor.ingest([message(range(1, 11))])
    await ingestor.ingest([message(range(15, 16))])  # beyond a gap: a pending range
    async with engine.begin() as conn:
        await conn.execute(delete(pending_ranges))  # what a lost range record would leave
    (ack,) = await ingestor.ingest([message(range(11, 21))])
    assert ack.committed_through == 20
    assert await count(engine) == 20 and await count(engine, quarantine) == 0
