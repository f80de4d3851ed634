"""A hall for the page's browser tests and benchmark: a private Mosquitto, sixteen FF 68
evaluators and a $QM queue machine on pseudo-terminals, the gateway as its own process with its
hall page on, an account made with ``hallwatch-edge user add``; and Debian's Chromium."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, sync_playwright

from firmware_bridges.ff68.simulator import EvaluatorBusSimulator
from firmware_bridges.qm.simulator import QueueMachineSimulator
from tests.support import procs
from tests.support.broker import Broker, free_port
from tests.support.loop_thread import LoopThread

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
OUTPUT = Path(__file__).resolve().parents[3] / "test-output"
WINDOWS = 16
USER, PASSWORD = "dating", "大厅看板-2026"
STAFF = {"100233": "张敏", "100234": "李建国", "100235": "王芳"}


@dataclass
class Hall:
    tmp: Path
    broker: Broker
    sims: LoopThread
    bus: EvaluatorBusSimulator
    qm: QueueMachineSimulator
    url: str
    config: Path
    gateway: procs.Proc
    requests: list[str] = field(default_factory=list)  # every URL any page asked for
    console_errors: list[str] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)

    def addr(self, window: int) -> int:
        return 0x80 + window


def add_account(config: Path) -> None:
    done = subprocess.run(
        [
            str(procs.BIN / "hallwatch-edge"),
            "user",
            "add",
            USER,
            "-c",
            str(config),
            "--password-stdin",
        ],
        input=PASSWORD + "\n",
        text=True,
        capture_output=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr


def wait_for_devices(url: str, timeout: float = 60) -> None:
    """Until the page answers and every evaluator has answered a poll."""
    deadline = time.monotonic() + timeout
    with httpx.Client(base_url=url, timeout=5) as client:
        while True:
            try:
                if client.get("/healthz").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "the hall page did not come up"
            time.sleep(0.2)
        client.post("/login", data={"username": USER, "password": PASSWORD})
        while True:
            tiles = client.get("/api/board").json()["tiles"]
            if len(tiles) == WINDOWS and all(t["evaluator"]["state"] == "online" for t in tiles):
                return
            assert time.monotonic() < deadline, f"evaluators not online: {tiles}"
            time.sleep(0.2)


@contextmanager
def running_hall(
    tmp: Path,
    *,
    poll_interval_s: float = 1,
    staff_names: dict[str, str] = STAFF,
    before_start: Callable[[Path], None] | None = None,
) -> Iterator[Hall]:
    """``before_start`` gets the gateway's data directory before the gateway first runs."""
    broker = Broker(free_port(), tmp / "broker").start()
    with LoopThread() as sims:
        bus = EvaluatorBusSimulator(tmp / "ttyEVAL0", seed=5, history=50_000)
        qm = QueueMachineSimulator(pty_dir=tmp, link_name="ttyQM0")
        sims.run(bus.start())
        sims.run(qm.__aenter__())
        for i in range(WINDOWS):
            sims.call(partial(bus.add, 0x81 + i))
        port = free_port()
        config = procs.edge_config(
            tmp,
            broker.port,
            evaluator_buses=[
                {
                    "port": str(tmp / "ttyEVAL0"),
                    "poll_interval_s": poll_interval_s,
                    "devices": [{"addr": 0x81 + i, "window": i + 1} for i in range(WINDOWS)],
                }
            ],
            queue={"transport": str(tmp / "ttyQM0")},
            http={
                "enabled": True,
                "host": "127.0.0.1",
                "port": port,
                "hall_name": "锦江区政务服务中心",
            },
            staff_names=staff_names,
        )
        add_account(config)
        if before_start is not None:
            before_start(tmp / "edge-gw1")
        url = f"http://127.0.0.1:{port}"
        hall = Hall(tmp, broker, sims, bus, qm, url, config, procs.edge(config, tmp / "edge.log"))
        try:
            wait_for_devices(url)
            yield hall
        finally:
            hall.gateway.stop()
            sims.run(qm.__aexit__(None, None, None))
            sims.run(bus.stop())
            broker.stop()


@contextmanager
def chromium() -> Iterator[Browser]:
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: run deploy/scripts/install-browser-test-deps.sh")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_FLAGS)
        try:
            yield browser
        finally:
            browser.close()
