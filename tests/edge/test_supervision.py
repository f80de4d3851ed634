"""No silent death on the gateway: every long-running task that raises is started again after a
backoff, and what happened is in /healthz, on the hall page and in the state message central
gets. Real parts: Mosquitto, the journal, the hall page over HTTP."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from edge.app import Gateway
from edge.config import GatewayConfig
from edge.devices.evaluators import EvaluatorSupervisor
from edge.devices.queue_machine import QueueSupervisor
from edge.uplink import Uplink
from protocols.envelope import Ack, EventBatch, GatewayState, encode
from protocols.topics import Channel, topic
from tests.support.broker import Broker, free_port

Method = Callable[[Any], Awaitable[None]]


def _raises_once(original: Method, error: Exception) -> Method:
    """The method as it is, except that its first call raises ``error``."""
    calls = 0

    async def patched(self: Any) -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise error
        await original(self)

    return patched


async def _until(predicate: Callable[[], bool], what: str, timeout: float = 20.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


def _config(tmp_path: Path, broker: Broker) -> GatewayConfig:
    return GatewayConfig.model_validate(
        {
            "hall": "H1",
            "gateway": "gw1",
            "data_dir": str(tmp_path / "edge"),
            "broker": {"host": "127.0.0.1", "port": broker.port, "keepalive_s": 5},
            "uplink": {"ack_timeout_s": 3, "state_interval_s": 1},
            "clock": {"assume_synced": True},
            "http": {"enabled": True, "host": "127.0.0.1", "port": free_port()},
            # devices on ports that do not exist: their drivers keep retrying, quietly
            "evaluator_buses": [
                {"port": str(tmp_path / "ttyNONE"), "devices": [{"addr": 0x81, "window": 1}]}
            ],
            "queue": {"transport": str(tmp_path / "ttyQMNONE")},
            "generator": {"enabled": True, "rate": 50, "total": 1_000_000},
        }
    )


async def test_each_task_that_raises_is_restarted_and_shown(
    tmp_path: Path, broker: Broker, monkeypatch: pytest.MonkeyPatch
) -> None:
    broken = {
        "uplink.send": (Uplink, "_send_loop", IndexError("deque index out of range")),
        "uplink.state": (Uplink, "_state_loop", RuntimeError("state broken")),
        "device.bus-0": (EvaluatorSupervisor, "run", OSError("bus broken")),
        "device.queue": (QueueSupervisor, "run", ValueError("queue broken")),
    }
    for cls, method, error in broken.values():
        monkeypatch.setattr(cls, method, _raises_once(getattr(cls, method), error))
    states: list[GatewayState] = []
    watcher = mqtt.Client(CallbackAPIVersion.VERSION2)
    watcher.on_message = lambda _c, _u, m: states.append(
        GatewayState.model_validate_json(m.payload)
    )
    watcher.connect("127.0.0.1", broker.port)
    watcher.subscribe(topic("H1", "gw1", Channel.STATE), qos=1)
    watcher.loop_start()
    gateway = Gateway(_config(tmp_path, broker))
    await gateway.start()
    try:
        assert gateway.hall_page is not None
        url = gateway.hall_page.url

        def restarted(name: str) -> bool:
            record = gateway.supervisor.records.get(name)
            return record is not None and record.restarts >= 1 and record.state == "running"

        await _until(lambda: all(restarted(name) for name in broken), "every task restarted")
        async with httpx.AsyncClient(base_url=url) as http:
            health = (await http.get("/healthz")).json()
        for name, (_, _, error) in broken.items():
            task = health["tasks"][name]
            assert task["state"] == "running" and task["restarts"] == 1, (name, task)
            assert task["last_error"] == f"{type(error).__name__}: {error}", (name, task)
        assert health["tasks"]["generator"]["state"] == "running"

        # the upload really works again: the journal keeps being published
        published = gateway.uplink.published_batches
        await _until(lambda: gateway.uplink.published_batches > published, "publishing")

        # central is told: the retained state message lists the tasks with their restarts
        await _until(
            lambda: any(
                s.tasks.get("uplink.send") and s.tasks["uplink.send"].restarts for s in states
            ),
            "a state message with the restart",
        )

        # the hall page's own server ends by itself: opened again on its port
        assert gateway.hall_page is not None and gateway.hall_page._server is not None
        gateway.hall_page._server.should_exit = True
        await _until(lambda: restarted("hall.page"), "the hall page opened again", 30)
        async with httpx.AsyncClient(base_url=url) as http:
            health = (await http.get("/healthz")).json()
        assert health["tasks"]["hall.page"]["last_error"] == (
            "RuntimeError: the hall page server stopped by itself"
        )
        assert health["status"] == "ok"
    finally:
        await gateway.stop()
        watcher.loop_stop()
        watcher.disconnect()


async def test_a_task_that_keeps_failing_stops_the_gateway_with_the_reason(
    tmp_path: Path, broker: Broker, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def always(self: Uplink) -> None:
        raise IndexError("deque index out of range")

    monkeypatch.setattr(Uplink, "_send_loop", always)
    gateway = Gateway(_config(tmp_path, broker))
    gateway.supervisor.first_delay_s = gateway.supervisor.max_delay_s = 0.01  # ten, at once
    run = asyncio.create_task(gateway.run_forever())
    await asyncio.wait_for(run, 30)  # it stops by itself
    assert gateway.failure == "uplink.send: IndexError: deque index out of range"
    assert gateway.supervisor.status()["uplink.send"]["state"] == "failed"
    assert gateway.journal._db is None  # closed: the next process opens it at once


async def test_camera_tasks_and_workers_are_restarted_and_shown(
    tmp_path: Path, broker: Broker, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("cv2")
    from edge.devices.cameras import CameraDevice
    from edge.evidence_upload import EvidenceUploader
    from firmware_bridges.camera.simulator import FrameFeed, MjpegServer, hall_scene
    from tests.edge.camera.scenes import hall_camera

    broken = {
        "evidence.upload": (EvidenceUploader, "run", OSError("evidence broken")),
        "camera.events": (CameraDevice, "_journal_events", RuntimeError("events broken")),
    }
    for cls, method, error in broken.values():
        monkeypatch.setattr(cls, method, _raises_once(getattr(cls, method), error))
    with MjpegServer(FrameFeed.from_scene(hall_scene(still_s=5, break_s=5), 5)) as server:
        config = _config(tmp_path, broker).model_copy(update={"cameras": None})
        data = config.model_dump(mode="json")
        data["cameras"] = {
            "cameras": [hall_camera(server.url).model_dump(mode="json")],
            "evidence_dir": str(tmp_path / "evidence"),
        }
        gateway = Gateway(GatewayConfig.model_validate(data))
        await gateway.start()
        try:
            records = gateway.supervisor.records
            await _until(
                lambda: all(
                    records[n].restarts == 1 and records[n].state == "running" for n in broken
                ),
                "the camera tasks restarted",
            )
            assert gateway.cameras is not None
            await _until(lambda: records["camera.worker.w1"].state == "running", "the worker")
            os.kill(gateway.cameras.worker_pids()["w1"], signal.SIGKILL)  # a decoder crash
            await _until(lambda: records["camera.worker.w1"].restarts == 1, "the worker's death")
            await _until(lambda: records["camera.worker.w1"].state == "running", "a new worker")
            assert gateway.hall_page is not None
            async with httpx.AsyncClient(base_url=gateway.hall_page.url) as http:
                tasks = (await http.get("/healthz")).json()["tasks"]
            assert "exited with code" in tasks["camera.worker.w1"]["last_error"]
            for name, (_, _, error) in broken.items():
                assert tasks[name]["last_error"] == f"{type(error).__name__}: {error}"
        finally:
            await gateway.stop()


async def test_after_a_journal_reset_the_upload_carries_on_past_the_raised_floor(
    tmp_path: Path, broker: Broker
) -> None:
    """Central acknowledges far beyond this journal's head (it was reset or replaced): the
    gateway raises its floor and keeps publishing what comes next (the upload used to die of
    an IndexError in the journal's tail cache, with nothing logged)."""
    batches: list[EventBatch] = []
    watcher = mqtt.Client(CallbackAPIVersion.VERSION2)
    watcher.on_message = lambda _c, _u, m: batches.append(EventBatch.model_validate_json(m.payload))
    watcher.connect("127.0.0.1", broker.port)
    watcher.subscribe(topic("H1", "gw1", Channel.EVENTS), qos=1)
    watcher.loop_start()
    gateway = Gateway(_config(tmp_path, broker))
    await gateway.start()
    try:
        await _until(lambda: gateway.journal.head_seq > 20 and bool(batches), "first events")
        floor = gateway.journal.head_seq + 10_000
        ack = Ack(hall="H1", gateway="gw1", committed_through=floor, utc=datetime.now(UTC))
        watcher.publish(topic("H1", "gw1", Channel.ACK), encode(ack), qos=1)
        await _until(
            lambda: any(b.first_seq > floor for b in batches),
            "events past the raised floor published",
        )
        assert gateway.supervisor.records["uplink.send"].restarts == 0
    finally:
        await gateway.stop()
        watcher.loop_stop()
        watcher.disconnect()
