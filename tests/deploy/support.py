"""A real Mosquitto with the production TLS configuration, and MQTT peers to attack it with.

The broker is rendered from ``deploy/mosquitto/hallwatch-tls.conf.in`` with certificates from
``central.security.ca`` and an ACL from ``central.security.broker_acl``, started on free ports
and stopped by PID. Peers are paho-mqtt 2.x clients (CallbackAPIVersion.VERSION2) whose callbacks
only record what happened, so a test can wait for an event instead of sleeping.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import ssl
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode

from central.security.broker_acl import (
    BridgeAccess,
    GatewayAccess,
    TlsBrokerFiles,
    render_local_listener,
    render_password_file,
    render_tls_config,
    sync_broker,
    write_password_file,
)
from central.security.ca import Identity, central_username, feed_name
from central.security.ca_store import PkiStore
from tests.support.broker import MOSQUITTO, free_port, wait_port

WAIT = 5.0  # generous: the machine is shared; no assertion depends on speed


def wait_until(predicate: Callable[[], bool], timeout: float = WAIT, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or predicate}")
        time.sleep(0.01)


@dataclass
class TlsBroker:
    """One broker tier: its own CA directory, TLS port, optional localhost central port."""

    root: Path
    store: PkiStore
    port: int = field(default_factory=free_port)
    local_port: int | None = None
    central_password: str = ""
    process: subprocess.Popen[bytes] | None = None
    bridges: list[BridgeAccess] = field(default_factory=list)
    gateways: list[GatewayAccess] | None = None

    @classmethod
    def create(cls, root: Path, store: PkiStore | None = None, local: bool = False) -> TlsBroker:
        root.mkdir(parents=True, exist_ok=True)
        store = store or PkiStore.create(root / "pki")
        broker = cls(root, store)
        server = store.issue_server(["broker.test"])
        server.write(root / "server.crt", root / "server.key")
        (root / "data").mkdir(exist_ok=True)
        (root / "conf.d").mkdir(exist_ok=True)
        if local:
            broker.local_port = free_port()
            broker.central_password = uuid.uuid4().hex + uuid.uuid4().hex
            write_password_file(
                root / "passwd",
                render_password_file({central_username("main"): broker.central_password}),
            )
            (root / "conf.d" / "local-central.conf").write_text(
                render_local_listener(broker.local_port, root / "passwd")
            )
        return broker

    @property
    def files(self) -> TlsBrokerFiles:
        return TlsBrokerFiles(
            ca=self.store.ca_cert_path,
            cert=self.root / "server.crt",
            key=self.root / "server.key",
            crl=self.root / "crl.pem",
            acl=self.root / "acl",
            data_dir=self.root / "data",
            conf_d=self.root / "conf.d",
        )

    @property
    def log(self) -> str:
        path = self.root / "mosquitto.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def central_tls(self, name: str = "main") -> dict[str, dict[str, str]]:
        """central's two broker identities (consumer, case feed), as its broker config."""

        def files(file: str, issued: Identity) -> dict[str, str]:
            return dict(
                zip(("ca", "cert", "key"), map(str, self.identity(file, issued)), strict=True)
            )

        return {
            "tls": files("central", self.store.issue_central(name)),
            "feed_tls": files("central-cases", self.store.issue_central(feed_name(name))),
        }

    def identity(self, name: str, identity: Identity) -> tuple[Path, Path, Path]:
        """Write a client identity to files; returns (ca, cert, key) for a peer."""
        cert, key = self.root / f"{name}.crt", self.root / f"{name}.key"
        identity.write(cert, key)
        return self.store.ca_cert_path, cert, key

    def sync(self, reload: bool = True) -> None:
        """CRL + ACL from the store (and the registry view in ``gateways``), then SIGHUP."""
        sync_broker(
            self.store,
            self.files.acl,
            self.files.crl,
            central_users=[
                central_username("main"),
                central_username(feed_name("main")),
                central_username("agg2"),
            ],
            bridges=self.bridges,
            registry=self.gateways,
            reload=self.hup if reload and self.process else None,
        )

    def start(self) -> TlsBroker:
        if not self.files.acl.exists():
            self.sync(reload=False)
        conf = self.root / "mosquitto.conf"
        conf.write_text(render_tls_config(self.port, self.files, bind="127.0.0.1", run_as=_me()))
        log = open(self.root / "mosquitto.log", "ab")  # noqa: SIM115 - lives with the process
        self.process = subprocess.Popen(
            [MOSQUITTO, "-c", str(conf)], stdout=log, stderr=subprocess.STDOUT
        )
        log.close()
        try:
            wait_port(self.port)
            if self.local_port:
                wait_port(self.local_port)
        except TimeoutError:
            self.stop()
            raise RuntimeError(f"broker did not start:\n{self.log[-3000:]}") from None
        return self

    def hup(self) -> None:
        assert self.process is not None
        marks = self.log.count("Reloading config.")
        os.kill(self.process.pid, signal.SIGHUP)
        # The broker logs the reload before it applies it; the next loop turn applies it.
        wait_until(lambda: self.log.count("Reloading config.") > marks, what="reload logged")
        time.sleep(0.2)

    def stop(self) -> None:
        if self.process is None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process = None

    def restart(self) -> None:
        self.stop()
        self.start()


def _me() -> str:
    import pwd

    return pwd.getpwuid(os.geteuid()).pw_name


@contextlib.contextmanager
def running(broker: TlsBroker) -> Iterator[TlsBroker]:
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


# -- peers ---------------------------------------------------------------------------------


class Peer:
    """A paho client that records connects, disconnects, messages and publish outcomes."""

    def __init__(
        self,
        port: int,
        tls: tuple[Path, Path, Path] | None,
        *,
        protocol: int = mqtt.MQTTv311,
        client_id: str = "",
        username: str | None = None,
        password: str | None = None,
        clean: bool = True,
    ) -> None:
        self.port = port
        self.protocol = protocol
        kwargs: dict[str, Any] = {"protocol": protocol, "reconnect_on_failure": False}
        if protocol == mqtt.MQTTv5:
            kwargs["client_id"] = client_id
        else:
            kwargs.update(client_id=client_id, clean_session=clean)
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, **kwargs)
        if tls is not None:
            ca, cert, key = tls
            self.client.tls_set(
                ca_certs=str(ca),
                certfile=str(cert),
                keyfile=str(key),
                cert_reqs=ssl.CERT_REQUIRED,
                tls_version=ssl.PROTOCOL_TLS_CLIENT,
            )
        if username is not None:
            self.client.username_pw_set(username, password)
        self.connack: ReasonCode | None = None
        self.disconnects: list[ReasonCode] = []
        self.messages: list[tuple[str, bytes, bool]] = []
        self.pubacks: dict[int, ReasonCode] = {}
        self.subacks: dict[int, list[ReasonCode]] = {}
        self.errors: list[str] = []
        self._lock = threading.Lock()
        self.client.on_connect = self._on_connect
        self.client.on_connect_fail = lambda c, u: self.errors.append("connect failed")
        self.client.on_disconnect = self._on_disconnect
        self.client.on_message = self._on_message
        self.client.on_publish = self._on_publish
        self.client.on_subscribe = self._on_subscribe

    # paho callbacks, run in its network thread
    def _on_connect(
        self, client: Any, userdata: Any, flags: Any, rc: ReasonCode, props: Any
    ) -> None:
        self.connack = rc

    def _on_disconnect(
        self, client: Any, userdata: Any, flags: Any, rc: ReasonCode, props: Any
    ) -> None:
        self.disconnects.append(rc)

    def _on_message(self, client: Any, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        with self._lock:
            self.messages.append((msg.topic, bytes(msg.payload), bool(msg.retain)))

    def _on_publish(self, client: Any, userdata: Any, mid: int, rc: ReasonCode, props: Any) -> None:
        self.pubacks[mid] = rc

    def _on_subscribe(
        self, client: Any, userdata: Any, mid: int, rcs: list[ReasonCode], props: Any
    ) -> None:
        self.subacks[mid] = rcs

    # actions
    def connect(self, will: tuple[str, bytes] | None = None) -> bool:
        """True once CONNACK success arrives; False if the broker refused or hung up first."""
        if will is not None:
            self.client.will_set(will[0], will[1], qos=1, retain=True)
        try:
            self.client.connect("127.0.0.1", self.port, keepalive=30)
        except (OSError, ssl.SSLError) as exc:
            self.errors.append(repr(exc))
            return False
        self.client.loop_start()
        wait_until(
            lambda: self.connack is not None or bool(self.disconnects) or bool(self.errors),
            what="CONNACK or disconnect",
        )
        return self.connack is not None and not self.connack.is_failure and not self.disconnects

    @property
    def connected(self) -> bool:
        return self.client.is_connected()

    def subscribe(self, topic_filter: str, qos: int = 1) -> list[ReasonCode]:
        rc, mid = self.client.subscribe(topic_filter, qos)
        assert rc == mqtt.MQTT_ERR_SUCCESS and mid is not None
        wait_until(lambda: mid in self.subacks, what=f"SUBACK for {topic_filter}")
        return self.subacks[mid]

    def publish(self, topic: str, payload: bytes, qos: int = 1, retain: bool = False) -> ReasonCode:
        """Publish and wait for the PUBACK; returns its reason code (0 on 3.1.1)."""
        info = self.client.publish(topic, payload, qos=qos, retain=retain)
        wait_until(lambda: info.mid in self.pubacks, what=f"PUBACK for {topic}")
        return self.pubacks[info.mid]

    def received(self, topic: str | None = None) -> list[bytes]:
        with self._lock:
            return [p for t, p, _ in self.messages if topic is None or t == topic]

    def wait_for(self, payload: bytes, timeout: float = WAIT) -> None:
        wait_until(lambda: payload in self.received(), timeout, what=f"message {payload!r}")

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.client.disconnect()
        self.client.loop_stop()


@contextlib.contextmanager
def peers(*made: Peer) -> Iterator[tuple[Peer, ...]]:
    try:
        yield made
    finally:
        for peer in made:
            peer.close()


def barrier(sender: Peer, receiver: Peer, topic: str) -> None:
    """Send a fresh marker and wait until it arrives.

    Mosquitto handles one connection's packets in order and queues deliveries to a client in
    order, so anything published before the marker that could reach ``receiver`` has arrived
    by the time the marker does: absence is then a fact, not a guess after a sleep.
    """
    marker = f"barrier-{uuid.uuid4()}".encode()
    sender.publish(topic, marker)
    receiver.wait_for(marker)


# -- raw probes ----------------------------------------------------------------------------


def _connect_packet(client_id: bytes = b"probe") -> bytes:
    variable = b"\x00\x04MQTT\x04\x02\x00\x3c"  # MQTT 3.1.1, clean session, keepalive 60
    body = variable + len(client_id).to_bytes(2, "big") + client_id
    return b"\x10" + bytes([len(body)]) + body


def probe(
    port: int, tls: tuple[Path, Path | None, Path | None] | None, timeout: float = WAIT
) -> str:
    """One MQTT CONNECT by hand: ``connack:<code>`` or ``refused:<what the socket said>``.

    Independent of paho, and precise about TLS: with TLS 1.3 the server judges the client
    certificate after the client's side of the handshake is done, so a refusal shows up as an
    alert on the first read.
    """
    raw = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    sock: socket.socket = raw
    try:
        if tls is not None:
            ca, cert, key = tls
            context = ssl.create_default_context(cafile=str(ca))
            if cert is not None and key is not None:
                context.load_cert_chain(str(cert), str(key))
            sock = context.wrap_socket(raw, server_hostname="localhost")
        sock.sendall(_connect_packet())
        data = b""
        while len(data) < 4:
            chunk = sock.recv(4 - len(data))
            if not chunk:
                return f"refused:closed after {len(data)} bytes"
            data += chunk
        if data[0] != 0x20:
            return f"refused:unexpected {data!r}"
        return f"connack:{data[3]}"
    except ssl.SSLError as exc:
        return f"refused:{exc.reason or exc}"
    except (ConnectionResetError, BrokenPipeError, TimeoutError) as exc:
        return f"refused:{type(exc).__name__}"
    finally:
        sock.close()


def gateways(*pairs: tuple[str, str]) -> Iterable[GatewayAccess]:
    return [GatewayAccess(h, g) for h, g in pairs]
