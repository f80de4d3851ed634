"""A private RabbitMQ cluster for tests (deploy/scripts/rabbitmq-cluster.sh): own node names,
ports, data and cookie; nodes stopped or killed by PID. The system instance is never touched."""

from __future__ import annotations

import contextlib
import os
import random
import signal
import socket
import subprocess
import uuid
from collections.abc import Iterator
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


def _below_ephemeral() -> int:
    """The first port the kernel may hand out to outgoing connections (Linux: 32768)."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32_768


def free_run(count: int) -> int:
    """The first of ``count`` consecutive free ports, below the ephemeral range: a port free
    when chosen there is not taken by some connection's local end before the node binds it (a
    node failed with ``dist_port_already_used`` while hundreds of gateways were connecting)."""
    top = _below_ephemeral() - count
    for _ in range(200):
        first = random.randrange(min(15_000, top - 1_000), top)
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
        self._script("add-gateway", "--hall", hall, "--gateway", gateway)
        identity = self.store.issue_gateway(hall, gateway)
        cert, key = self.root / f"{gateway}.crt", self.root / f"{gateway}.key"
        identity.write(cert, key)
        return {"ca": str(self.store.ca_cert_path), "cert": str(cert), "key": str(key)}

    def add_gateways(self, pairs: list[tuple[str, str]]) -> dict[str, dict[str, str]]:
        """Many gateways at once: their broker users in one ``add-gateways`` call and their
        certificates (EC keys, straight from the test CA, no ledger); each one's
        ``broker.tls`` section by gateway id."""
        listing = self.root / f"gateways-{uuid.uuid4().hex[:8]}.txt"
        listing.write_text("".join(f"{hall} {gateway}\n" for hall, gateway in pairs))
        with self._script_running("add-gateways", "--file", str(listing)):
            found: dict[str, dict[str, str]] = {}
            for hall, gateway in pairs:  # while the broker imports the users
                cert, key = self.root / f"{gateway}.crt", self.root / f"{gateway}.key"
                self.store.ca.issue_gateway(hall, gateway).write(cert, key)
                ca = str(self.store.ca_cert_path)
                found[gateway] = {"ca": ca, "cert": str(cert), "key": str(key)}
        return found

    def add_bridge(self, name: str, halls: list[str]) -> None:
        """A tier bridge's broker user (``bridge.<name>``) carrying ``halls``."""
        self._script("add-bridge", "--bridge", name, "--halls", ",".join(halls))

    def check_bridge(self, name: str, halls: list[str]) -> None:
        """``check-bridge``: fails, naming the refused topics, unless ``bridge.<name>`` may
        carry every one of ``halls``."""
        self._script("check-bridge", "--bridge", name, "--halls", ",".join(halls))

    def _script(self, *args: str) -> None:
        with self._script_running(*args):
            pass

    @contextlib.contextmanager
    def _script_running(self, *args: str) -> Iterator[None]:
        """The cluster script runs while the block does; it must have succeeded after."""
        argv = [str(SCRIPT), args[0], "--base", str(self.root / "cluster"), *args[1:]]
        with subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as run:
            yield
            out, err = run.communicate(timeout=120)
            if run.returncode != 0:
                raise RuntimeError(f"{args[0]} failed:\n{out.decode()}\n{err.decode()}")

    def kill9(self, index: int) -> None:
        os.kill(self.nodes[index].pid, signal.SIGKILL)

    def stop(self) -> None:
        subprocess.run(
            [str(SCRIPT), "stop", "--base", str(self.root / "cluster")],
            capture_output=True,
            timeout=120,
        )
