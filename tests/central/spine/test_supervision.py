"""No silent death at central: the aggregator's tasks restart and show in /healthz, the
gateway's own tasks reach GET /api/v1/gateways, configuration is read before anything starts,
and stopping closes everything even after a failure. Real Mosquitto, SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy.pool import QueuePool

from central.api.app import create_app
from central.cases import ladder
from central.config import CentralConfig
from central.correlation import job as correlation_job
from central.gaming import job as gaming_job
from central.gateways import command_queue
from central.outbox.worker import Deliverer
from central.records.ledger import append as ledger_append
from central.records.timeseries import sink as timeseries_sink
from central.security.tokens import Role, create_token
from central.spine.aggregator import Aggregator
from central.spine.reading import Incoming
from central.spine.registry import register
from hallkit.configtext import ConfigError
from hallkit.supervise import Supervisor, healthz
from protocols.envelope import GatewayState, JournalState, TaskStatus, encode
from protocols.topics import Channel, topic
from tests.support.broker import Broker


@pytest.fixture
def database_at_head() -> bool:
    return True  # the aggregator and the tests migrate first: start from the template


CENTRAL = str(Path(sys.executable).parent / "hallwatch-central")


def _raises_once(
    original: Callable[..., Awaitable[None]], error: Exception
) -> Callable[..., Awaitable[None]]:
    calls = 0

    async def patched(*args: Any, **kwargs: Any) -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise error
        await original(*args, **kwargs)

    return patched


async def _until(predicate: Callable[[], bool], what: str, timeout: float = 20.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


def _config(tmp_path: Path, database_url: str, broker: Broker) -> CentralConfig:
    return CentralConfig.model_validate(
        {
            "database_url": database_url,
            "data_dir": str(tmp_path / "central"),
            "broker": {"host": "127.0.0.1", "port": broker.port, "instance": "sup1"},
            "http": {"enabled": False},
        }
    )


async def test_each_task_that_raises_is_restarted_and_shown(
    tmp_path: Path, database_url: str, broker: Broker, monkeypatch: pytest.MonkeyPatch
) -> None:
    broken = {
        "cases.ladder": (ladder, "run_forever", RuntimeError("ladder broken")),
        "correlation": (correlation_job, "run_forever", RuntimeError("correlation broken")),
        "timeseries": (timeseries_sink, "run_forever", ConnectionError("sink broken")),
        "ledger": (ledger_append, "run_forever", RuntimeError("ledger broken")),
        "commands": (command_queue, "run_forever", RuntimeError("commands broken")),
        "ingest": (Aggregator, "_ingest_loop", RuntimeError("ingest broken")),
        "outbox": (Deliverer, "run_forever", RuntimeError("outbox broken")),
        "anomalies": (gaming_job, "run_forever", RuntimeError("anomalies broken")),
    }
    for module, name, error in broken.values():
        monkeypatch.setattr(module, name, _raises_once(getattr(module, name), error))
    aggregator = Aggregator(_config(tmp_path, database_url, broker))
    await aggregator.start()
    transport = httpx.ASGITransport(app=create_app(aggregator.engine, tasks=aggregator.supervisor))
    try:
        records = aggregator.supervisor.records
        # the sink is off in this configuration: once restarted it returns at once
        expected = {name: "stopped" if name == "timeseries" else "running" for name in broken}
        await _until(
            lambda: all(
                records[n].restarts == 1 and records[n].state == expected[n] for n in broken
            ),
            "every task restarted",
        )
        await _until(lambda: records["mqtt.consumer"].state == "running", "the consumer")
        async with httpx.AsyncClient(transport=transport, base_url="http://central") as http:
            answer = await http.get("/healthz")
        assert answer.status_code == 200
        health = answer.json()
        for name, (_, _, error) in broken.items():
            task = health["tasks"][name]
            assert (task["state"], task["restarts"]) == (expected[name], 1), (name, task)
            assert task["last_error"] == f"{type(error).__name__}: {error}"
        assert health["status"] == "ok"

        # the consumer's connection is a record too: a broker outage shows, then heals
        broker.stop()
        await _until(lambda: records["mqtt.consumer"].state == "restarting", "the outage")
        assert "disconnected" in (records["mqtt.consumer"].last_error or "")
        assert aggregator.supervisor.overall() == "degraded"
        broker.start()
        await _until(lambda: records["mqtt.consumer"].state == "running", "reconnected", 30)
    finally:
        await aggregator.stop()
    assert records["mqtt.consumer"].state == "stopped"


async def test_a_task_given_up_still_lets_stop_close_everything(
    tmp_path: Path, broker: Broker, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def broken(*_: Any, **__: Any) -> None:
        raise RuntimeError("always")

    monkeypatch.setattr(ledger_append, "run_forever", broken)
    aggregator = Aggregator(_config(tmp_path, f"sqlite+aiosqlite:///{tmp_path / 'c.db'}", broker))
    aggregator.supervisor.first_delay_s = 0.001
    await aggregator.start()
    await asyncio.wait_for(aggregator.failed.wait(), 20)
    assert aggregator.failure == "ledger: RuntimeError: always"
    await aggregator.stop()  # used to re-raise the task's error and skip the rest
    assert aggregator.consumer.record.state == "stopped"
    pool = aggregator.engine.pool
    assert isinstance(pool, QueuePool) and pool.checkedout() == 0


async def test_a_bad_correlation_file_stops_the_start_naming_file_and_line(
    tmp_path: Path, broker: Broker
) -> None:
    config = _config(tmp_path, f"sqlite+aiosqlite:///{tmp_path / 'c.db'}", broker)
    config.data_dir.mkdir(parents=True)
    bad = config.data_dir / "correlation.yaml"
    bad.write_text("rapid_repeat_s: 5\ncase_tolerance_s: soon\n")
    aggregator = Aggregator(config)
    with pytest.raises(ConfigError, match=r"correlation\.yaml:2.*case_tolerance_s"):
        await aggregator.start()
    await aggregator.stop()

    # and the service says so and exits, instead of serving without correlation
    conf = tmp_path / "central.yaml"
    conf.write_text(
        f"database_url: sqlite+aiosqlite:///{tmp_path / 'c.db'}\n"
        f"data_dir: {config.data_dir}\n"
        f"broker: {{host: 127.0.0.1, port: {broker.port}}}\n"
        "http: {enabled: false}\n"
    )
    done = subprocess.run(  # noqa: ASYNC221
        [CENTRAL, "serve", "-c", str(conf)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2, done.stderr
    assert "correlation.yaml:2" in done.stderr and "case_tolerance_s" in done.stderr

    # a certificate the configuration names but that is not there: the line, no traceback
    bad.unlink()
    conf.write_text(
        f"database_url: sqlite+aiosqlite:///{tmp_path / 'c.db'}\n"
        f"data_dir: {config.data_dir}\n"
        "http: {enabled: false}\n"
        f"broker:\n  host: 127.0.0.1\n  port: {broker.port}\n  tls:\n"
        f"    ca: {conf}\n    cert: {tmp_path / 'gone.pem'}\n    key: {conf}\n"
    )
    done = subprocess.run(  # noqa: ASYNC221
        [CENTRAL, "serve", "-c", str(conf)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2, done.stderr
    assert (
        f"{conf}:9: broker.tls.cert: 无法读取 / cannot read {tmp_path / 'gone.pem'}" in done.stderr
    )
    assert "Traceback" not in done.stderr


async def test_the_gateways_tasks_reach_the_gateway_list(database_url: str, tmp_path: Path) -> None:
    from central.spine.ingest import Ingestor
    from central.store.db import make_engine
    from central.store.migrate import upgrade

    engine = make_engine(database_url)
    await upgrade(engine)
    await register(engine, "H1", "gw1")
    now = datetime.now(UTC)
    state = GatewayState(
        hall="H1",
        gateway="gw1",
        boot="0123456789abcdef",
        online=True,
        utc=now,
        synced=True,
        journal=JournalState(
            head_seq=5, acked_seq=5, backlog=0, disk_bytes=0, limit_bytes=1, dropped_unacked=0
        ),
        tasks={
            "uplink.send": TaskStatus(
                state="restarting",
                restarts=3,
                last_error="IndexError: deque index out of range",
                error_at=now,
            ),
            "device.queue": TaskStatus(state="running", restarts=0),
        },
    )
    await Ingestor(engine).ingest_state(
        Incoming(topic("H1", "gw1", Channel.STATE), encode(state), now)
    )
    headers = {"Authorization": f"Bearer {await create_token(engine, Role.TECHNICIAN)}"}
    transport = httpx.ASGITransport(app=create_app(engine))
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://central") as http:
            (gateway,) = (await http.get("/api/v1/gateways", headers=headers)).json()
    finally:
        await engine.dispose()
    assert gateway["tasks"]["uplink.send"]["state"] == "restarting"
    assert gateway["tasks"]["uplink.send"]["restarts"] == 3
    assert gateway["tasks"]["uplink.send"]["last_error"] == "IndexError: deque index out of range"
    assert gateway["tasks"]["device.queue"]["state"] == "running"


async def test_a_result_published_while_central_reconnects_is_not_lost(
    tmp_path: Path, database_url: str, broker: Broker
) -> None:
    """A gateway answers each command once: whatever it publishes while central's consumer is
    away (a broker blip, a restart) must wait for it in its persistent session."""
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    from central.gateways.command_queue import count_results
    from protocols.commands import CommandResult

    aggregator = Aggregator(_config(tmp_path, database_url, broker))
    await aggregator.start()
    gateway = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="gw1")
    try:
        await register(aggregator.engine, "H1", "gw1")
        records = aggregator.supervisor.records
        await _until(lambda: records["mqtt.consumer"].state == "running", "the consumer")
        await aggregator.consumer.stop()  # central away
        gateway.connect("127.0.0.1", broker.port)
        gateway.loop_start()
        answer = CommandResult(
            hall="H1",
            gateway="gw1",
            accepted=False,
            reason="expired",
            detail="expired an hour ago",
            utc=datetime.now(UTC),
        )
        gateway.publish(topic("H1", "gw1", Channel.RESULT), encode(answer), qos=1).wait_for_publish(
            10
        )
        await aggregator.consumer.start()  # back: the broker hands over what it kept

        async def recorded() -> bool:
            return await count_results(aggregator.engine, "gw1") == 1

        deadline = asyncio.get_running_loop().time() + 20
        while not await recorded():
            assert asyncio.get_running_loop().time() < deadline, "the answer was lost"
            await asyncio.sleep(0.1)
    finally:
        gateway.loop_stop()
        gateway.disconnect()
        await aggregator.stop()


async def test_the_case_feed_does_not_take_the_consumers_certificate(tmp_path: Path) -> None:
    """Over TLS the broker makes the certificate name the client id: a case feed on the
    consumer's certificate would knock the consumer off about once a second (and answers
    published meanwhile were lost). Without its own certificate it is not started, visibly."""
    from central.cases import service as case_jobs
    from central.store.db import make_engine

    tls = {
        "ca": str(tmp_path / "ca.pem"),
        "cert": str(tmp_path / "c.pem"),
        "key": str(tmp_path / "c.key"),
    }
    config = CentralConfig.model_validate(
        {
            "database_url": f"sqlite+aiosqlite:///{tmp_path / 'c.db'}",
            "data_dir": str(tmp_path / "central"),
            "broker": {"port": 1, "tls": tls},
        }
    )
    config.data_dir.mkdir(parents=True)
    engine = make_engine(config.database_url)
    supervisor = Supervisor()
    try:
        case_jobs.start(engine, config, supervisor)
        feed = supervisor.status()["cases.feed"]
        assert feed["state"] == "failed" and "broker.feed_tls" in feed["last_error"]
        assert "cases.ladder" in supervisor.status()
        assert healthz(supervisor)[0] == 503
    finally:
        await supervisor.stop()
        await engine.dispose()
