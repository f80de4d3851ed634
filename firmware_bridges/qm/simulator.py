# Long module: the machine's whole side of the feed (clock, unacknowledged buffer, pty and TCP
# endpoints, faults) and the scenario that drives it.
"""The queue-number machine's side of the $QM feed, for tests and the demo.

``QueueMachineSimulator`` behaves as the manual (``docs/devices/queue-machine-qm.md``) says a
machine does: message numbers 1–999999 wrapping to 1; the last 1000 unacknowledged messages
kept (optionally in a file, so a simulated reboot keeps them) and re-sent, in order, on a fixed
2 s tick and all at once after every reconnect; its own drifting Asia/Shanghai clock. It serves
a pseudo-terminal behind a stable symlink (``unplug``/``replug`` re-point it, like a USB adapter
re-enumerating) or a TCP port that accepts one client, a new one replacing the old.

``HallScenario`` drives a realistic stream of tickets through N windows.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import os
import random
import time
import tty
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, Self, TypeVar, cast

from firmware_bridges.qm.codec import (
    MAX_MSEQ,
    AckDecoder,
    Called,
    Heartbeat,
    Message,
    NoShow,
    QMMessage,
    Recalled,
    ServiceFinished,
    ServiceStarted,
    StaffLogin,
    StaffLogout,
    TicketIssued,
    Transferred,
    WindowPaused,
    WindowResumed,
    encode,
    next_mseq,
    normalize_encoding,
)

__all__ = [
    "BUFFER_SIZE",
    "DEFAULT_SERVICES",
    "HEARTBEAT_INTERVAL",
    "RESEND_INTERVAL",
    "HallScenario",
    "MachineClock",
    "QueueMachineSimulator",
    "ScenarioResult",
    "SentLine",
]

log = logging.getLogger(__name__)

# "Gateway → machine": the numbers the manual gives.
BUFFER_SIZE = 1000
RESEND_INTERVAL = 2.0
HEARTBEAT_INTERVAL = 30.0
# Bytes the simulated line holds for a gateway that is not reading before it drops them, as a
# UART with nobody listening would (the resend tick brings them back).
OUTBOX_LIMIT = 256 * 1024

# China has kept UTC+8 without daylight saving since 1991.
CHINA_STANDARD_TIME = timezone(timedelta(hours=8), "Asia/Shanghai")


class MachineClock:
    """The machine's own wall clock: Asia/Shanghai local time, naive, whole seconds, plus a
    fixed ``skew`` (e.g. +3 h 12 min after a power cut) and a drift in seconds per hour."""

    def __init__(
        self,
        skew: timedelta = timedelta(0),
        drift_seconds_per_hour: float = 0.0,
        utc_now: Callable[[], datetime] | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.skew = skew
        self.drift_seconds_per_hour = drift_seconds_per_hour
        self._utc_now = utc_now or (lambda: datetime.now(UTC))
        self._monotonic = monotonic
        self._since = monotonic()

    def true_local(self) -> datetime:
        """What a correct clock in the hall would show now."""
        return self._utc_now().astimezone(CHINA_STANDARD_TIME).replace(tzinfo=None)

    def drift(self) -> timedelta:
        hours = (self._monotonic() - self._since) / 3600
        return timedelta(seconds=self.drift_seconds_per_hour * hours)

    def now(self) -> datetime:
        return (self.true_local() + self.skew + self.drift()).replace(microsecond=0)

    def set(self, moment: datetime) -> None:
        """Set the clock as a technician (or a power cut) would; drift counts from here."""
        self._since = self._monotonic()
        self.skew = moment - self.true_local()


Cause = Literal["new", "tick", "reconnect", "raw"]
_M = TypeVar("_M", bound=QMMessage)


@dataclass(frozen=True, slots=True)
class SentLine:
    """Ground truth: one line put on the wire (noise included) and why."""

    at: float  # time.monotonic()
    utc: datetime
    mseq: int | None
    line: bytes
    cause: Cause
    corrupted: bool


class _BufferStore:
    """The resend buffer kept across reboots, as an append-only log compacted now and then:
    ``N <next mseq>``, ``M <mseq> <line in hex>``, ``A <mseq>``."""

    def __init__(self, path: Path, capacity: int) -> None:
        self.path = path
        self._capacity = capacity
        self._records = 0

    def load(self, first_mseq: int) -> tuple[OrderedDict[int, bytes], int]:
        buffer: OrderedDict[int, bytes] = OrderedDict()
        following = first_mseq
        self._records = 0
        try:
            text = self.path.read_text("ascii")
        except FileNotFoundError:
            text = ""
        for record in text.splitlines():
            self._records += 1
            match record.split():
                case ["N", number] if number.isdigit():
                    following = int(number)
                case ["M", number, line] if number.isdigit():
                    with contextlib.suppress(ValueError):
                        buffer[int(number)] = bytes.fromhex(line)
                        buffer.move_to_end(int(number))
                        while len(buffer) > self._capacity:
                            buffer.popitem(last=False)
                        following = next_mseq(int(number))
                case ["A", number] if number.isdigit():
                    buffer.pop(int(number), None)
                case _:
                    pass  # a record cut by a crash
        return buffer, following

    def append(self, record: str, buffer: OrderedDict[int, bytes], following: int) -> None:
        with self.path.open("a", encoding="ascii") as file:
            file.write(record + "\n")
        self._records += 1
        if self._records > 4 * self._capacity + 100:
            self.compact(buffer, following)

    def compact(self, buffer: OrderedDict[int, bytes], following: int) -> None:
        lines = [f"N {following}", *(f"M {m} {line.hex()}" for m, line in buffer.items())]
        scratch = self.path.with_name(self.path.name + ".new")
        scratch.write_text("\n".join(lines) + "\n", "ascii")
        os.replace(scratch, self.path)
        self._records = len(lines)


class _PtyEndpoint:
    """The machine end of a serial cable: a pty master, its slave behind a stable symlink."""

    def __init__(
        self,
        directory: Path,
        name: str,
        on_data: Callable[[bytes], None],
        on_connect: Callable[[], None],
    ) -> None:
        self.path = directory / name
        self._on_data = on_data
        self._on_connect = on_connect
        self._master: int | None = None
        self._slave: int | None = None
        self._outbox = bytearray()
        self._writing = False
        self.dropped_bytes = 0

    @property
    def address(self) -> str:
        return str(self.path)

    @property
    def plugged(self) -> bool:
        return self._master is not None

    async def plug(self) -> None:
        if self._master is not None:
            return
        master, slave = os.openpty()
        # Raw before anyone can open it: no echo, no CR/LF translation.
        tty.setraw(slave)
        os.set_blocking(master, False)
        # The machine keeps its end of the line open: with no slave open, the master reads EIO.
        self._master, self._slave = master, slave
        scratch = self.path.with_name(f".{self.path.name}.new")
        scratch.unlink(missing_ok=True)
        os.symlink(os.ttyname(slave), scratch)
        os.replace(scratch, self.path)
        asyncio.get_running_loop().add_reader(master, self._readable)
        self._on_connect()

    def unplug(self) -> None:
        master, slave = self._master, self._slave
        if master is None:
            return
        loop = asyncio.get_running_loop()
        loop.remove_reader(master)
        loop.remove_writer(master)
        self._writing = False
        self._outbox.clear()
        self._master = self._slave = None
        self.path.unlink(missing_ok=True)
        os.close(master)
        if slave is not None:
            os.close(slave)

    def write(self, data: bytes) -> bool:
        if self._master is None:
            return False
        if len(self._outbox) + len(data) > OUTBOX_LIMIT:
            self.dropped_bytes += len(data)
            return False
        self._outbox += data
        self._flush()
        return True

    def _flush(self) -> None:
        master = self._master
        if master is None:
            return
        while self._outbox:
            try:
                written = os.write(master, self._outbox)
            except BlockingIOError:
                break
            except OSError as error:
                log.debug("pty write: %s", error)
                self.dropped_bytes += len(self._outbox)
                self._outbox.clear()
                break
            del self._outbox[:written]
        loop = asyncio.get_running_loop()
        if self._outbox and not self._writing:
            loop.add_writer(master, self._flush)
            self._writing = True
        elif not self._outbox and self._writing:
            loop.remove_writer(master)
            self._writing = False

    def _readable(self) -> None:
        if self._master is None:
            return
        try:
            data = os.read(self._master, 4096)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as error:
            log.debug("pty read: %s", error)
            return
        self._on_data(data)


class _TcpEndpoint:
    """The machine's TCP port: one client at a time, a new connection replaces the old."""

    def __init__(
        self,
        host: str,
        port: int,
        on_data: Callable[[bytes], None],
        on_connect: Callable[[], None],
    ) -> None:
        self._host = host
        self.port = port
        self._on_data = on_data
        self._on_connect = on_connect
        self._server: asyncio.Server | None = None
        self._client: asyncio.StreamWriter | None = None
        self.connections = 0
        self.dropped_bytes = 0

    @property
    def address(self) -> str:
        return f"tcp://{self._host}:{self.port}"

    @property
    def plugged(self) -> bool:
        return self._server is not None

    @property
    def has_client(self) -> bool:
        return self._client is not None

    async def plug(self) -> None:
        if self._server is not None:
            return
        self._server = await asyncio.start_server(self._accept, self._host, self.port)
        if self.port == 0:  # keep the port it got, so that replug() listens there again
            self.port = self._server.sockets[0].getsockname()[1]

    def unplug(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close()
        self.drop_client()

    def drop_client(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            client.transport.abort()

    def write(self, data: bytes) -> bool:
        client = self._client
        if client is None or client.is_closing():
            return False
        if client.transport.get_write_buffer_size() > OUTBOX_LIMIT:
            self.dropped_bytes += len(data)
            return False
        client.write(data)
        return True

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._server is None:
            writer.transport.abort()
            return
        self.drop_client()
        self._client = writer
        self.connections += 1
        self._on_connect()
        try:
            while data := await reader.read(4096):
                self._on_data(data)
        except OSError:
            pass
        finally:
            if self._client is writer:
                self._client = None
            writer.transport.abort()


def _bad_checksum(line: bytes) -> bytes:
    star = line.rfind(b"*")
    wrong = int(line[star + 1 : star + 3], 16) ^ 0x5A
    return b"%s*%02X\r\n" % (line[:star], wrong)


def _flip_bit(line: bytes, rng: random.Random) -> bytes:
    damaged = bytearray(line)
    damaged[rng.randrange(len(damaged))] ^= 1 << rng.randrange(8)
    return bytes(damaged)


class QueueMachineSimulator:
    """A $QM queue-number machine. Give it ``pty_dir`` (it serves a pty linked at
    ``pty_dir/link_name``) or ``tcp_port`` (0 picks a free port); ``address`` is what to hand
    to ``QueueFeed``. Use as an async context manager.

    Ground truth: ``messages`` (every message made, in order), ``sent`` (every line written,
    with time and cause), ``acked`` (every mseq acknowledged), ``evicted`` (mseqs pushed out
    of a full buffer unacknowledged: lost, as the manual says).
    """

    def __init__(
        self,
        *,
        pty_dir: str | Path | None = None,
        link_name: str = "qm",
        tcp_port: int | None = None,
        tcp_host: str = "127.0.0.1",
        encoding: str = "utf-8",
        clock: MachineClock | None = None,
        state_file: str | Path | None = None,
        resend_interval: float = RESEND_INTERVAL,
        buffer_size: int = BUFFER_SIZE,
        heartbeat_interval: float | None = HEARTBEAT_INTERVAL,
        noise: float = 0.0,
        seed: int | None = None,
        history: int | None = 100_000,
        first_mseq: int = 1,
    ) -> None:
        if (pty_dir is None) == (tcp_port is None):
            raise ValueError("give exactly one of pty_dir and tcp_port")
        if not 1 <= first_mseq <= MAX_MSEQ:
            raise ValueError(f"first_mseq {first_mseq} outside 1…{MAX_MSEQ}")
        self._endpoint: _PtyEndpoint | _TcpEndpoint
        if pty_dir is not None:
            self._endpoint = _PtyEndpoint(Path(pty_dir), link_name, self._on_data, self._replay)
        else:
            assert tcp_port is not None
            self._endpoint = _TcpEndpoint(tcp_host, tcp_port, self._on_data, self._replay)
        self.encoding = normalize_encoding(encoding)
        self.clock = clock or MachineClock()
        self.resend_interval = resend_interval
        self.heartbeat_interval = heartbeat_interval
        self.noise = noise
        self._rng = random.Random(seed)
        self._capacity = buffer_size
        self._store = None if state_file is None else _BufferStore(Path(state_file), buffer_size)
        self._first_mseq = first_mseq
        self._buffer: OrderedDict[int, bytes] = OrderedDict()
        self._next = first_mseq
        self._acks = AckDecoder()
        self._corrupt_next = 0
        self._tasks: list[asyncio.Task[None]] = []
        self._drained = asyncio.Event()
        # ground truth
        self.messages: deque[Message] = deque(maxlen=history)
        self.sent: deque[SentLine] = deque(maxlen=history)
        self.ack_log: deque[tuple[float, int]] = deque(maxlen=history)
        self.acked: set[int] = set()
        self.evicted: list[int] = []
        self.replays = 0
        # the queues the machine runs (业务队列), for waiting counts and the scenario
        self._queues: dict[str, deque[tuple[int, str]]] = {}
        self._ticket_numbers: dict[str, int] = {}
        self._issued = 0
        self.staff_at: dict[int, str] = {}
        self._load_state()

    # -- lifetime ------------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        await self.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def open(self) -> None:
        """Power on: open the line (pty or TCP port) and start the resend and heartbeat timers."""
        await self._endpoint.plug()
        self._start_timers()

    async def close(self) -> None:
        await self._stop_timers()
        self._endpoint.unplug()

    async def reboot(self, *, down_for: float = 0.0, clock: datetime | None = None) -> None:
        """Power-cycle: the line goes down, memory is lost and reloaded from ``state_file``
        (without one the buffer simply survives in memory), the clock may come back wrong."""
        await self.close()
        self._load_state()
        if clock is not None:
            self.clock.set(clock)
        await asyncio.sleep(down_for)
        await self.open()

    async def unplug(self) -> None:
        """Pty: close the line and remove the symlink. TCP: stop listening, drop the client
        (connects are refused). The machine keeps queueing meanwhile."""
        self._endpoint.unplug()

    async def replug(self) -> None:
        """Pty: a new pty behind the same symlink. TCP: listen on the same port again."""
        await self._endpoint.plug()

    def drop_connection(self) -> None:
        """TCP only: cut the current client, as a network blip would."""
        if not isinstance(self._endpoint, _TcpEndpoint):
            raise TypeError("drop_connection() is for a TCP machine")
        self._endpoint.drop_client()

    @property
    def address(self) -> str:
        return self._endpoint.address

    @property
    def path(self) -> Path:
        if not isinstance(self._endpoint, _PtyEndpoint):
            raise TypeError("a TCP machine has no device path")
        return self._endpoint.path

    @property
    def port(self) -> int:
        if not isinstance(self._endpoint, _TcpEndpoint):
            raise TypeError("a pty machine has no TCP port")
        return self._endpoint.port

    @property
    def has_client(self) -> bool:
        """TCP: a gateway is connected. Pty: the line is plugged (a UART cannot tell)."""
        if isinstance(self._endpoint, _TcpEndpoint):
            return self._endpoint.has_client
        return self._endpoint.plugged

    @property
    def dropped_bytes(self) -> int:
        return self._endpoint.dropped_bytes

    @property
    def pending(self) -> list[int]:
        """mseqs in the resend buffer, oldest first."""
        return list(self._buffer)

    @property
    def next_mseq(self) -> int:
        return self._next

    @property
    def bad_ack_lines(self) -> int:
        return self._acks.bad_lines

    async def wait_drained(self, timeout: float) -> None:
        """Until every message has been acknowledged; TimeoutError otherwise."""
        async with asyncio.timeout(timeout):
            while self._buffer:
                self._drained.clear()
                await self._drained.wait()

    # -- scripting the machine -----------------------------------------------------------------

    def issue_ticket(
        self, service: str, service_name: str | None = None, *, ticket: str | None = None
    ) -> TicketIssued:
        if ticket is None:
            prefix = service[0].upper() if service[:1].isalpha() else "T"
            number = self._ticket_numbers.get(prefix, 0) % 999 + 1
            self._ticket_numbers[prefix] = number
            ticket = f"{prefix}{number:03d}"
        queue = self._queues.setdefault(service, deque())
        self._issued += 1
        queue.append((self._issued, ticket))
        return self._send(
            TicketIssued,
            ticket=ticket,
            service=service,
            waiting=len(queue),
            service_name=service_name,
        )

    def call(self, ticket: str, window: int) -> Called:
        self._dequeue(ticket)
        return self._send(Called, ticket=ticket, window=window)

    def recall(self, ticket: str, window: int) -> Recalled:
        return self._send(Recalled, ticket=ticket, window=window)

    def start(self, ticket: str, window: int, staff: str | None = None) -> ServiceStarted:
        staff = self._staff(window, staff)
        return self._send(ServiceStarted, ticket=ticket, window=window, staff=staff)

    def finish(self, ticket: str, window: int, staff: str | None = None) -> ServiceFinished:
        staff = self._staff(window, staff)
        return self._send(ServiceFinished, ticket=ticket, window=window, staff=staff)

    def no_show(self, ticket: str, window: int) -> NoShow:
        return self._send(NoShow, ticket=ticket, window=window)

    def transfer(self, ticket: str, from_window: int, to_service: str) -> Transferred:
        self._issued += 1
        self._queues.setdefault(to_service, deque()).append((self._issued, ticket))
        return self._send(
            Transferred, ticket=ticket, from_window=from_window, to_service=to_service
        )

    def login(self, window: int, staff: str) -> StaffLogin:
        self.staff_at[window] = staff
        return self._send(StaffLogin, window=window, staff=staff)

    def logout(self, window: int, staff: str | None = None) -> StaffLogout:
        staff = self._staff(window, staff)
        self.staff_at.pop(window, None)
        return self._send(StaffLogout, window=window, staff=staff)

    def pause(self, window: int, staff: str | None = None) -> WindowPaused:
        return self._send(WindowPaused, window=window, staff=self._staff(window, staff))

    def resume(self, window: int, staff: str | None = None) -> WindowResumed:
        return self._send(WindowResumed, window=window, staff=self._staff(window, staff))

    def heartbeat(self) -> Heartbeat:
        return self._send(Heartbeat, waiting_total=self.waiting())

    def send_raw(self, data: bytes | str, *, mseq: int | None = None) -> None:
        """Put bytes on the wire as they are (malformed-input tests). With ``mseq`` the line
        is also kept in the resend buffer under that number until acknowledged."""
        line = data.encode(self.encoding) if isinstance(data, str) else bytes(data)
        if mseq is not None:
            self._remember(mseq, line)
        self._emit(line, mseq, "raw")

    def take_mseq(self) -> int:
        """Use up the next message number (for a hand-made line given to ``send_raw``)."""
        mseq = self._take()
        if self._store is not None:
            self._store.append(f"N {self._next}", self._buffer, self._next)
        return mseq

    def corrupt_next(self, count: int = 1) -> None:
        """The next ``count`` lines written go out with a wrong checksum (the buffer keeps the
        good line, so a later resend is clean)."""
        self._corrupt_next += count

    def waiting(self, service: str | None = None) -> int:
        if service is not None:
            return len(self._queues.get(service, ()))
        return sum(len(queue) for queue in self._queues.values())

    def next_waiting(self, services: Iterable[str]) -> str | None:
        """The longest-waiting ticket among ``services`` (not removed: ``call`` does that)."""
        heads = [self._queues[s][0] for s in services if self._queues.get(s)]
        return min(heads)[1] if heads else None

    # -- inside the machine --------------------------------------------------------------------

    def _load_state(self) -> None:
        if self._store is not None:
            self._buffer, self._next = self._store.load(self._first_mseq)

    def _take(self) -> int:
        mseq, self._next = self._next, next_mseq(self._next)
        return mseq

    def _staff(self, window: int, staff: str | None) -> str:
        if staff is not None:
            return staff
        try:
            return self.staff_at[window]
        except KeyError:
            raise ValueError(f"nobody is logged in at window {window}") from None

    def _dequeue(self, ticket: str) -> None:
        for queue in self._queues.values():
            for entry in queue:
                if entry[1] == ticket:
                    queue.remove(entry)
                    return

    def _send(self, kind: type[_M], **fields: Any) -> _M:
        """Number, stamp, buffer and send one message of ``kind``."""
        message = kind(mseq=self._take(), machine_time=self.clock.now(), **fields)
        line = encode(cast(Message, message), self.encoding)
        self.messages.append(cast(Message, message))
        self._remember(message.mseq, line)
        self._emit(line, message.mseq, "new")
        return message

    def _remember(self, mseq: int, line: bytes) -> None:
        self._buffer[mseq] = line
        self._buffer.move_to_end(mseq)
        while len(self._buffer) > self._capacity:
            # "keeps its last 1000 unacknowledged messages": the oldest falls out, lost.
            evicted, _ = self._buffer.popitem(last=False)
            self.evicted.append(evicted)
        if self._store is not None:
            self._store.append(f"M {mseq} {line.hex()}", self._buffer, self._next)

    def _emit(self, line: bytes, mseq: int | None, cause: Cause) -> None:
        corrupted = False
        if self._corrupt_next > 0 and line.endswith(b"\r\n") and b"*" in line:
            self._corrupt_next -= 1
            line, corrupted = _bad_checksum(line), True
        elif self.noise and self._rng.random() < self.noise:
            line, corrupted = _flip_bit(line, self._rng), True
        if self._endpoint.write(line):
            self.sent.append(
                SentLine(time.monotonic(), datetime.now(UTC), mseq, line, cause, corrupted)
            )

    def _replay(self) -> None:
        """After every (re)connect the whole buffer goes out at once."""
        self._acks.reset()
        self.replays += 1
        for mseq, line in list(self._buffer.items()):
            self._emit(line, mseq, "reconnect")

    def _on_data(self, data: bytes) -> None:
        for mseq in self._acks.feed(data):
            self.acked.add(mseq)
            self.ack_log.append((time.monotonic(), mseq))
            if self._buffer.pop(mseq, None) is not None and self._store is not None:
                self._store.append(f"A {mseq}", self._buffer, self._next)
        if not self._buffer:
            self._drained.set()

    def _start_timers(self) -> None:
        self._tasks.append(asyncio.create_task(self._resend_tick(), name="qm-sim resend"))
        if self.heartbeat_interval:
            self._tasks.append(asyncio.create_task(self._heartbeats(), name="qm-sim heartbeat"))

    async def _stop_timers(self) -> None:
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _resend_tick(self) -> None:
        # A fixed tick, not a per-message timer: a message sent a moment before the tick is
        # sent again at the tick ("Gateway → machine").
        loop = asyncio.get_running_loop()
        due = loop.time() + self.resend_interval
        while True:
            await asyncio.sleep(max(0.0, due - loop.time()))
            due = max(due + self.resend_interval, loop.time())
            for mseq, line in list(self._buffer.items()):
                self._emit(line, mseq, "tick")

    async def _heartbeats(self) -> None:
        assert self.heartbeat_interval
        while True:
            await asyncio.sleep(self.heartbeat_interval)
            self.heartbeat()


# --- a hall's day ----------------------------------------------------------------------------

DEFAULT_SERVICES: tuple[tuple[str, str], ...] = (
    ("A01", "不动产登记"),
    ("B01", "社保医保"),
    ("C01", "户籍办理"),
    ("D01", "企业开办"),
    ("E01", "公积金提取"),
)


@dataclass(slots=True)
class ScenarioResult:
    issued: int = 0
    called: int = 0
    finished: int = 0
    no_shows: int = 0
    transfers: int = 0
    pauses: int = 0


FinishedHook = Callable[[ServiceFinished], Awaitable[None] | None]


class HallScenario:
    """A realistic stream through ``windows`` windows: tickets arrive (exponential gaps),
    windows call the longest-waiting ticket of their services, serve it, and now and then see
    a no-show (two recalls, then 弃号), transfer a ticket to another service, or pause.

    Times are hall seconds; ``speed`` hall seconds pass per real second (60 = a minute a
    second). ``on_service_finished`` is called (and awaited if it returns an awaitable) at
    every FN: the gateway sends the evaluation invitation then.
    """

    def __init__(
        self,
        machine: QueueMachineSimulator,
        *,
        windows: int = 4,
        services: Sequence[tuple[str, str]] = DEFAULT_SERVICES,
        speed: float = 1.0,
        seed: int = 0,
        arrival_gap: float = 45.0,
        walk_up: tuple[float, float] = (10.0, 40.0),
        service_time: tuple[float, float] = (120.0, 600.0),
        no_show_rate: float = 0.05,
        transfer_rate: float = 0.05,
        pause_rate: float = 0.03,
        pause_time: tuple[float, float] = (120.0, 600.0),
        on_service_finished: FinishedHook | None = None,
    ) -> None:
        if windows < 1 or not services or speed <= 0:
            raise ValueError("need at least one window, one service and a positive speed")
        self.machine = machine
        self.speed = speed
        # One generator per coroutine, so one window's luck does not depend on how the
        # others happened to interleave.
        self._seed = seed
        self._rng = random.Random(seed)
        self._names = dict(services)
        codes = [code for code, _ in services]
        # Each window serves its own service and its neighbour's (综合窗口 are common).
        self._serves = {
            w: {codes[(w - 1) % len(codes)], codes[w % len(codes)]} for w in range(1, windows + 1)
        }
        self._offered = sorted(set().union(*self._serves.values()))
        self._staff = {w: f"{self._rng.randrange(100000, 1000000):06d}" for w in self._serves}
        self.arrival_gap = arrival_gap
        self.walk_up = walk_up
        self.service_time = service_time
        self.no_show_rate = no_show_rate
        self.transfer_rate = transfer_rate
        self.pause_rate = pause_rate
        self.pause_time = pause_time
        self.on_service_finished = on_service_finished
        self.result = ScenarioResult()
        self._changed = asyncio.Condition()
        self._arrivals_done = False
        self._busy = 0
        self._transferred: set[str] = set()

    async def run(
        self, *, tickets: int | None = None, duration: float | None = None
    ) -> ScenarioResult:
        """Issue ``tickets`` tickets (or keep issuing for ``duration`` real seconds, or for
        ever), then let the windows empty the queues; staff log out at the end."""
        self._arrivals_done = False
        async with asyncio.TaskGroup() as group:
            group.create_task(self._arrivals(tickets, duration))
            for window in self._serves:
                group.create_task(self._window(window))
        return self.result

    async def _hall_sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds / self.speed)

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    async def _arrivals(self, tickets: int | None, duration: float | None) -> None:
        deadline = None if duration is None else time.monotonic() + duration
        try:
            while tickets is None or self.result.issued < tickets:
                if deadline is not None and time.monotonic() >= deadline:
                    break
                service = self._rng.choice(self._offered)
                self.machine.issue_ticket(service, self._names.get(service))
                self.result.issued += 1
                await self._notify()
                await self._hall_sleep(self._rng.expovariate(1 / self.arrival_gap))
        finally:
            self._arrivals_done = True
            await self._notify()

    def _finished_for_today(self) -> bool:
        waiting = sum(self.machine.waiting(service) for service in self._offered)
        return self._arrivals_done and self._busy == 0 and waiting == 0

    async def _next_ticket(self, window: int) -> str | None:
        async with self._changed:
            await self._changed.wait_for(
                lambda: (
                    self.machine.next_waiting(self._serves[window]) is not None
                    or self._finished_for_today()
                )
            )
            ticket = self.machine.next_waiting(self._serves[window])
            if ticket is not None:
                self.machine.call(ticket, window)
                self.result.called += 1
                self._busy += 1
            return ticket

    async def _window(self, window: int) -> None:
        staff = self._staff[window]
        self.machine.login(window, staff)
        rng = random.Random(f"{self._seed}/{window}")
        while (ticket := await self._next_ticket(window)) is not None:
            try:
                await self._serve(window, staff, ticket, rng)
            finally:
                self._busy -= 1
                await self._notify()
        self.machine.logout(window, staff)

    async def _serve(self, window: int, staff: str, ticket: str, rng: random.Random) -> None:
        machine = self.machine
        await self._hall_sleep(rng.uniform(*self.walk_up))
        if rng.random() < self.no_show_rate:
            for _ in range(2):
                machine.recall(ticket, window)
                await self._hall_sleep(60)
            machine.no_show(ticket, window)
            self.result.no_shows += 1
            return
        machine.start(ticket, window, staff)
        await self._hall_sleep(rng.uniform(*self.service_time))
        others = [s for s in self._offered if s not in self._serves[window]]
        if others and ticket not in self._transferred and rng.random() < self.transfer_rate:
            self._transferred.add(ticket)  # once is realistic enough
            machine.transfer(ticket, window, rng.choice(others))
            self.result.transfers += 1
            return
        finished = machine.finish(ticket, window, staff)
        self.result.finished += 1
        if self.on_service_finished is not None:
            outcome = self.on_service_finished(finished)
            if inspect.isawaitable(outcome):
                await outcome
        if rng.random() < self.pause_rate:
            machine.pause(window, staff)
            self.result.pauses += 1
            await self._hall_sleep(rng.uniform(*self.pause_time))
            machine.resume(window, staff)
