"""The ThingsBoard IoT Gateway (the nearest peer) draining a backlog from its SQLite storage
to a private Mosquitto, for the drain benchmark beside ours.

The peer runs whole and unchanged: ``thingsboard-gateway`` from PyPI in a virtual environment
of its own (never in the project's dependencies), started with its own console script and a
configuration directory written here. What stands in for the ThingsBoard server is a plain
MQTT client on the same broker (``PlatformStandIn``): it subscribes to the gateway telemetry
topic with QoS 1 and answers the one request a ThingsBoard server answers at connect
(``getSessionLimits``), because the peer sends nothing until that answer (or a 5 s timeout)
arrives. Learnt from the installed package (3.8.5) and written down in docs/field-notes.md
(#peer-drain).
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from tests.bench.figures import OUTPUT

PEER_PACKAGE = "thingsboard-gateway==3.8.5"
PEER_VENV = OUTPUT / "peer-venv"
DEVICE = "H1-gw1"
TELEMETRY_TOPIC = "v1/gateway/telemetry"
RPC_REQUEST = "v1/devices/me/rpc/request/"
RPC_RESPONSE = "v1/devices/me/rpc/response/"
# What a self-hosted ThingsBoard answers to getSessionLimits with its defaults: no rate limits
# in the default tenant profile, transport.mqtt.max_payload_size 65536 and
# msg_queue_size_per_device_limit 100 (the client keeps 80 % of each: 52 KB payloads, 80 in
# flight). Without the answer the peer waits 5 s, then sends 8 KB payloads.
SESSION_LIMITS = {
    "maxPayloadSize": 65536,
    "maxInflightMessages": 100,
    "rateLimits": {"messages": "", "telemetryMessages": "", "telemetryDataPoints": ""},
    "gatewayRateLimits": {"messages": "", "telemetryMessages": "", "telemetryDataPoints": ""},
}
# The connect line of the peer's "tb_connection" logger (thingsboard_gateway/gateway/tb_client.py)
CONNECTED = re.compile(r"^(\d+\.\d+) tb_connection MQTT client connected to platform", re.M)


def peer_python() -> tuple[Path | None, str]:
    """The peer's interpreter, installing it on first use; (None, why) when that fails."""
    python = PEER_VENV / "bin" / "python"
    probe = [str(python), "-c", "import thingsboard_gateway"]
    if python.exists() and subprocess.run(probe, capture_output=True).returncode == 0:
        return python, ""
    try:
        subprocess.run([sys.executable, "-m", "venv", str(PEER_VENV)], check=True)
        subprocess.run(
            [str(python), "-m", "pip", "install", "-q", PEER_PACKAGE],
            check=True,
            capture_output=True,
            timeout=900,
        )
    except (subprocess.SubprocessError, OSError) as exc:
        out = getattr(exc, "stderr", b"") or b""
        return None, f"cannot install {PEER_PACKAGE} in {PEER_VENV}: {exc} {out[-500:]!r}"
    return python, ""


def write_config(home: Path, port: int) -> Path:
    """The peer's configuration directory: its shipped defaults (config/tb_gateway.json) with
    the settings a user who cares about outages changes: the broker, SQLite storage instead
    of memory, remote configuration off (it needs a ThingsBoard server behind the broker),
    statistics off (they would share the link). Logging: warnings, and the connect line with
    its epoch time for the measurement."""
    config = home / "config"
    config.mkdir(parents=True, exist_ok=True)
    gateway = {
        "thingsboard": {
            "host": "127.0.0.1",
            "port": port,
            "remoteShell": False,
            "remoteConfiguration": False,
            "statistics": {"enable": False},
            "security": {"type": "accessToken", "accessToken": "bench-peer"},
            "qos": 1,
            "reportStrategy": {"type": "ON_RECEIVED"},
        },
        # its SQLiteEventStorage defaults: 1,000 records read per pack, 1,000 written per batch
        "storage": {"type": "sqlite", "data_file_path": str(home / "data") + "/"},
        "grpc": {"enabled": False},
        "connectors": [],
    }
    (config / "tb_gateway.json").write_text(json.dumps(gateway, indent=2))
    line = {"class": "logging.Formatter", "format": "%(created).6f %(name)s %(message)s"}
    handler = {
        "class": "logging.FileHandler",
        "formatter": "line",
        "filename": str(home / "peer.log"),
    }
    logs = {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"line": line},
        "handlers": {"file": handler},
        "loggers": {"tb_connection": {"level": "INFO", "handlers": ["file"], "propagate": False}},
        "root": {"level": "WARNING", "handlers": ["file"]},
    }
    (config / "logs.json").write_text(json.dumps(logs, indent=2))
    return config


def fill_storage(home: Path, n: int) -> None:
    """``n`` telemetry records in the peer's SQLite storage, as its storage thread writes them
    (storage/sqlite/database.py: table ``messages``, epoch-ms ``timestamp``, the message as
    the JSON of ConvertedData.to_dict()): one reading of one device each, as a connector
    delivers them during an outage."""
    data = home / "data"
    data.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(data / "data.db")
    try:
        db.execute(
            "CREATE TABLE IF NOT EXISTS messages (id INTEGER PRIMARY KEY AUTOINCREMENT,"
            " timestamp INTEGER NOT NULL, message TEXT NOT NULL)"
        )
        db.execute("CREATE INDEX IF NOT EXISTS idx_timestamp ON messages (timestamp)")
        start = int(time.time() * 1000) - n
        rows = [
            (
                start + i,
                json.dumps(
                    {
                        "deviceName": DEVICE,
                        "deviceType": "default",
                        "telemetry": [{"ts": start + i, "values": {"n": i, "run": "b"}}],
                        "attributes": {},
                    },
                    separators=(",", ":"),
                ),
            )
            for i in range(n)
        ]
        db.executemany("INSERT INTO messages (timestamp, message) VALUES (?, ?)", rows)
        db.commit()
    finally:
        db.close()


def stored_left(home: Path) -> int:
    db = sqlite3.connect(home / "data" / "data.db")
    try:
        return int(db.execute("SELECT count(*) FROM messages").fetchone()[0])
    finally:
        db.close()


@dataclass
class PlatformStandIn:
    """The receiving end: counts each reading once by its ``n``, and answers the peer's
    session-limits request as ThingsBoard does."""

    port: int
    expected: int
    seen: set[int] = field(default_factory=set)
    readings: int = 0
    messages: int = 0
    first_at: float = 0.0
    last_at: float = 0.0
    done: threading.Event = field(default_factory=threading.Event)
    client: mqtt.Client | None = None

    def start(self) -> PlatformStandIn:
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bench-platform")
        client.on_message = self._on_message
        subscribed = threading.Event()
        client.on_subscribe = lambda *_: subscribed.set()
        client.connect("127.0.0.1", self.port)
        client.subscribe([(TELEMETRY_TOPIC, 1), (RPC_REQUEST + "+", 1)])
        client.loop_start()
        if not subscribed.wait(30):
            raise AssertionError("the stand-in was not subscribed within 30 s")
        self.client = client
        return self

    def stop(self) -> None:
        if self.client is not None:
            self.client.loop_stop()
            self.client.disconnect()

    def _on_message(self, client: mqtt.Client, _: Any, message: mqtt.MQTTMessage) -> None:
        body = json.loads(message.payload)
        if message.topic.startswith(RPC_REQUEST):
            if body.get("method") == "getSessionLimits":
                request = message.topic.removeprefix(RPC_REQUEST)
                client.publish(RPC_RESPONSE + request, json.dumps(SESSION_LIMITS), qos=1)
            return
        self.messages += 1
        self.first_at = self.first_at or time.time()
        for entries in body.values():
            for entry in entries:
                self.readings += 1
                self.seen.add(int(entry["values"]["n"]))
        if len(self.seen) >= self.expected and not self.done.is_set():
            self.last_at = time.time()
            self.done.set()


@dataclass(frozen=True)
class PeerDrain:
    seconds: float  # from the peer's MQTT connect to the last reading received
    first_s: float  # from its connect to the first reading received
    distinct: int  # readings received, each counted once
    readings: int  # readings received, repeats included
    messages: int  # MQTT messages carrying them
    left_in_storage: int


def drain(python: Path, home: Path, port: int, n: int, timeout: float = 300) -> PeerDrain:
    """Start the peer on a storage of ``n`` readings, wait until all arrived (or ``timeout``)."""
    config = write_config(home, port)
    fill_storage(home, n)
    stand_in = PlatformStandIn(port, n).start()
    log = home / "peer.out"
    with log.open("ab") as out:
        peer = subprocess.Popen(
            [str(python.parent / "thingsboard-gateway")],
            cwd=home,
            env={**os.environ, "TB_GW_CONFIG_DIR": str(config)},
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        stand_in.done.wait(timeout)
    finally:
        peer.terminate()
        try:
            peer.wait(15)
        except subprocess.TimeoutExpired:
            peer.kill()
            peer.wait()
        stand_in.stop()
    text = (home / "peer.log").read_text(errors="replace")
    connected = CONNECTED.search(text)
    if not stand_in.done.is_set() or connected is None:
        raise AssertionError(
            f"the peer delivered {len(stand_in.seen)} of {n} readings in {timeout} s"
            f" (connected: {connected is not None}); its log:\n{text[-3000:]}"
        )
    connected_at = float(connected.group(1))
    return PeerDrain(
        seconds=stand_in.last_at - connected_at,
        first_s=stand_in.first_at - connected_at,
        distinct=len(stand_in.seen),
        readings=stand_in.readings,
        messages=stand_in.messages,
        left_in_storage=stored_left(home),
    )
