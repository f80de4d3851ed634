"""A private VictoriaMetrics (Debian's ``victoria-metrics``) for tests: own port, own data dir,
stopped by PID. It takes the InfluxDB v2 write API; read back with /api/v1/export."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.broker import free_port

VICTORIA = shutil.which("victoria-metrics") or "/usr/bin/victoria-metrics"


def victoria_or_fail() -> str:
    if not os.access(VICTORIA, os.X_OK):
        pytest.fail(f"{VICTORIA} is missing: run deploy/scripts/install-tsdb-test-deps.sh")
    return VICTORIA


@dataclass
class Victoria:
    data_dir: Path
    args: list[str] = field(default_factory=list)
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Victoria:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        log = open(self.data_dir / "victoria.log", "ab")  # noqa: SIM115 - lives with the process
        self.process = subprocess.Popen(
            [
                victoria_or_fail(),
                f"-httpListenAddr=127.0.0.1:{self.port}",
                f"-storageDataPath={self.data_dir / 'data'}",
                "-retentionPeriod=100y",
                "-search.latencyOffset=0s",
                "-search.disableCache",
                "-loggerLevel=WARN",
                *self.args,
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"victoria-metrics exited: {self.log_text()[-2000:]}")
            try:
                if (
                    httpx.get(f"{self.url}/health", auth=self._auth(), timeout=1).text.strip()
                    == "OK"
                ):
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise TimeoutError("victoria-metrics did not answer /health")

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        os.kill(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=5)

    def log_text(self) -> str:
        path = self.data_dir / "victoria.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def _auth(self) -> tuple[str, str] | None:
        user = next(
            (a.split("=", 1)[1] for a in self.args if a.startswith("-httpAuth.username=")), None
        )
        password = next(
            (a.split("=", 1)[1] for a in self.args if a.startswith("-httpAuth.password=")), ""
        )
        return (user, password) if user else None

    def flush(self) -> None:
        httpx.get(f"{self.url}/internal/force_flush", auth=self._auth(), timeout=10)

    def export(self, match: str = '{__name__=~"hallwatch_.*"}') -> list[dict[str, Any]]:
        self.flush()
        reply = httpx.post(
            f"{self.url}/api/v1/export",
            data={"match[]": match, "start": "0"},
            auth=self._auth(),
            timeout=30,
        )
        reply.raise_for_status()
        return [json.loads(line) for line in reply.text.splitlines() if line.strip()]

    def export_until(
        self, series: int, match: str = '{__name__=~"hallwatch_.*"}', timeout: float = 30.0
    ) -> list[dict[str, Any]]:
        """Export once at least ``series`` series are searchable (a new series takes about a
        second to show up; samples of a known series show at once after a flush)."""
        deadline = time.monotonic() + timeout
        while True:
            found = self.export(match)
            if len(found) >= series or time.monotonic() > deadline:
                return found
            time.sleep(0.2)

    def query(self, expr: str, at: float | None = None, **params: str) -> dict[str, Any]:
        args = {"query": expr, **params}
        if at is not None:
            args["time"] = str(at)
        reply = httpx.post(f"{self.url}/api/v1/query", data=args, auth=self._auth(), timeout=30)
        doc: dict[str, Any] = reply.json()
        return doc
