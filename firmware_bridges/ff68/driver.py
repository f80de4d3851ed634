# Long module: one port's whole life in one class (open, read, the write loop, reopening a lost
# port) and the state those share; splitting would hand that state around.
"""FF 68 evaluator bus transport: one serial port, asyncio, pyserial.

The only place that touches the port. Reading is a `loop.add_reader` callback on the port's file
descriptor feeding the sans-I/O `Decoder`; writing is one task that owns the line and sends
echoes before anything else. Spec: `docs/devices/evaluator-bus-ff68.md` ("the spec").

    async with EvaluatorBus("/dev/ttyUSB0") as bus:
        async for frame in bus.frames():          # events, callers' and unknown frames
            ...journal it, commit...
            await bus.send_echo(frame)            # only after the commit
        reply = await bus.request(StatusPoll(0x81))   # None: the device stayed silent

The bus survives the adapter being pulled: reads or writes that fail close the port and a task
reopens the same path (looking for it every 0.2 s while it is absent, retrying a path that is
there but will not open with backoff, 0.2 s doubling to 5 s), while `frames()` keeps waiting.
Ports without a file descriptor (pyserial's socket://, rfc2217://) are not supported.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections import deque
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from types import TracebackType
from typing import Final, Self

import serial

from firmware_bridges.ff68.codec import (
    REPLY_TO,
    REPLY_TYPES,
    RETRANSMISSION_WINDOW_S,
    Boot,
    CallerFrame,
    Command,
    Decoder,
    Event,
    Frame,
    InviteTimeout,
    KeyEvent,
    Reply,
    StatusPoll,
    UnknownFrame,
    answers,
    echo,
    encode,
)

log = logging.getLogger(__name__)

# Spec "Host → device commands": at least 5 ms (3.5 character times at 9600 baud) of silence
# between frames; we keep it after our own frames and after the last byte we received.
BUS_GAP_S: Final = 0.005
# A frame's bytes follow each other without pause; a partial frame with no byte for this long
# was cut short (collision, noise) and never completes. USB adapters deliver in chunks up to
# their 16 ms latency timer apart, hence the floor. Also at least 20 character times.
IDLE_MIN_S: Final = 0.030
REPLY_TIMEOUT_S: Final = 0.150  # spec: a device answers within 150 ms …
REQUEST_RETRIES: Final = 3  # … and may be asked again at most 3 times
RECONNECT_MIN_S: Final = 0.2
RECONNECT_MAX_S: Final = 5.0
# Our own frame heard back (an adapter without echo suppression) arrives while we send it; a
# device's repeat of an event we echoed comes ≥ 300 ms after its previous copy.
OWN_ECHO_WINDOW_S: Final = 0.100
WRITE_TIMEOUT_S: Final = 0.1
WRITE_TIMEOUTS_BEFORE_LOST: Final = 5  # in a row: a port this stuck is gone, not just slow
BITS_PER_CHAR: Final = 10  # 8N1: start, 8 data, stop


@dataclass(eq=False)
class _Outgoing:
    data: bytes
    queued: float
    sent: asyncio.Future[float | None] | None = None  # commands: the end of transmission


class EvaluatorBus:
    """One FF 68 bus on one serial port. Use as `async with`; see the module doc."""

    def __init__(
        self,
        url: str,
        baudrate: int = 9600,
        *,
        exclusive: bool = True,
        inbox_size: int = 4096,
        decoder: Decoder | None = None,
    ) -> None:
        self.url = url
        self.baudrate = baudrate
        self.exclusive = exclusive
        self.decoder = decoder or Decoder()
        self._char_s = BITS_PER_CHAR / baudrate
        self._idle_s = max(IDLE_MIN_S, 20 * self._char_s)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._port: serial.Serial | None = None
        self._fd = -1
        self._connected = asyncio.Event()
        self._closed = False
        self._inbox: asyncio.Queue[Frame | None] = asyncio.Queue(inbox_size)
        self._echoes: deque[_Outgoing] = deque()
        self._commands: deque[_Outgoing] = deque()
        self._wake = asyncio.Event()
        self._writer: asyncio.Task[None] | None = None
        self._reconnector: asyncio.Task[None] | None = None
        self._idle_timer: asyncio.TimerHandle | None = None
        self._last_rx = -1e9
        self._tx_end = -1e9
        self._recent_tx: deque[tuple[bytes, float]] = deque(maxlen=32)
        self._waiting: dict[tuple[int, int], tuple[Command, asyncio.Future[Reply]]] = {}
        self._locks: dict[int, asyncio.Lock] = {}
        self._echo_delays: deque[float] = deque(maxlen=1000)
        self.offline: set[int] = set()  # spec: silent after the retries, until a STATUS_POLL
        self.reconnects = 0
        self.disconnects = 0
        self.write_timeouts = 0  # writes pyserial gave up on; the frame was sent again
        self._consecutive_write_timeouts = 0
        self.open_failures = 0
        self.rx_bytes = 0
        self.tx_frames = 0
        self.echoes_sent = 0
        self.stale_echoes = 0
        self.requests = 0
        self.retries = 0
        self.unanswered = 0
        self.replies = 0
        self.late_replies = 0
        self.own_echoes = 0
        self.foreign_frames = 0
        self.inbox_overflow = 0

    # -- life cycle

    async def __aenter__(self) -> Self:
        self._loop = asyncio.get_running_loop()
        if not self._open():
            log.warning("ff68 %s: cannot open; retrying in the background", self.url)
            self._reconnector = asyncio.create_task(self._reconnect())
        self._writer = asyncio.create_task(self._write_loop(), name=f"ff68-writer {self.url}")
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        self._closed = True
        for task in (self._writer, self._reconnector):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._close_port()
        self._fail_commands()
        while True:  # wake the consumer: frames() ends
            try:
                self._inbox.put_nowait(None)
                break
            except asyncio.QueueFull:
                self._inbox.get_nowait()

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    async def wait_connected(self, timeout: float | None = None) -> bool:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._connected.wait(), timeout)
        return self.connected

    def _open(self) -> bool:
        try:
            port = serial.serial_for_url(
                self.url,
                baudrate=self.baudrate,
                timeout=0,
                write_timeout=WRITE_TIMEOUT_S,
                exclusive=self.exclusive,
            )
        except (OSError, serial.SerialException) as exc:
            self.open_failures += 1
            log.debug("ff68 %s: cannot open: %s", self.url, exc)
            return False
        try:
            fd = port.fileno()
        except (AttributeError, serial.SerialException) as exc:
            port.close()
            raise TypeError(f"{self.url}: not a port with a file descriptor") from exc
        assert self._loop is not None
        self._port, self._fd = port, fd
        self.decoder.reset()
        self._loop.add_reader(fd, self._on_readable)
        self._connected.set()
        self._wake.set()
        log.info("ff68 %s: open", self.url)
        return True

    def _close_port(self) -> None:
        if self._idle_timer is not None:
            self._idle_timer.cancel()
            self._idle_timer = None
        if self._port is None:
            return
        assert self._loop is not None
        self._loop.remove_reader(self._fd)
        with contextlib.suppress(OSError, serial.SerialException):
            self._port.close()
        self._port, self._fd = None, -1
        self._connected.clear()

    def _lost(self, exc: BaseException) -> None:
        """The port died (adapter pulled, pty closed): close it and reopen in the background."""
        if self._port is None or self._closed:
            return
        log.warning("ff68 %s: port lost (%s); reconnecting", self.url, exc)
        self.disconnects += 1
        self._close_port()
        self._fail_commands()
        self._reconnector = asyncio.create_task(self._reconnect())

    async def _reconnect(self) -> None:
        # While the device path is gone (adapter unplugged) a stat every 0.2 s finds it again
        # as soon as it is back; a path that is there but will not open (busy, permissions,
        # still enumerating) is retried with backoff, 0.2 s doubling to 5 s.
        delay = RECONNECT_MIN_S
        while not self._closed:
            await asyncio.sleep(delay)
            if not self._present():
                delay = RECONNECT_MIN_S
                continue
            if self._open():
                self.reconnects += 1
                return
            delay = min(delay * 2, RECONNECT_MAX_S)

    def _present(self) -> bool:
        return "://" in self.url or os.path.exists(self.url)

    # -- receiving

    def _on_readable(self) -> None:
        try:
            data = os.read(self._fd, 4096)
        except BlockingIOError:
            return
        except OSError as exc:  # EIO when the pty or the USB adapter goes away
            self._lost(exc)
            return
        if not data:
            self._lost(EOFError("end of file"))
            return
        self._last_rx = time.monotonic()
        self.rx_bytes += len(data)
        self._dispatch(self.decoder.feed(data))
        if self.decoder.buffered and self._idle_timer is None:
            assert self._loop is not None
            self._idle_timer = self._loop.call_later(self._idle_s, self._on_idle)

    def _on_idle(self) -> None:
        self._idle_timer = None
        quiet_for = time.monotonic() - self._last_rx
        if quiet_for < self._idle_s:
            assert self._loop is not None
            self._idle_timer = self._loop.call_later(self._idle_s - quiet_for, self._on_idle)
            return
        self._dispatch(self.decoder.line_idle())

    def _dispatch(self, frames: list[Frame]) -> None:
        for frame in frames:
            if self._is_own(frame):
                self.own_echoes += 1
            elif isinstance(frame, REPLY_TYPES):
                self._on_reply(frame)
            elif isinstance(frame, KeyEvent | InviteTimeout | Boot | CallerFrame | UnknownFrame):
                try:
                    self._inbox.put_nowait(frame)
                except asyncio.QueueFull:
                    self.inbox_overflow += 1  # unechoed: the device will send it again
            else:
                self.foreign_frames += 1  # another host's commands, broadcasts

    def _is_own(self, frame: Frame) -> bool:
        if not self._recent_tx:
            return False
        now = time.monotonic()
        while self._recent_tx and now - self._recent_tx[0][1] > OWN_ECHO_WINDOW_S:
            self._recent_tx.popleft()
        return any(raw == frame.raw for raw, _ in self._recent_tx)

    def _on_reply(self, reply: Reply) -> None:
        waiting = self._waiting.get((reply.addr, reply.CMD))
        if waiting is None or not answers(waiting[0], reply) or waiting[1].done():
            self.late_replies += 1
            return
        self.replies += 1
        waiting[1].set_result(reply)

    async def frames(self) -> AsyncIterator[Frame]:
        """Device events (KeyEvent, InviteTimeout, Boot) to journal and echo, and the callers'
        and unknown frames to count. Replies go to `request`. One consumer; ends at close."""
        while not (self._closed and self._inbox.empty()):
            frame = await self._inbox.get()
            if frame is None:
                return
            yield frame

    # -- sending

    async def send_echo(self, event: Event) -> None:
        """Acknowledge a device event: its identical frame goes out ahead of any command.
        Returns once queued; an echo the device can no longer want (older than the spec's
        retransmission window, e.g. queued while the port was down) is dropped."""
        self._echoes.append(_Outgoing(echo(event), time.monotonic()))
        self._wake.set()

    async def request(
        self, command: Command, timeout: float = REPLY_TIMEOUT_S, retries: int = REQUEST_RETRIES
    ) -> Reply | None:
        """Send a command and wait for its reply, `timeout` from the end of each transmission,
        asking again up to `retries` times (spec: at most 3). None when the device stayed silent;
        it then counts as offline until it answers a STATUS_POLL. ValueError for arguments the
        spec does not allow."""
        data = encode(command)
        key = (command.addr, REPLY_TO[type(command)].CMD)
        lock = self._locks.setdefault(command.addr, asyncio.Lock())
        async with lock:  # one exchange at a time per device
            self.requests += 1
            for attempt in range(retries + 1):
                if attempt:
                    self.retries += 1
                reply = await self._exchange(command, data, key, timeout)
                if reply is not None:
                    if isinstance(command, StatusPoll):
                        self.offline.discard(command.addr)
                    return reply
            self.unanswered += 1
            self.offline.add(command.addr)
            return None

    async def _exchange(
        self, command: Command, data: bytes, key: tuple[int, int], timeout: float
    ) -> Reply | None:
        assert self._loop is not None
        answer: asyncio.Future[Reply] = self._loop.create_future()
        self._waiting[key] = (command, answer)
        try:
            sent: asyncio.Future[float | None] = self._loop.create_future()
            if self.connected:
                self._commands.append(_Outgoing(data, time.monotonic(), sent))
                self._wake.set()
                tx_end = await sent
            else:
                tx_end = None
            if tx_end is None:  # the port is down: this attempt cannot be answered
                await asyncio.sleep(timeout)
                return None
            with contextlib.suppress(TimeoutError):
                return await asyncio.wait_for(answer, tx_end - time.monotonic() + timeout)
            return None
        finally:
            del self._waiting[key]

    def _fail_commands(self) -> None:
        while self._commands:
            item = self._commands.popleft()
            if item.sent is not None and not item.sent.done():
                item.sent.set_result(None)

    def _requeue(self, item: _Outgoing) -> None:
        """Put a frame that did not go out back at the head of its queue."""
        (self._echoes if item.sent is None else self._commands).appendleft(item)
        self._wake.set()

    def _next(self) -> _Outgoing | None:
        now = time.monotonic()
        while self._echoes:
            item = self._echoes.popleft()
            if now - item.queued <= RETRANSMISSION_WINDOW_S:
                return item
            self.stale_echoes += 1
        while self._commands:
            item = self._commands.popleft()
            if item.sent is None or not item.sent.done():  # done: its request was cancelled
                return item
        return None

    async def _write_loop(self) -> None:
        while True:
            await self._wake.wait()
            await self._connected.wait()
            await self._bus_quiet()
            if not self.connected:
                continue
            item = self._next()
            if item is None:
                self._wake.clear()
                continue
            self._transmit(item)

    async def _bus_quiet(self) -> None:
        """Half duplex: wait until no frame is arriving and the gap after the last byte on the
        line, theirs or ours, has passed."""
        while self.connected:
            now = time.monotonic()
            ready = max(self._last_rx, self._tx_end) + BUS_GAP_S
            if self.decoder.buffered:  # part of a frame is in: the rest is on its way
                ready = max(ready, self._last_rx + self._idle_s)
            if now >= ready and not self._bytes_waiting():
                return
            await asyncio.sleep(max(ready - now, BUS_GAP_S / 5))

    def _bytes_waiting(self) -> bool:
        try:
            return self._port is not None and self._port.in_waiting > 0
        except (OSError, serial.SerialException):
            return False  # the reader will find out and reconnect

    def _transmit(self, item: _Outgoing) -> None:
        assert self._port is not None
        try:
            self._port.write(item.data)
        except serial.SerialTimeoutException as exc:
            # pyserial measures its write timeout from the start of write(): on a CPU-starved
            # box it fires on a healthy port (docs/field-notes.md#refused-values). The frame
            # goes again whole (a cut one fails its checksum); only a port that keeps timing
            # out is treated as lost.
            self.write_timeouts += 1
            self._consecutive_write_timeouts += 1
            if self._consecutive_write_timeouts < WRITE_TIMEOUTS_BEFORE_LOST:
                self._requeue(item)
                return
            self._consecutive_write_timeouts = 0
            if item.sent is None:
                self._echoes.appendleft(item)  # send it after reopening
            else:
                item.sent.set_result(None)
            self._lost(exc)
            return
        except (OSError, serial.SerialException) as exc:
            if item.sent is None:
                self._echoes.appendleft(item)  # the port is going away: send it after reopening
            else:
                item.sent.set_result(None)
            self._lost(exc)
            return
        self._consecutive_write_timeouts = 0
        now = time.monotonic()
        self._tx_end = now + len(item.data) * self._char_s  # the kernel sends it from here
        self._recent_tx.append((item.data.lstrip(b"\xff"), self._tx_end))
        self.tx_frames += 1
        if item.sent is None:
            self.echoes_sent += 1
            self._echo_delays.append(now - item.queued)
        elif not item.sent.done():
            item.sent.set_result(self._tx_end)

    # -- health

    def echo_queue_ms(self, quantile: float) -> float | None:
        """How long recent echoes waited between `send_echo` and the line (last 1,000)."""
        if not self._echo_delays:
            return None
        delays = sorted(self._echo_delays)
        return round(delays[min(len(delays) - 1, int(quantile * len(delays)))] * 1000, 2)

    def stats(self) -> dict[str, int | float | bool | None]:
        return {
            "connected": self.connected,
            "reconnects": self.reconnects,
            "disconnects": self.disconnects,
            "write_timeouts": self.write_timeouts,
            "open_failures": self.open_failures,
            "rx_bytes": self.rx_bytes,
            "tx_frames": self.tx_frames,
            "echoes_sent": self.echoes_sent,
            "stale_echoes": self.stale_echoes,
            "own_echoes": self.own_echoes,
            "requests": self.requests,
            "retries": self.retries,
            "unanswered": self.unanswered,
            "replies": self.replies,
            "late_replies": self.late_replies,
            "foreign_frames": self.foreign_frames,
            "inbox_overflow": self.inbox_overflow,
            "offline": len(self.offline),
            **self.decoder.counters(),
            "rejected_kept": len(self.decoder.rejected),
            "echo_queue_p50_ms": self.echo_queue_ms(0.50),
            "echo_queue_p99_ms": self.echo_queue_ms(0.99),
            "echo_queue_max_ms": self.echo_queue_ms(1.0),
        }


async def probe(
    port: str,
    addresses: Iterable[int],
    timeout: float = REPLY_TIMEOUT_S,
    *,
    baudrate: int = 9600,
    retries: int = 1,
) -> list[int]:
    """The evaluator addresses on `port` that answer a STATUS_POLL (for `ports --probe`).
    Raises ConnectionError when the port cannot be opened."""
    async with EvaluatorBus(port, baudrate) as bus:
        if not await bus.wait_connected(2.0):
            raise ConnectionError(f"cannot open {port}")
        found = []
        for addr in addresses:
            if await bus.request(StatusPoll(addr), timeout=timeout, retries=retries) is not None:
                found.append(addr)
        return found
