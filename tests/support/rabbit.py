"""A private RabbitMQ cluster for tests (deploy/scripts/rabbitmq-cluster.sh): own node names,
ports, data and cookie; nodes stopped or killed by PID. The system instance is never touched."""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from central.security.ca_store import PkiStore

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "deploy" / "scripts" / "rabbitmq-cluster.sh"
SERVER = Path("/usr/lib/rabbitmq/bin/rabbitmq-server")


def _free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_run(count: int) -> int:
    """The first of ``count`` consecutive free ports."""
    for _ in range(200):
        first = random.randrange(20_000, 60_000)
        if all(_free(first + i) for i in range(count)):
            return first
    raise RuntimeError(f"no {count} consecutive free ports")


@dataclass(frozen=True, slots=True)
class Node:
    name: str
    amqp_port: int
    mqtts_port: int
    pid: int


@dataclass
class RabbitCluster:
    root: Path
    store: PkiStore
    password: str = field(default_factory=lambda: uuid.uuid4().hex)
    nodes: list[Node] = field(default_factory=list)

    @classmethod
    def start(cls, root: Path, count: int = 3) -> RabbitCluster:
        root.mkdir(parents=True, exist_ok=True)
        store = PkiStore.create(root / "pki")
        store.issue_server(["localhost", "127.0.0.1"]).write(
            root / "server.crt", root / "server.key"
        )
        cluster = cls(root, store)
        amqp_port = free_run(count)
        argv = [
            str(SCRIPT),
            "start",
            "--name",  # node names of its own: another run's cluster may be up beside it
            f"hw{amqp_port}n",
            "--base",
            str(root / "cluster"),
            "--nodes",
            str(count),
            "--amqp-port",
            str(amqp_port),
            "--mqtts-port",
            str(free_run(count)),
            "--dist-port",
            str(free_run(count)),
            "--ca",
            str(store.ca_cert_path),
            "--cert",
            str(root / "server.crt"),
            "--key",
            str(root / "server.key"),
            "--central-password",
            cluster.password,
        ]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=300)
        if done.returncode != 0:
            cluster.stop()
            raise RuntimeError(f"cluster did not start:\n{done.stdout}\n{done.stderr}")
        for line in done.stdout.split("\n"):
            parts = line.split()
            if len(parts) == 4:
                cluster.nodes.append(Node(parts[0], int(parts[1]), int(parts[2]), int(parts[3])))
        return cluster

    def amqp_urls(self) -> list[str]:
        return [f"amqp://central:{self.password}@127.0.0.1:{n.amqp_port}/" for n in self.nodes]

    def add_gateway(self, hall: str, gateway: str) -> dict[str, str]:
        """The gateway's broker user and certificate; its ``broker.tls`` section."""
        subprocess.run(
            [
                str(SCRIPT),
                "add-gateway",
                "--base",
                str(self.root / "cluster"),
                "--hall",
                hall,
                "--gateway",
                gateway,
            ],
            check=True,
            capture_output=True,
            timeout=120,
        )
        identity = self.store.issue_gateway(hall, gateway)
        cert, key = self.root / f"{gateway}.crt", self.root / f"{gateway}.key"
        identity.write(cert, key)
        return {"ca": str(self.store.ca_cert_path), "cert": str(cert), "key": str(key)}

    def kill9(self, index: int) -> None:
        os.kill(self.nodes[index].pid, signal.SIGKILL)

    def stop(self) -> None:
        subprocess.run(
            [str(SCRIPT), "stop", "--base", str(self.root / "cluster")],
            capture_output=True,
            timeout=120,
        )
