"""``hallwatch-edge selftest``: is this gateway ready to serve its hall?

Checks, in the order a technician would fix them: serial ports exist and open, evaluators
answer a STATUS_POLL, the queue machine's line carries data, the clock is synchronised, the
disk has room for the journal, the journal is writable, the broker accepts the certificate,
and central acknowledges an event. The last one journals a ``gateway.selftest`` event and waits
for central's acknowledgement of it: the whole path a citizen's key press takes.

The service holds the serial ports exclusively and its broker client id is forced to its
certificate name, so while it runs the checks that would take them over are skipped (SKIP)
and the report says to stop the service for a full test. The queue machine is never
acknowledged here: it keeps every message for the service.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import sqlite3
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

import serial

from edge.clock import Clock
from edge.config import GatewayConfig
from edge.instance import service_running
from edge.journal import Journal
from edge.uplink import SOFTWARE, Uplink
from firmware_bridges.ff68.driver import probe
from firmware_bridges.qm.driver import QueueFeed, parse_transport
from hallkit.mqtt import Acks, ClientOptions, Connection, MqttClient, TlsFilesUnusable
from protocols.events import GatewaySelfTest
from protocols.strict import clean_text

# The machine sends a heartbeat every 30 s and re-sends anything unacknowledged every 2 s.
QM_WAIT_S = 35.0
BROKER_WAIT_S = 10.0
CENTRAL_WAIT_S = 20.0
DISK_MARGIN_MB = 64  # logs, SQLite's WAL and temporary files beside the journal


class Status(StrEnum):
    PASS = "PASS"
    FAIL = "FAIL"
    SKIP = "SKIP"


@dataclass(frozen=True, slots=True)
class Check:
    name: str
    status: Status
    detail: str


def ok(name: str, detail: str) -> Check:
    return Check(name, Status.PASS, detail)


def fail(name: str, detail: str) -> Check:
    return Check(name, Status.FAIL, detail)


def skip(name: str, detail: str) -> Check:
    return Check(name, Status.SKIP, detail)


SERVICE_RUNNING = (
    "网关服务正在运行，停止后可完整测试 / the gateway service is running; stop it for this check"
)


@dataclass(frozen=True, slots=True)
class SelfTestOptions:
    qm_wait_s: float = QM_WAIT_S
    broker_wait_s: float = BROKER_WAIT_S
    central_wait_s: float = CENTRAL_WAIT_S
    skip_central: bool = False


# -- ports and devices -------------------------------------------------------------------------


def serial_ports(config: GatewayConfig) -> list[str]:
    ports = [bus.port for bus in config.evaluator_buses]
    if config.queue is not None and isinstance(parse_transport(config.queue.transport), str):
        ports.append(config.queue.transport)
    return ports


def check_port(path: str, running: bool) -> Check:
    name = f"串口 port {path}"
    if not os.path.exists(path):
        return fail(name, "不存在 / does not exist (unplugged? see `hallwatch-edge ports`)")
    if running:
        return skip(name, f"exists; {SERVICE_RUNNING}")
    try:
        port = serial.Serial(path, 9600, timeout=0, exclusive=True)
    except (OSError, serial.SerialException) as exc:
        return fail(name, f"无法打开 / cannot open: {exc}")
    port.close()
    return ok(name, "exists and opens")


async def check_evaluators(config: GatewayConfig, running: bool) -> list[Check]:
    checks = []
    for bus in config.evaluator_buses:
        name = f"评价器 evaluators {bus.port}"
        if running:
            checks.append(skip(name, SERVICE_RUNNING))
            continue
        wanted = {d.addr: d.window for d in bus.devices}
        limit = 5.0 + 0.5 * len(wanted)  # two 150 ms polls per device, and room to open
        try:
            found = set(
                await asyncio.wait_for(
                    probe(bus.port, sorted(wanted), baudrate=bus.baudrate), limit
                )
            )
        except (ConnectionError, OSError) as exc:
            checks.append(fail(name, f"无法打开 / cannot open the bus: {exc}"))
            continue
        except TimeoutError:
            checks.append(
                fail(name, f"the bus did not finish {len(wanted)} polls in {limit:.0f} s")
            )
            continue
        missing = [f"{a:#04x} (窗口 window {wanted[a]})" for a in sorted(wanted) if a not in found]
        if missing:
            checks.append(
                fail(
                    name,
                    f"{len(found)}/{len(wanted)} answer STATUS_POLL; "
                    f"no answer: {', '.join(missing)}",
                )
            )
        else:
            checks.append(ok(name, f"{len(found)}/{len(wanted)} answer STATUS_POLL"))
    return checks


async def check_queue_machine(config: GatewayConfig, running: bool, wait_s: float) -> Check | None:
    if config.queue is None:
        return None
    name = f"叫号机 queue machine {config.queue.transport}"
    if running:
        return skip(name, SERVICE_RUNNING)
    started = time.monotonic()
    feed = QueueFeed(
        config.queue.transport,
        encoding=config.queue.encoding,
        baudrate=config.queue.baudrate,
        idle_timeout=None,
    )
    async with feed:
        try:
            async with asyncio.timeout(wait_s):
                async for item in feed.messages():
                    kind = type(item).__name__
                    return ok(
                        name,
                        f"line alive: {kind} after {time.monotonic() - started:.1f} s"
                        " (not acknowledged: the machine keeps it)",
                    )
        except TimeoutError:
            pass
        stats = feed.stats()
    why = stats.last_error or ("connected, but silent" if stats.connects else "not connected")
    return fail(name, f"no data in {wait_s:.0f} s (heartbeat every 30 s): {why}")


# -- host --------------------------------------------------------------------------------------


def check_clock(config: GatewayConfig) -> Check:
    name = "时钟 clock"
    assumed = config.clock.assume_synced
    if assumed is not None:
        return (ok if assumed else fail)(name, f"assume_synced: {assumed} in the configuration")
    if Clock().synchronised():
        return ok(name, "the kernel reports NTP synchronisation")
    return fail(
        name,
        "未同步 / not synchronised: check NTP (timedatectl timesync-status); "
        "events are stamped unsynced until it is",
    )


def _existing(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def check_disk(config: GatewayConfig) -> Check:
    name = "磁盘 disk"
    usage = shutil.disk_usage(_existing(config.data_dir))
    journal = config.journal_path
    used = (
        sum(p.stat().st_size for p in journal.parent.glob(journal.name + "*") if p.is_file())
        if journal.parent.exists()
        else 0
    )
    need = max(0.0, config.journal.limit_mb - used / 2**20) + DISK_MARGIN_MB
    free_mb = usage.free / 2**20
    detail = f"{free_mb:.0f} MB free; the journal may still grow by {need:.0f} MB"
    return (ok if free_mb >= need else fail)(name, detail)


def check_journal(config: GatewayConfig, running: bool) -> Check:
    name = "日志库 journal"
    directory = config.journal_path.parent
    try:
        directory.mkdir(parents=True, exist_ok=True)
        probe_file = directory / f".selftest-{os.getpid()}"
        fd = os.open(probe_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, b"selftest")
            os.fsync(fd)
        finally:
            os.close(fd)
            probe_file.unlink(missing_ok=True)
    except OSError as exc:
        return fail(name, f"{directory} 不可写 / not writable: {exc.strerror}")
    if not config.journal_path.exists():
        return ok(name, f"{directory} writable (no journal yet)")
    try:
        db = sqlite3.connect(config.journal_path, timeout=2.0, isolation_level=None)
        try:
            meta = dict(db.execute("SELECT key, value FROM meta").fetchall())
            if not running:
                db.execute("BEGIN IMMEDIATE")  # the write lock, and nothing written
                db.execute("ROLLBACK")
        finally:
            db.close()
    except sqlite3.Error as exc:
        return fail(name, f"{config.journal_path}: {exc}")
    head, acked = meta.get("head_seq", 0), meta.get("acked_seq", 0)
    return ok(name, f"writable; head {head}, acknowledged {acked}, backlog {head - acked}")


# -- broker and central ------------------------------------------------------------------------


def _tls_problem(config: GatewayConfig) -> str | None:
    tls = config.broker.tls
    if tls is None:
        return None
    for what, path in (("ca", tls.ca), ("cert", tls.cert), ("key", tls.key)):
        if not path.exists():
            return f"broker.tls.{what} {path} does not exist"
        if not os.access(path, os.R_OK):
            return f"broker.tls.{what} {path} is not readable by this user"
    return None


async def check_broker(config: GatewayConfig, running: bool, wait_s: float) -> Check:
    broker = config.broker
    name = f"消息服务器 broker {broker.host}:{broker.port}"
    if running:
        return skip(name, SERVICE_RUNNING)
    problem = _tls_problem(config)
    if problem:
        return fail(name, problem)
    loop = asyncio.get_running_loop()
    answer: asyncio.Future[str] = loop.create_future()

    def settle(change: Connection) -> None:
        if change.up:
            text = "ok"
        else:
            text = f"{'refused' if change.refused else 'disconnected'}: {change.reason}"
        if not answer.done():
            answer.set_result(text)

    # Same client id and persistent session as the service, and nothing acknowledged: a
    # command waiting for the gateway stays queued for it.
    client = MqttClient(
        broker.model_copy(update={"keepalive_s": 30}),
        ClientOptions(
            client_id=config.gateway, clean_session=False, acks=Acks.BY_CALLER, retry=False
        ),
        on_connection=settle,
        receive=lambda _topic, _size: False,
    )
    try:
        await client.start()
    except TlsFilesUnusable as exc:
        return fail(name, f"TLS files unusable: {exc}")
    except (OSError, ssl.SSLError) as exc:
        return fail(name, f"无法连接 / cannot connect: {exc}")
    try:
        try:
            outcome = await asyncio.wait_for(answer, wait_s)
        except TimeoutError:
            outcome = f"no CONNACK in {wait_s:.0f} s"
    finally:
        await asyncio.to_thread(client.stop)
    login = "certificate" if broker.tls is not None else "plain TCP (development only)"
    if outcome == "ok":
        return ok(name, f"connected with the {login}")
    return fail(name, f"{outcome} (revoked or wrong certificate? wrong address?)")


async def check_central(config: GatewayConfig, checks: list[Check], wait_s: float) -> Check:
    """Journal a gateway.selftest event and wait until central acknowledges it."""
    name = "中心确认 central acknowledges"
    clock = Clock(assume_synced=config.clock.assume_synced)
    journal = Journal(
        config.journal_path,
        clock,
        limit_bytes=int(config.journal.limit_mb * 2**20),
        seq_floor=config.journal.seq_floor,
    )
    await journal.open()
    try:
        failed = [c.name for c in checks if c.status is Status.FAIL][:64]
        seq = await journal.append(
            "gateway.selftest",
            GatewaySelfTest(
                software=SOFTWARE, passed=not failed, failed=[clean_text(f, 300) for f in failed]
            ),
        )
        uplink = Uplink(journal, clock, config.hall, config.gateway, config.broker, config.uplink)
        await uplink.start()
        try:
            deadline = time.monotonic() + wait_s
            # The ack comes through paho into the journal; nothing to await but time.
            while journal.acknowledged < seq and time.monotonic() < deadline:  # noqa: ASYNC110
                await asyncio.sleep(0.1)
        finally:
            await uplink.stop()
        if journal.acknowledged >= seq:
            return ok(name, f"central acknowledged the self-test event (seq {seq})")
        why = (
            uplink.last_error
            or "connected, but no acknowledgement (is central running? "
            "is this gateway registered for this hall?)"
        )
        return fail(name, f"no acknowledgement of seq {seq} in {wait_s:.0f} s: {why}")
    finally:
        await journal.close()


# -- all together ------------------------------------------------------------------------------


async def run_selftest(
    config: GatewayConfig,
    options: SelfTestOptions = SelfTestOptions(),
    progress: Callable[[Check], object] | None = None,
) -> list[Check]:
    running = service_running(config.data_dir)
    checks: list[Check] = []

    def add(check: Check | None) -> None:
        if check is not None:
            checks.append(check)
            if progress is not None:
                progress(check)

    for path in serial_ports(config):
        add(check_port(path, running))
    for check in await check_evaluators(config, running):
        add(check)
    add(await check_queue_machine(config, running, options.qm_wait_s))
    add(check_clock(config))
    add(check_disk(config))
    add(check_journal(config, running))
    broker = await check_broker(config, running, options.broker_wait_s)
    add(broker)
    if options.skip_central:
        return checks
    if running:
        add(skip("中心确认 central acknowledges", SERVICE_RUNNING))
    elif broker.status is Status.FAIL:
        add(fail("中心确认 central acknowledges", "the broker is not reachable"))
    else:
        add(await check_central(config, checks, options.central_wait_s))
    return checks


def passed(checks: list[Check]) -> bool:
    return all(c.status is not Status.FAIL for c in checks)
