"""Transport for the $QM feed: the machine's serial line (pyserial) or its TCP port.

``QueueFeed`` keeps one link to the machine alive, reconnecting with backoff, and turns its
bytes into messages with the codec. It acknowledges nothing by itself: the gateway calls
``ack(mseq)`` only after the message is committed to its journal, so the machine keeps
anything a power cut could still lose. Acknowledging is safe to repeat, and the machine
re-sends everything unacknowledged every 2 s and after every reconnect, so an ack lost with a
dropped link only costs a duplicate, which the journal ignores by mseq.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Protocol, Self
from urllib.parse import urlsplit

import serial

from firmware_bridges.qm.codec import MAX_LINE, Decoder, FeedItem, Rejected, encode_ack

__all__ = ["DEFAULT_TCP_PORT", "FeedStats", "QueueFeed", "parse_transport"]

log = logging.getLogger(__name__)

# "Transport": the machine accepts one TCP client on port 4001.
DEFAULT_TCP_PORT = 4001
READ_SIZE = 4096


def parse_transport(spec: str) -> tuple[str, int] | str:
    """``tcp://host[:port]`` → ``(host, port)``; anything else is a serial device path."""
    if not spec.startswith("tcp://"):
        if not spec:
            raise ValueError("empty $QM transport")
        return spec
    parts = urlsplit(spec)
    if not parts.hostname:
        raise ValueError(f"no host in {spec!r}")
    return parts.hostname, parts.port or DEFAULT_TCP_PORT


@dataclass(frozen=True, slots=True)
class FeedStats:
    """A snapshot of the feed's health, for the status page and device-fault reports."""

    transport: str
    connected: bool
    connects: int
    disconnects: int
    connect_failures: int
    idle_timeouts: int
    bytes_received: int
    messages: int
    unusable: int
    bad_lines: int
    garbage_bytes: int
    text_replaced: int
    impossible_times: int
    acks_sent: int
    acks_dropped: int
    last_error: str | None
    seconds_since_receive: float | None


class _Link(Protocol):
    async def read(self) -> bytes: ...
    async def write(self, data: bytes) -> None: ...
    def close(self) -> None: ...


class _SerialLink:
    """A serial port opened and configured by pyserial, read and written without threads."""

    def __init__(self, port: serial.Serial) -> None:
        self._port = port
        self._fd = port.fileno()
        os.set_blocking(self._fd, False)
        self._loop = asyncio.get_running_loop()
        self._waiters: set[asyncio.Future[None]] = set()
        self._closed = False

    async def read(self) -> bytes:
        # pyserial sets VMIN=0, so a read with nothing waiting returns b"" rather than EAGAIN:
        # wait for readiness first, then an empty read means hang-up (as pyserial reads it).
        while True:
            await self._ready(self._loop.add_reader, self._loop.remove_reader)
            self._check_open()
            try:
                data = os.read(self._fd, READ_SIZE)
            except BlockingIOError:
                continue
            if not data:
                raise ConnectionResetError("serial port hung up (device gone?)")
            return data

    async def write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            self._check_open()
            try:
                view = view[os.write(self._fd, view) :]
            except BlockingIOError:
                await self._ready(self._loop.add_writer, self._loop.remove_writer)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._loop.remove_reader(self._fd)
        self._loop.remove_writer(self._fd)
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_exception(ConnectionAbortedError("serial port closed"))
        with contextlib.suppress(OSError):
            self._port.close()

    def _check_open(self) -> None:
        if self._closed:
            raise ConnectionAbortedError("serial port closed")

    async def _ready(
        self,
        add: Callable[[int, Callable[[], None]], object],
        remove: Callable[[int], object],
    ) -> None:
        waiter: asyncio.Future[None] = self._loop.create_future()

        def wake() -> None:
            if not waiter.done():
                waiter.set_result(None)

        self._waiters.add(waiter)
        add(self._fd, wake)
        try:
            await waiter
        finally:
            self._waiters.discard(waiter)
            if not self._closed:
                remove(self._fd)


class _TcpLink:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer
        sock = writer.get_extra_info("socket")
        if sock is not None:
            # A cut cable leaves a half-open connection; keepalive (and the idle timeout)
            # notice it where the machine's heartbeat alone would just go quiet.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
            for option, value in (("TCP_KEEPIDLE", 30), ("TCP_KEEPINTVL", 10), ("TCP_KEEPCNT", 3)):
                if hasattr(socket, option):
                    sock.setsockopt(socket.IPPROTO_TCP, getattr(socket, option), value)

    async def read(self) -> bytes:
        data = await self._reader.read(READ_SIZE)
        if not data:
            raise ConnectionResetError("the machine closed the connection")
        return data

    async def write(self, data: bytes) -> None:
        self._writer.write(data)
        await self._writer.drain()

    def close(self) -> None:
        self._writer.transport.abort()


def _open_serial(path: str, baudrate: int) -> serial.Serial:
    # 8N1 ("Transport"); exclusive so that a technician's terminal cannot steal half the bytes.
    return serial.Serial(
        path,
        baudrate,
        bytesize=serial.EIGHTBITS,
        parity=serial.PARITY_NONE,
        stopbits=serial.STOPBITS_ONE,
        timeout=0,
        exclusive=True,
    )


def _describe(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}" if str(error) else type(error).__name__


class QueueFeed:
    """The machine's event feed over one transport, surviving unplugs and reconnects.

    ``transport`` is a serial device path (9600 8N1 unless ``baudrate`` says otherwise; a
    stable ``/dev/serial/by-id/…`` link survives re-enumeration) or ``tcp://host[:port]``.
    Use as ``async with QueueFeed(...) as feed: async for item in feed.messages(): …`` with a
    single consumer, and ``await feed.ack(item.mseq)`` once the item is journaled.
    """

    def __init__(
        self,
        transport: str,
        *,
        encoding: str = "utf-8",
        baudrate: int = 9600,
        backoff_initial: float = 0.2,
        backoff_max: float = 5.0,
        connect_timeout: float = 5.0,
        write_timeout: float = 5.0,
        idle_timeout: float | None = 90.0,
        max_line: int = MAX_LINE,
        queue_size: int = 2048,
    ) -> None:
        self._target = parse_transport(transport)
        self.transport = transport
        self._baudrate = baudrate
        self._backoff_initial = backoff_initial
        self._backoff_max = backoff_max
        self._connect_timeout = connect_timeout
        self._write_timeout = write_timeout
        # Three missed 30 s heartbeats: the link is dead even if the socket does not say so.
        self._idle_timeout = idle_timeout
        self._decoder = Decoder(encoding, max_line)
        # Bounded so a stalled consumer stops the reading (the machine keeps the rest).
        self._queue: asyncio.Queue[FeedItem | None] = asyncio.Queue(queue_size)
        self._link: _Link | None = None
        self._write_lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self._delay = backoff_initial
        self._connects = 0
        self._disconnects = 0
        self._connect_failures = 0
        self._idle_timeouts = 0
        self._bytes = 0
        self._acks_sent = 0
        self._acks_dropped = 0
        self._last_error: str | None = None
        self._last_receive: float | None = None

    # -- lifetime ------------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        if self._task is not None:
            raise RuntimeError("QueueFeed is already running")
        self._task = asyncio.create_task(self._supervise(), name=f"qm-feed {self.transport}")
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        # Whatever is still queued was never acknowledged, so the machine keeps it.
        while not self._queue.empty():
            self._queue.get_nowait()
        self._queue.put_nowait(None)

    # -- the consumer's side -------------------------------------------------------------------

    async def messages(self) -> AsyncIterator[FeedItem]:
        """Every message and Unusable line, duplicates included, until the feed is closed."""
        while True:
            item = await self._queue.get()
            if item is None:
                self._queue.put_nowait(None)  # the end is the end for everyone
                return
            yield item

    async def ack(self, mseq: int) -> None:
        """Write ``$ACK,<mseq>``. Without a link the ack is dropped (and counted): the machine
        sends the message again after the reconnect, and it is acknowledged then."""
        line = encode_ack(mseq)
        link = self._link
        if link is None:
            self._acks_dropped += 1
            return
        try:
            async with self._write_lock, asyncio.timeout(self._write_timeout):
                await link.write(line)
        except (OSError, TimeoutError) as error:
            self._acks_dropped += 1
            self._last_error = f"ack {mseq}: {_describe(error)}"
            return
        self._acks_sent += 1

    @property
    def connected(self) -> bool:
        return self._link is not None

    @property
    def rejected(self) -> list[Rejected]:
        """The last lines refused (bad checksum, broken framing), for inspection."""
        return list(self._decoder.rejected)

    def stats(self) -> FeedStats:
        decoder = self._decoder
        since = None if self._last_receive is None else time.monotonic() - self._last_receive
        return FeedStats(
            transport=self.transport,
            connected=self.connected,
            connects=self._connects,
            disconnects=self._disconnects,
            connect_failures=self._connect_failures,
            idle_timeouts=self._idle_timeouts,
            bytes_received=self._bytes,
            messages=decoder.messages,
            unusable=decoder.unusable,
            bad_lines=decoder.bad_lines,
            garbage_bytes=decoder.garbage_bytes,
            text_replaced=decoder.text_replaced,
            impossible_times=decoder.impossible_times,
            acks_sent=self._acks_sent,
            acks_dropped=self._acks_dropped,
            last_error=self._last_error,
            seconds_since_receive=since,
        )

    # -- the link ------------------------------------------------------------------------------

    async def _open(self) -> _Link:
        target = self._target
        if isinstance(target, tuple):
            host, port = target
            async with asyncio.timeout(self._connect_timeout):
                reader, writer = await asyncio.open_connection(host, port)
            return _TcpLink(reader, writer)
        # Opening a USB adapter can stall in its kernel driver; keep that off the event loop.
        device = await asyncio.to_thread(_open_serial, target, self._baudrate)
        try:
            return _SerialLink(device)
        except BaseException:
            device.close()
            raise

    async def _supervise(self) -> None:
        failing = False
        while True:
            try:
                link = await self._open()
            except (OSError, TimeoutError, ValueError) as error:
                self._connect_failures += 1
                self._last_error = f"connect: {_describe(error)}"
                if not failing:
                    log.warning("$QM %s: cannot connect: %s", self.transport, self._last_error)
                    failing = True
            else:
                failing = False
                await self._serve(link)
            await asyncio.sleep(self._delay)
            self._delay = min(self._delay * 2, self._backoff_max)

    async def _serve(self, link: _Link) -> None:
        self._decoder.reset()
        self._link = link
        self._connects += 1
        log.info("$QM %s: connected", self.transport)
        try:
            await self._pump(link)
        except (OSError, TimeoutError) as error:
            self._last_error = f"link: {_describe(error)}"
            log.warning("$QM %s: link lost: %s", self.transport, self._last_error)
        except Exception as error:  # a bug must not silence the feed for good: reconnect
            self._last_error = f"link: {_describe(error)}"
            log.exception("$QM %s: unexpected failure, reconnecting", self.transport)
        finally:
            self._link = None
            self._disconnects += 1
            link.close()

    async def _pump(self, link: _Link) -> None:
        while True:
            try:
                async with asyncio.timeout(self._idle_timeout):
                    data = await link.read()
            except TimeoutError:
                self._idle_timeouts += 1
                raise TimeoutError(f"nothing received for {self._idle_timeout} s") from None
            self._bytes += len(data)
            self._last_receive = time.monotonic()
            for item in self._decoder.feed(data):
                self._delay = self._backoff_initial  # the machine is talking: reset backoff
                await self._queue.put(item)
