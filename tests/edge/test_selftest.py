"""hallwatch-edge selftest and ports against simulated devices on real ptys, a real broker and a
real central: the table says what works and what does not, and the exit code follows it."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from edge.instance import InstanceLock
from firmware_bridges.ff68.simulator import EvaluatorBusSimulator
from firmware_bridges.qm.simulator import QueueMachineSimulator
from tests.support import procs
from tests.support.broker import Broker
from tests.support.loop_thread import LoopThread

EDGE = str(Path(sys.executable).parent / "hallwatch-edge")


@pytest.fixture
def devices(tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    """Evaluators 0x81 and 0x82 on one bus; a queue machine with a 1 s heartbeat."""
    with LoopThread() as sims:
        bus = EvaluatorBusSimulator(tmp_path / "ttyEVAL0", seed=1)
        qm = QueueMachineSimulator(pty_dir=tmp_path, link_name="ttyQM0", heartbeat_interval=1.0)
        sims.run(bus.start())
        sims.run(qm.__aenter__())
        sims.call(lambda: bus.add(0x81))
        sims.call(lambda: bus.add(0x82))
        try:
            yield tmp_path / "ttyEVAL0", tmp_path / "ttyQM0"
        finally:
            sims.run(qm.__aexit__(None, None, None))
            sims.run(bus.stop())


def _config(tmp: Path, broker: Broker, bus: Path, qm: Path, addresses: list[int]) -> Path:
    path = procs.edge_config(
        tmp,
        broker.port,
        evaluator_buses=[
            {
                "port": str(bus),
                "devices": [{"addr": a, "window": i + 1} for i, a in enumerate(addresses)],
            }
        ],
        queue={"transport": str(qm)},
        journal={"limit_mb": 8},
    )
    return path


def _selftest(config: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [EDGE, "selftest", "-c", str(config), "--qm-wait", "10", *extra],
        capture_output=True,
        text=True,
        timeout=120,
        env={"COLUMNS": "250", "PATH": "/usr/bin:/bin"},
    )


def _rows(output: str) -> dict[str, str]:
    """check name → PASS/FAIL/SKIP, from the printed table."""
    rows = {}
    for line in output.splitlines():
        cells = [c.strip() for c in line.split("│")]
        if len(cells) >= 4 and cells[2] in ("PASS", "FAIL", "SKIP"):
            rows[cells[1]] = cells[2]
    return rows


def test_selftest_passes_a_working_gateway_and_names_what_fails(
    tmp_path: Path, broker: Broker, devices: tuple[Path, Path]
) -> None:
    bus, qm = devices
    url = f"sqlite+aiosqlite:///{tmp_path / 'central.db'}"
    procs.prepare_central(url, [("H1", "gw1")])
    central = procs.central(
        procs.central_config(tmp_path, broker.port, url), tmp_path / "central.log"
    )
    try:
        # the self-test gives central 20 s to acknowledge: start that clock once central listens
        central.wait_for_log("central: connected to")
        good = _config(tmp_path, broker, bus, qm, [0x81, 0x82])
        result = _selftest(good)
        rows = _rows(result.stdout)
        assert result.returncode == 0, result.stdout + result.stderr
        assert set(rows.values()) == {"PASS"}, result.stdout
        assert any(name.startswith("中心确认") for name in rows)
        _seqs, bodies, _ = procs.stored(url, "gw1")
        assert bodies[-1] == {"software": bodies[-1]["software"], "passed": True, "failed": []}

        # an evaluator that does not answer, and a port that is not there
        bad = yaml.safe_load(good.read_text())
        bad["evaluator_buses"][0]["devices"].append({"addr": 0x83, "window": 3})
        bad["evaluator_buses"].append(
            {"port": str(tmp_path / "ttyGONE"), "devices": [{"addr": 0x90, "window": 9}]}
        )
        good.write_text(yaml.safe_dump(bad))
        result = _selftest(good)
        assert result.returncode == 1, result.stdout
        rows = _rows(result.stdout)
        failed = sorted(name for name, status in rows.items() if status == "FAIL")
        assert failed == [
            f"串口 port {tmp_path / 'ttyGONE'}",
            f"评价器 evaluators {bus}",
            f"评价器 evaluators {tmp_path / 'ttyGONE'}",
        ]
        assert "0x83 (窗口 window 3)" in result.stdout
        # central still heard about it: the self-test event lists the failures
        _, bodies, _ = procs.stored(url, "gw1")
        assert bodies[-1]["passed"] is False and len(bodies[-1]["failed"]) == 3
    finally:
        central.stop()


def test_selftest_without_broker_fails_and_with_the_service_running_skips(
    tmp_path: Path, devices: tuple[Path, Path]
) -> None:
    bus, qm = devices
    nobody = Broker(port=procs_free_port(), data_dir=tmp_path / "unused")  # never started
    config = _config(tmp_path, nobody, bus, qm, [0x81])
    result = _selftest(config)
    rows = _rows(result.stdout)
    assert result.returncode == 1
    assert [n for n, s in rows.items() if s == "FAIL"] == [
        f"消息服务器 broker 127.0.0.1:{nobody.port}",
        "中心确认 central acknowledges",
    ]

    data_dir = Path(yaml.safe_load(config.read_text())["data_dir"])
    lock = InstanceLock(data_dir)
    lock.acquire()  # as the running service holds it
    try:
        result = _selftest(config, "--no-central")
    finally:
        lock.release()
    rows = _rows(result.stdout)
    skipped = sorted(n for n, s in rows.items() if s == "SKIP")
    assert skipped == sorted(
        [
            f"评价器 evaluators {bus}",
            f"叫号机 queue machine {qm}",
            f"串口 port {bus}",
            f"串口 port {qm}",
            f"消息服务器 broker 127.0.0.1:{nobody.port}",
        ]
    ), result.stdout
    assert result.returncode == 0  # nothing failed; the table says to stop the service


def procs_free_port() -> int:
    from tests.support.broker import free_port

    return free_port()


def test_ports_probe_finds_the_evaluators_that_answer(devices: tuple[Path, Path]) -> None:
    bus, _ = devices
    result = subprocess.run(
        [EDGE, "ports", "--probe", "--port", str(bus), "--addresses", "0x81-0x84"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    lines = result.stdout.splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith(str(bus)))
    assert lines[at + 1].strip() == "评价器 evaluators answering: 0x81, 0x82", result.stdout
