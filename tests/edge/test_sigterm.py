"""SIGTERM stops a real gateway process within 10 s (systemd's stop timeout): under load, with a
task that keeps failing, and with a part that never finishes closing."""

from __future__ import annotations

import signal
import sqlite3
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.support import procs
from tests.support.broker import Broker, free_port

# The gateway's own command line, with one fault planted first (the test's, not the product's).
FAULTS = {
    "none": "",
    # the upload task dies on every run, as it did on the journal's tail cache
    "broken": "from edge.uplink import Uplink\n"
    "async def _broken(self):\n"
    "    raise IndexError('deque index out of range')\n"
    "Uplink._send_loop = _broken\n",
    # a part that never finishes closing (a hung disk): only the deadline ends the process
    "stuck": "import asyncio, time\nfrom edge.journal import Journal\n"
    "async def _hang(self):\n"
    "    await asyncio.to_thread(time.sleep, 3600)\n"
    "Journal.close = _hang\n",
}


def _gateway(tmp_path: Path, broker: Broker, fault: str) -> tuple[procs.Proc, str]:
    port = free_port()
    config = procs.edge_config(
        tmp_path,
        broker.port,
        http={"enabled": True, "host": "127.0.0.1", "port": port},
        generator={"enabled": True, "rate": 2000, "chunk": 100},
    )
    script = (
        FAULTS[fault] + "import sys\nfrom edge.cli import main\n"
        "sys.argv = ['hallwatch-edge', 'run', '-c', sys.argv[1]]\nmain()\n"
    )
    proc = procs.Proc([sys.executable, "-c", script, str(config)], tmp_path / "edge.log").start()
    return proc, f"http://127.0.0.1:{port}"


def _health(url: str) -> dict[str, object] | None:
    try:
        return httpx.get(f"{url}/healthz", timeout=2).json()  # type: ignore[no-any-return]
    except httpx.HTTPError:
        return None


def _journal_head(tmp_path: Path) -> int:
    path = tmp_path / "edge-gw1" / "journal.db"
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
            row = db.execute("SELECT value FROM meta WHERE key='head_seq'").fetchone()
    except sqlite3.Error:
        return 0
    return int(row[0]) if row else 0


@pytest.mark.parametrize("fault", ["none", "broken", "stuck"])
def test_sigterm_stops_the_gateway_within_10_s(tmp_path: Path, broker: Broker, fault: str) -> None:
    proc, url = _gateway(tmp_path, broker, fault)
    try:
        procs.wait_until(lambda: _health(url) is not None, 30, "the hall page")
        procs.wait_until(lambda: _journal_head(tmp_path) > 2000, 30, "the generator's load")
        if fault == "broken":

            def failing() -> bool:
                health = _health(url) or {}
                task = health.get("tasks", {}).get("uplink.send", {})  # type: ignore[attr-defined]
                return bool(task.get("restarts")) and health.get("status") == "degraded"

            procs.wait_until(failing, 30, "/healthz to show the upload restarting")
        assert proc.process is not None
        began = time.monotonic()
        proc.process.send_signal(signal.SIGTERM)
        code = proc.process.wait(15)
        took = time.monotonic() - began
    finally:
        proc.stop()
    log = (tmp_path / "edge.log").read_text()
    assert took < 10, f"SIGTERM took {took:.1f} s\n{log[-3000:]}"
    if fault == "stuck":
        assert code == 75 and "did not stop within" in log, log[-3000:]
    else:
        assert code == 0, log[-3000:]
        with sqlite3.connect(tmp_path / "edge-gw1" / "journal.db") as db:
            assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
