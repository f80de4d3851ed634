"""``hallwatch-central serve --no-ingest``: a dashboard process that serves the API and runs no
consumer and no job, so its answers never wait behind ingest (the aggregators run with
``--no-api``). With no broker listening at all it still answers, and reports no task."""

from __future__ import annotations

import time
from pathlib import Path

import httpx

from tests.support.broker import free_port
from tests.support.procs import BIN, Proc, central_config


def test_the_api_alone_serves_without_a_broker_or_jobs(tmp_path: Path) -> None:
    http_port = free_port()
    config = central_config(
        tmp_path, free_port(), f"sqlite+aiosqlite:///{tmp_path / 'c.db'}", http_port=http_port
    )
    argv = [str(BIN / "hallwatch-central"), "serve", "--no-ingest", "-c", str(config)]
    proc = Proc(argv, tmp_path / "api.log").start()
    try:
        deadline = time.monotonic() + 120
        answer = None
        while time.monotonic() < deadline and answer is None:
            assert proc.alive, (tmp_path / "api.log").read_text()
            try:
                answer = httpx.get(f"http://127.0.0.1:{http_port}/healthz", timeout=5)
            except httpx.TransportError:
                time.sleep(0.2)
        assert answer is not None and answer.status_code == 200, answer
        assert answer.json()["tasks"] == {}  # no consumer, no ingest, no correlation
        login = httpx.get(f"http://127.0.0.1:{http_port}/api/v1/overview", timeout=30)
        assert login.status_code == 401  # the API's routes, behind their login
    finally:
        assert proc.stop() == 0, (tmp_path / "api.log").read_text()
