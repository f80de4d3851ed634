"""A private Mosquitto for tests: own port, own data dir, stopped by PID."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from central.security.broker_acl import render_dev_config

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_port(port: int, timeout: float = 10.0, host: str = "127.0.0.1") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listens on {host}:{port} after {timeout}s")


def dev_config(port: int, data_dir: Path) -> str:
    """The project's development broker settings (deploy/mosquitto) on a private port."""
    return render_dev_config(port, data_dir)


@dataclass
class Broker:
    port: int
    data_dir: Path
    extra_conf: str = ""
    process: subprocess.Popen[bytes] | None = None

    @property
    def conf(self) -> Path:
        return self.data_dir / "mosquitto.conf"

    def start(self) -> Broker:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.conf.write_text(dev_config(self.port, self.data_dir) + self.extra_conf + "\n")
        log = open(self.data_dir / "mosquitto.log", "ab")  # noqa: SIM115 - lives with the process
        self.process = subprocess.Popen(
            [MOSQUITTO, "-c", str(self.conf)], stdout=log, stderr=subprocess.STDOUT
        )
        wait_port(self.port)
        return self

    def kill9(self) -> None:
        if self.process is not None:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait()
            self.process = None

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.kill9()
            self.process = None
