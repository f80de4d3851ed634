"""The time-series sink against a real VictoriaMetrics: events ingested the real way come back
through /api/v1/export with the right values, no personal data, and no double writes."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr
from sqlalchemy import delete
from sqlalchemy.ext.asyncio import AsyncEngine

from central.config import TimeseriesConfig
from central.records.timeseries.samples import (
    ALLOWED_TAGS,
    METRICS,
    Deriver,
    StoredEvent,
    make_sample,
)
from central.records.timeseries.sink import TimeseriesSink, run_forever
from central.spine.ingest import Ingestor
from central.spine.reading import Incoming
from central.spine.registry import register
from central.store.db import make_engine
from central.store.migrate import upgrade
from central.store.schema_tsledger import timeseries_progress
from protocols import topics
from tests.support.hallevents import Gateway, health, key_press, queue
from tests.support.victoria import Victoria

STAFF, TICKETS = "100231", ("A001", "A002", "A003")
# VictoriaMetrics keeps what falls inside its retention and not too far ahead: stay near now
T0 = (datetime.now(UTC) - timedelta(hours=3)).replace(microsecond=0)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def ms(seconds: float) -> int:
    return int(at(seconds).timestamp() * 1000)


def scenario() -> list[tuple[str, dict[str, Any], datetime]]:
    """A morning at window 3 (and one call to window 4), as the gateway journals it."""
    return [
        ("queue.event", queue(1, "TK", ticket="A001", service="A01", waiting=1), at(0)),
        ("queue.event", queue(2, "TK", ticket="A002", service="A01", waiting=2), at(1)),
        ("queue.event", queue(3, "LI", window=3, staff=STAFF), at(2)),
        ("queue.event", queue(4, "CL", ticket="A001", window=3), at(60)),
        ("queue.event", queue(5, "ST", ticket="A001", window=3, staff=STAFF), at(70)),
        ("queue.event", queue(6, "FN", ticket="A001", window=3, staff=STAFF), at(300)),
        (
            "evaluator.invite",
            {
                "window": 3,
                "addr": 3,
                "timeout_s": 30,
                "status": "ok",
                "invitation": {
                    "session": 9,
                    "ticket": "A001",
                    "staff": STAFF,
                    "invited_mono_ns": 5,
                },
            },
            at(301),
        ),
        ("evaluator.key", key_press(3, 1, session=9, ticket="A001", staff=STAFF), at(305)),
        (
            "evaluator.key",
            key_press(3, 1, session=9, ticket="A001", staff=STAFF, marks=["RETRANSMIT"]),
            at(306),
        ),
        (
            "evaluator.key",
            key_press(3, 4, session=9, ticket="A001", staff=STAFF, marks=["SESSION_REPEAT"]),
            at(310),
        ),
        ("evaluator.health", health(3, online=False), at(500)),
        ("queue.event", queue(7, "HB", waiting=5), at(600)),
        ("queue.event", queue(8, "TK", ticket="A003", service="B02", waiting=1), at(650)),
        ("queue.event", queue(9, "CL", ticket="A002", window=4), at(700)),
        ("queue.event", queue(10, "PS", window=3, staff=STAFF), at(800)),
    ]


def state_message(backlog: int) -> Incoming:
    doc = {
        "v": 1,
        "hall": "H1",
        "gateway": "gw1",
        "boot": "cd" * 16,
        "online": True,
        "utc": at(900).isoformat(),
        "synced": True,
        "journal": {
            "head_seq": 20,
            "acked_seq": 20 - backlog,
            "backlog": backlog,
            "disk_bytes": 1,
            "limit_bytes": 10,
            "dropped_unacked": 0,
        },
    }
    return Incoming(
        topics.topic("H1", "gw1", topics.Channel.STATE), json.dumps(doc).encode(), datetime.now(UTC)
    )


def config_for(vm: Victoria, **kw: Any) -> TimeseriesConfig:
    return TimeseriesConfig(enabled=True, url=vm.url, interval_s=0.2, **kw)


def by_series(exported: list[dict[str, Any]]) -> dict[tuple[Any, ...], list[float]]:
    return {
        (
            m["metric"]["__name__"],
            *sorted(
                (k, v) for k, v in m["metric"].items() if k not in ("__name__", "hall", "gateway")
            ),
        ): m["values"]
        for m in exported
    }


@pytest.fixture
def database_at_head() -> bool:
    return True  # every test migrates first: start from the migrated template


@pytest.fixture
def vm(tmp_path: Path) -> Iterator[Victoria]:
    v = Victoria(tmp_path / "vm").start()
    try:
        yield v
    finally:
        v.stop()


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    eng = make_engine(database_url)
    await upgrade(eng)
    await register(eng, "H1", "gw1")
    yield eng
    await eng.dispose()


async def test_sink_writes_hall_metrics_without_personal_data_and_never_twice(
    engine: AsyncEngine, vm: Victoria
) -> None:
    gw = Gateway("H1", "gw1")
    ingestor = Ingestor(engine)
    await ingestor.ingest([gw.batch(scenario())])
    await ingestor.ingest_state(state_message(backlog=7))
    slot = int(datetime.now(UTC).timestamp()) // 60 * 60
    now = datetime.fromtimestamp(slot + 5, UTC)  # the restart below stays in the same slot
    sink = TimeseriesSink(engine, config_for(vm))
    assert await sink.run_once(now) == 15
    sink.close()

    exported = vm.export_until(series=18)
    series = by_series(exported)
    assert len(series) == len(exported) == 18, sorted(series)
    assert series[("hallwatch_wait_seconds", ("service", "A01"), ("window", "3"))] == [60.0]
    assert series[("hallwatch_wait_seconds", ("service", "A01"), ("window", "4"))] == [699.0]
    assert series[("hallwatch_queue_waiting", ("service", "A01"))] == [1.0, 2.0, 1.0, 0.0]
    assert series[("hallwatch_queue_waiting", ("service", "B02"))] == [1.0]
    assert series[("hallwatch_queue_tickets", ("service", "A01"))] == [1.0, 1.0]
    assert series[("hallwatch_queue_waiting_total",)] == [5.0]
    # the RETRANSMIT repeat is not an evaluation; the repeated session is kept apart
    assert series[
        (
            "hallwatch_evaluation_count",
            ("key", "1"),
            ("label", "非常满意"),
            ("status", "ok"),
            ("window", "3"),
        )
    ] == [1.0]
    assert series[
        (
            "hallwatch_evaluation_count",
            ("key", "4"),
            ("label", "办理时间太长"),
            ("status", "session_repeat"),
            ("window", "3"),
        )
    ] == [1.0]
    assert series[("hallwatch_invitation_sent", ("window", "3"))] == [1.0]
    assert series[("hallwatch_evaluator_online", ("window", "3"))] == [0.0]
    assert series[("hallwatch_window_present", ("source", "queue"), ("window", "3"))] == [1, 0]
    assert series[("hallwatch_gateway_online",)] == [1.0]
    assert series[("hallwatch_gateway_backlog",)] == [7.0]
    when = {m["metric"]["__name__"]: m["timestamps"] for m in exported}
    assert when["hallwatch_queue_waiting_total"] == [ms(600)]
    assert when["hallwatch_wait_seconds"] in ([ms(60)], [ms(700)])

    # nothing personal: only place/device tags, and no staff or ticket number anywhere
    labels = {k for m in exported for k in m["metric"]}
    assert labels <= ALLOWED_TAGS | {"__name__"}, labels - ALLOWED_TAGS
    values = {v for m in exported for v in m["metric"].values()}
    assert not values & {STAFF, *TICKETS}
    assert {m["metric"]["__name__"] for m in exported} <= set(METRICS)

    # a restart: a new sink continues at the watermark (the queue state is rebuilt from the
    # database, so A003, issued before the restart, gets its waiting time when called after)
    await ingestor.ingest(
        [gw.batch([("queue.event", queue(11, "CL", ticket="A003", window=3), at(950))])]
    )
    restarted = TimeseriesSink(engine, config_for(vm))
    assert await restarted.run_once(now + timedelta(seconds=1)) == 1
    assert await restarted.run_once(now + timedelta(seconds=2)) == 0
    restarted.close()
    after = by_series(vm.export_until(series=19))
    assert after.pop(("hallwatch_wait_seconds", ("service", "B02"), ("window", "3"))) == [300.0]
    assert after.pop(("hallwatch_queue_waiting", ("service", "B02"))) == [1.0, 0.0]
    assert after == {
        k: v for k, v in series.items() if k != ("hallwatch_queue_waiting", ("service", "B02"))
    }


async def test_a_repeat_after_a_crash_changes_no_query_result_under_dedup(
    tmp_path: Path,
) -> None:
    """The one window that writes twice: points written, watermark not yet committed. Same
    series, same timestamps: VictoriaMetrics with -dedup.minScrapeInterval=1ms (like InfluxDB)
    keeps one."""
    vm = Victoria(tmp_path / "vm", ["-dedup.minScrapeInterval=1ms"]).start()
    engine = make_engine(f"sqlite+aiosqlite:///{tmp_path / 'central.db'}")
    try:
        await upgrade(engine)
        await register(engine, "H1", "gw1")
        await Ingestor(engine).ingest([Gateway("H1", "gw1").batch(scenario())])
        queries = [
            "sum(count_over_time(hallwatch_evaluation_count[1d]))",
            "sum(count_over_time(hallwatch_queue_tickets[1d]))",
            "max(max_over_time(hallwatch_wait_seconds[1d]))",
        ]

        async def results() -> list[Any]:
            vm.export_until(series=10)
            return [vm.query(q)["data"]["result"][0]["value"][1] for q in queries]

        first = TimeseriesSink(engine, config_for(vm))
        await first.run_once()
        first.close()
        before = await results()
        assert before == ["2", "3", "699"]
        async with engine.begin() as conn:  # as if the process died before its commit
            await conn.execute(delete(timeseries_progress))
        again = TimeseriesSink(engine, config_for(vm))
        assert await again.run_once() == 15
        again.close()
        assert await results() == before
    finally:
        await engine.dispose()
        vm.stop()


async def test_secrets_never_reach_the_log(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The influx token and API bearer tokens stay out of every log line, at DEBUG too, through
    a successful write, a refused one (wrong password) and API calls with good and bad tokens."""
    import httpx

    from central.api.app import create_app
    from central.security.tokens import Role, create_token

    password, wrong = "s3cret-VM-pass-7781", "wr0ng-VM-pass-1234"
    vm = Victoria(
        tmp_path / "vm", ["-httpAuth.username=hw", f"-httpAuth.password={password}"]
    ).start()
    engine = make_engine(f"sqlite+aiosqlite:///{tmp_path / 'central.db'}")
    caplog.set_level(logging.DEBUG)
    try:
        await upgrade(engine)
        await register(engine, "H1", "gw1")
        await Ingestor(engine).ingest([Gateway("H1", "gw1").batch(scenario())])
        good = config_for(vm, token=SecretStr(f"hw:{password}"), auth_basic=True)
        assert password not in repr(good) and password not in good.model_dump_json()
        job = asyncio.create_task(run_forever(engine, good))
        assert len(await asyncio.to_thread(vm.export_until, 10)) >= 10
        job.cancel()
        refused = config_for(vm, token=SecretStr(f"hw:{wrong}"), auth_basic=True)
        async with engine.begin() as conn:
            await conn.execute(delete(timeseries_progress))
        job = asyncio.create_task(run_forever(engine, refused))
        for _ in range(100):
            if any("failed" in r.getMessage() for r in caplog.records):
                break
            await asyncio.sleep(0.1)
        job.cancel()
        assert any("HTTP 401" in r.getMessage() for r in caplog.records)

        token = await create_token(engine, Role.SUPERVISOR)
        transport = httpx.ASGITransport(app=create_app(engine))
        async with httpx.AsyncClient(transport=transport, base_url="http://central") as client:
            assert (
                await client.get("/api/v1/events", headers={"Authorization": f"Bearer {token}"})
            ).status_code == 200
            assert (
                await client.get("/api/v1/events", headers={"Authorization": f"Bearer {token}x"})
            ).status_code == 401
    finally:
        await asyncio.sleep(0)
        await engine.dispose()
        vm.stop()
    text = "\n".join(f"{r.getMessage()} {r.exc_text or ''} {r.args!r}" for r in caplog.records)
    assert caplog.records and "time-series sink writing to" in text
    for secret in (password, wrong, token, token[4:]):
        assert secret not in text


def test_same_millisecond_points_of_a_series_stay_distinct() -> None:
    deriver = Deriver()
    moment = at(0)
    stamps = []
    for seq in range(1, 4):  # the machine's buffer replayed at once after a reconnect
        ev = StoredEvent(
            "gw1",
            seq,
            "H1",
            "queue.event",
            moment,
            seq,
            "b",
            queue(seq, "TK", ticket=f"A{seq:03d}", service="A01", waiting=seq),
        )
        stamps += [s.ms for s in deriver.samples(ev) if s.metric == "hallwatch_queue_tickets"]
    assert stamps == [ms(0), ms(0) + 1, ms(0) + 2]


def test_transfer_moves_the_wait_to_the_new_queue_and_reboot_falls_back_to_utc() -> None:
    deriver = Deriver()

    def ev(seq: int, seconds: float, boot: str, **body: Any) -> StoredEvent:
        return StoredEvent(
            "gw1", seq, "H1", "queue.event", at(seconds), seq * 10**9, boot, queue(seq, **body)
        )

    deriver.samples(ev(1, 0, "b1", kind="TK", ticket="A001", service="A01", waiting=1))
    deriver.samples(ev(2, 100, "b1", kind="TR", ticket="A001", window=2, to_service="C03"))
    out = deriver.samples(ev(3, 400, "b2", kind="CL", ticket="A001", window=6))
    (wait,) = [s for s in out if s.metric == "hallwatch_wait_seconds"]
    assert dict(wait.tags)["service"] == "C03" and wait.value == 300.0


def test_a_camera_that_streams_but_cannot_judge_is_told_from_one_that_is_down() -> None:
    deriver = Deriver()
    seen = {}
    for seq, state in enumerate(("online", "too_dark", "stalled", "frozen"), start=1):
        ev = StoredEvent(
            "gw1",
            seq,
            "H1",
            "camera.health",
            at(seq),
            seq * 10**9,
            "b",
            {"camera": "c1", "state": state, "reason": "…", "advice": "…"},
        )
        seen[state] = {s.metric: s.value for s in deriver.samples(ev)}
    assert seen["online"] == {"hallwatch_camera_online": 1, "hallwatch_camera_blind": 0}
    assert seen["too_dark"] == {"hallwatch_camera_online": 0, "hallwatch_camera_blind": 1}
    assert seen["stalled"] == {"hallwatch_camera_online": 0, "hallwatch_camera_blind": 0}
    assert seen["frozen"] == {"hallwatch_camera_online": 0, "hallwatch_camera_blind": 1}


def test_a_personal_tag_is_refused_before_it_leaves() -> None:
    with pytest.raises(ValueError, match="staff"):
        make_sample("hallwatch_window", "present", 1, 0, hall="H1", staff=STAFF)


async def test_the_aggregator_runs_the_sink_and_the_ledger_and_logs_no_secret(
    broker: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The aggregator process as started in production (its two jobs registered in start()),
    with every log line captured at DEBUG: data reaches the store and the ledger, the influx
    password appears nowhere."""
    from sqlalchemy import func, select

    from central.config import BrokerConfig, CentralConfig
    from central.spine.aggregator import Aggregator
    from central.store.schema_tsledger import ledger_entries

    password = "an0ther-VM-pass-5512"
    vm = Victoria(
        tmp_path / "vm", ["-httpAuth.username=hw", f"-httpAuth.password={password}"]
    ).start()
    caplog.set_level(logging.DEBUG)
    config = CentralConfig(
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'central.db'}",
        data_dir=tmp_path / "central",
        broker=BrokerConfig(port=broker.port, instance="ts1"),
        timeseries=config_for(vm, token=SecretStr(f"hw:{password}"), auth_basic=True),
    )
    aggregator = Aggregator(config)
    await aggregator.start()
    try:
        await register(aggregator.engine, "H1", "gw1")
        await aggregator.ingestor.ingest([Gateway("H1", "gw1").batch(scenario())])
        exported = await asyncio.to_thread(vm.export_until, 17)  # no state: no backlog
        assert {"hallwatch_evaluation_count", "hallwatch_wait_seconds"} <= {
            m["metric"]["__name__"] for m in exported
        }
        for _ in range(100):
            async with aggregator.engine.connect() as conn:
                chained = (
                    await conn.execute(select(func.count()).select_from(ledger_entries))
                ).scalar()
            if chained == 3:  # three key presses, the RETRANSMIT repeat included: it is a record
                break
            await asyncio.sleep(0.1)
        assert chained == 3
    finally:
        await aggregator.stop()
        vm.stop()
    text = "\n".join(f"{r.getMessage()} {r.exc_text or ''}" for r in caplog.records)
    assert "time-series sink writing to" in text and password not in text
