# Long module: one device family's whole behaviour as the spec describes it (events, retransmission,
# INVITE/CANCEL, STATUS, faults); splitting would scatter it.
"""A whole FF 68 evaluator bus on a pseudo-terminal: the device side, for tests and the demo.

`EvaluatorBusSimulator` opens a pty pair, puts it in raw mode and points a stable symlink (say
`var/ttyEVAL0`) at the slave end; the driver opens that path as if it were a USB RS-485 adapter.
On the master end it plays every `SimEvaluator` on the segment, following the spec
(`docs/devices/evaluator-bus-ff68.md`) including the ugly parts: retransmission of unechoed
events on their own schedules, INVITE/CANCEL semantics and STATUS codes, silence towards
broadcasts and unknown commands, and optionally corrupted transmissions, echoes the device
does not hear, window callers and line noise sharing the wire.

It keeps the ground truth the tests compare against: every event with its transmissions and
whether (and when) it was echoed (`events`, `echoed`, `dropped`), the invitations each device
accepted (`invitations`), and every frame the host put on the line (`heard`).

Running it
----------
The simulator lives on an asyncio loop; all its methods must be called on that loop's thread.
* In async code (pytest-asyncio tests, an asyncio demo): ``async with EvaluatorBusSimulator(path)
  as sim: sim.add(0x81); ...`` on the same loop as the driver.
* From synchronous code or another loop: ``with ThreadedSimulator(sim) as t: t.call(lambda s:
  s.press(0x81, 1))`` runs it on its own loop in a daemon thread.
* As a process of its own (demo, trying the gateway by hand):
  ``python -m firmware_bridges.ff68.simulator var/ttyEVAL0 --rate 0.5``.

Timing model: frames are written to the pty at once, but the devices reckon the end of their
transmission as if the bytes took their time on a wire at `baudrate` (10 bits a byte, 8N1), and
schedule retransmissions from there.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import random
import threading
import time
import tty
from collections.abc import Callable, Iterable
from concurrent.futures import Future as ThreadFuture
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Self, TypeVar

from firmware_bridges.ff68.codec import (
    CMD_BOOT,
    CMD_INVITE_TIMEOUT,
    CMD_KEY,
    EVALUATOR_ADDRS,
    EVENT_TYPES,
    FLAG_DISPLAY_FAILED,
    FLAG_KEYS_DISABLED,
    FLAG_STUCK_KEY,
    MAX_ATTEMPTS,
    RESET_POWER_ON,
    RETRY_JITTER_S,
    RETRY_MIN_S,
    STATUS_BAD_ARGUMENT,
    STATUS_BUSY,
    STATUS_OK,
    CallerFrame,
    Cancel,
    CancelReply,
    Decoder,
    Frame,
    Invite,
    InviteReply,
    Reply,
    ShowStaff,
    ShowStaffReply,
    StatusPoll,
    StatusReply,
    build_frame,
    encode,
    problem,
)

log = logging.getLogger(__name__)

T = TypeVar("T")

DROP_NO_ECHO = "no echo after 5 attempts"
DROP_REBOOT = "device rebooted"


@dataclass(eq=False)
class SimEvent:
    """One device event and what became of it."""

    addr: int
    cmd: int  # CMD_KEY, CMD_INVITE_TIMEOUT or CMD_BOOT
    data: bytes  # DATA, starting with SEQ
    created: float
    sent_at: list[float] = field(default_factory=list)  # start of each transmission
    last_end: float = 0.0  # end of the latest transmission on the modelled wire
    damaged: int = 0  # transmissions corrupted on the wire or sent into an unplugged line
    ignored_echoes: int = 0  # echoes the device chose not to hear (`ignore_echoes`)
    echoes_lost: int = 0  # echoes lost on the wire (`host_loss_rate`)
    echoed_at: float | None = None
    # echo arrival − start of the transmission it answered. On a pty a frame arrives whole the
    # moment it is written, so this is the host's reaction time; on a wire add both frames'
    # durations (12.5 ms each for a KEY at 9600 baud).
    echo_latency: float | None = None
    dropped: str | None = None
    _timer: asyncio.TimerHandle | None = field(default=None, repr=False)

    @property
    def seq(self) -> int:
        return self.data[0]

    @property
    def key(self) -> int | None:
        return self.data[1] if self.cmd == CMD_KEY else None

    @property
    def session(self) -> int | None:
        if self.cmd == CMD_KEY:
            return self.data[2]
        return self.data[1] if self.cmd == CMD_INVITE_TIMEOUT else None

    @property
    def first_sent(self) -> float | None:
        return self.sent_at[0] if self.sent_at else None

    @property
    def attempts(self) -> int:
        return len(self.sent_at)

    @property
    def frame(self) -> bytes:
        return build_frame(self.addr, self.cmd, self.data)


@dataclass(eq=False)
class SimInvitation:
    """An invitation a device opened (INVITE answered STATUS 0 for a new session)."""

    addr: int
    session: int
    timeout_s: int
    staff_no: str
    name: str
    opened_at: float
    closed_by: str | None = None  # "key", "cancel", "timeout", "reboot"
    _timer: asyncio.TimerHandle | None = field(default=None, repr=False)


class SimEvaluator:
    """One six-key evaluator (评价器). Created by `EvaluatorBusSimulator.add`.

    `ignore_echoes=k` makes it deaf to its first k matching echoes (forced retransmissions);
    `silent=True` makes it answer no command (a dead or disconnected device)."""

    def __init__(
        self,
        bus: EvaluatorBusSimulator,
        addr: int,
        *,
        fw: tuple[int, int] = (1, 4),
        flags: int = 0,
        ignore_echoes: int = 0,
        silent: bool = False,
        reply_delay: tuple[float, float] = (0.002, 0.010),
    ) -> None:
        self._bus = bus
        self.addr = addr
        self.fw_major, self.fw_minor = fw
        self.flags = flags
        self.ignore_echoes = ignore_echoes
        self.silent = silent
        self.reply_delay = reply_delay
        self.seq = 0
        self.key_count = 0
        self.boot_time = time.monotonic()
        self.invitation: SimInvitation | None = None
        self.display: tuple[str, str] | None = None
        self.pending: dict[tuple[int, bytes], SimEvent] = {}

    # -- what a person or the firmware does

    def boot(self, reset_cause: int = RESET_POWER_ON) -> SimEvent:
        for event in list(self.pending.values()):
            self._drop(event, DROP_REBOOT)
        self._close_invitation("reboot")
        self.seq = 0
        self.key_count = 0
        self.boot_time = time.monotonic()
        return self._emit(CMD_BOOT, bytes((0, self.fw_major, self.fw_minor, reset_cause)))

    def press(self, key: int, session: int | None = None) -> SimEvent | None:
        if self.flags & FLAG_KEYS_DISABLED:
            return None  # spec: while the keys are disabled, presses send nothing
        if session is None:
            session = self.invitation.session if self.invitation else 0
        self._close_invitation("key")  # the first KEY closes it, even an invalid value
        self.key_count += 1
        return self._emit(CMD_KEY, bytes((self._next_seq(), key, session)))

    # -- what the host does to it

    def on_echo(self, cmd: int, data: bytes) -> None:
        event = self.pending.get((cmd, data))
        if event is None:
            self._bus.unmatched_echoes += 1  # a second echo, or one after the device gave up
            return
        if self.ignore_echoes > 0:
            self.ignore_echoes -= 1
            event.ignored_echoes += 1
            return
        now = time.monotonic()
        self._stop(event)
        event.echoed_at = now
        event.echo_latency = now - event.sent_at[-1]
        self._bus.record(self._bus.echoed, event)

    def on_command(self, frame: Frame) -> Reply | None:
        """Act on a command; the reply to send, or None (unknown commands get none)."""
        if isinstance(frame, Invite):
            return InviteReply(self.addr, frame.session, self._invite(frame))
        if isinstance(frame, Cancel):
            return CancelReply(self.addr, frame.session, self._cancel(frame))
        if isinstance(frame, ShowStaff):
            if problem(frame):
                return ShowStaffReply(self.addr, STATUS_BAD_ARGUMENT)
            self.display = (frame.staff_no, frame.name)
            return ShowStaffReply(self.addr, STATUS_OK)
        if isinstance(frame, StatusPoll):
            uptime = int(time.monotonic() - self.boot_time)
            return StatusReply(
                self.addr, self.fw_major, self.fw_minor, uptime, self.key_count, self.flags
            )
        return None

    def _invite(self, frame: Invite) -> int:
        if problem(frame):
            return STATUS_BAD_ARGUMENT
        if self.invitation is not None:
            # A repeat of the open session is answered 0 again without restarting its timer,
            # so a host may retry an INVITE whose reply it missed.
            return STATUS_OK if self.invitation.session == frame.session else STATUS_BUSY
        invitation = SimInvitation(
            self.addr, frame.session, frame.timeout_s, frame.staff_no, frame.name, time.monotonic()
        )
        invitation._timer = self._bus.loop.call_later(frame.timeout_s, self._expire, invitation)
        self.invitation = invitation
        self.display = (frame.staff_no, frame.name)
        self._bus.record(self._bus.invitations.setdefault(self.addr, []), invitation)
        return STATUS_OK

    def _cancel(self, frame: Cancel) -> int:
        if self.invitation is None or self.invitation.session != frame.session:
            return STATUS_BAD_ARGUMENT  # spec: a CANCEL for a session that is not open
        self._close_invitation("cancel")
        return STATUS_OK

    def _expire(self, invitation: SimInvitation) -> None:
        if self.invitation is invitation:
            self._close_invitation("timeout")
            self._emit(CMD_INVITE_TIMEOUT, bytes((self._next_seq(), invitation.session)))

    def _close_invitation(self, why: str) -> None:
        invitation, self.invitation = self.invitation, None
        if invitation is not None:
            invitation.closed_by = why
            if invitation._timer is not None:
                invitation._timer.cancel()

    # -- events and their retransmission

    def _next_seq(self) -> int:
        self.seq = (self.seq + 1) & 0xFF
        return self.seq

    def _emit(self, cmd: int, data: bytes) -> SimEvent:
        event = SimEvent(self.addr, cmd, data, time.monotonic())
        self.pending[(cmd, data)] = event
        self._bus.record(self._bus.events, event)
        self._send(event)
        return event

    def _send(self, event: SimEvent) -> None:
        event.sent_at.append(time.monotonic())
        event.last_end, intact = self._bus.send(event.frame)
        event.damaged += not intact
        # Spec: again 300 ms + random 0–200 ms after the end of its last transmission. After the
        # 5th attempt the same wait runs out before the event is given up.
        wait = (
            event.last_end
            - time.monotonic()
            + RETRY_MIN_S
            + self._bus.rng.random() * RETRY_JITTER_S
        )
        event._timer = self._bus.loop.call_later(wait, self._retry, event)

    def _retry(self, event: SimEvent) -> None:
        if event.attempts >= MAX_ATTEMPTS:
            self._drop(event, DROP_NO_ECHO)
        else:
            self._send(event)

    def _stop(self, event: SimEvent) -> None:
        del self.pending[(event.cmd, event.data)]
        if event._timer is not None:
            event._timer.cancel()

    def _drop(self, event: SimEvent, why: str) -> None:
        self._stop(event)
        event.dropped = why
        self._bus.record(self._bus.dropped, event)


class EvaluatorBusSimulator:
    """Several evaluators, window callers and noise on one pty "bus" (see the module doc).

    The ground truth lists grow with every event; a long-running demo passes `history=N` to
    keep about the last N entries of each.

    `corrupt_rate`: the fraction of device transmissions damaged on the wire (the collision
    model: one byte flipped or the frame cut short, so the host sees an invalid frame and the
    device, hearing no echo, sends it again). `host_loss_rate`: the fraction of host frames the
    devices do not hear. `local_echo`: the line reflects the host's own bytes back to it, as
    RS-485 adapters without echo suppression do."""

    def __init__(
        self,
        link: str | os.PathLike[str],
        *,
        seed: int | None = 0,
        baudrate: int = 9600,
        corrupt_rate: float = 0.0,
        host_loss_rate: float = 0.0,
        local_echo: bool = False,
        history: int | None = None,
    ) -> None:
        self.link = Path(link)
        self.history = history
        self.rng = random.Random(seed)
        self.char_s = 10 / baudrate
        self.corrupt_rate = corrupt_rate
        self.host_loss_rate = host_loss_rate
        self.local_echo = local_echo
        self.devices: dict[int, SimEvaluator] = {}
        self.decoder = Decoder()
        # ground truth
        self.events: list[SimEvent] = []
        self.echoed: list[SimEvent] = []
        self.dropped: list[SimEvent] = []
        self.invitations: dict[int, list[SimInvitation]] = {}
        self.heard: list[tuple[float, Frame]] = []  # every frame the host sent, as decoded
        self.replies_sent = 0
        self.unmatched_echoes = 0
        self.corrupted = 0
        self.host_frames_lost = 0
        self.lost_unplugged = 0  # transmissions while the line was down
        self.overruns = 0  # the pty was full: nobody is reading the slave end
        self._master: int | None = None
        self._slave: int | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._started = False

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            raise RuntimeError("the simulator is not started")
        return self._loop

    @property
    def plugged(self) -> bool:
        return self._master is not None

    @property
    def pty_name(self) -> str | None:
        return os.ttyname(self._slave) if self._slave is not None else None

    # -- life cycle

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._open_pty()
        self._started = True
        for device in self.devices.values():
            device.boot()

    async def stop(self) -> None:
        for device in self.devices.values():
            for event in list(device.pending.values()):
                device._stop(event)
            device._close_invitation("stop")
        self.unplug()
        self._started = False

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    def unplug(self) -> None:
        """Pull the adapter: the pty closes (the driver's reads fail) and the path disappears."""
        if self._master is None:
            return
        self.loop.remove_reader(self._master)
        for fd in (self._master, self._slave):
            if fd is not None:
                os.close(fd)
        self._master = self._slave = None
        with contextlib.suppress(FileNotFoundError):
            self.link.unlink()
        self.decoder.reset()

    def replug(self) -> None:
        """Plug it back: a new pty, the same path."""
        if self._master is None:
            self._open_pty()

    def _open_pty(self) -> None:
        master, slave = os.openpty()
        # Raw before anyone writes: no echo, no line discipline, no CR/LF mangling.
        tty.setraw(slave)
        os.set_blocking(master, False)
        # The simulator keeps its own slave fd open, so the master never sees a hang-up while
        # the driver closes and reopens the port.
        self._master, self._slave = master, slave
        tmp = self.link.with_name(f".{self.link.name}.{os.getpid()}.tmp")
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        tmp.symlink_to(os.ttyname(slave))
        tmp.replace(self.link)  # atomic: the path never points nowhere while plugged
        self.loop.add_reader(master, self._on_readable)

    # -- scripting

    def add(
        self,
        addr: int,
        *,
        fw: tuple[int, int] = (1, 4),
        flags: int = 0,
        ignore_echoes: int = 0,
        silent: bool = False,
        reply_delay: tuple[float, float] = (0.002, 0.010),
    ) -> SimEvaluator:
        """Put an evaluator on the bus (options: see SimEvaluator). It boots at once if the
        simulator is running, else when it starts."""
        if addr not in EVALUATOR_ADDRS:
            raise ValueError(f"0x{addr:02X} is not an evaluator address (0x81–0xFE)")
        if addr in self.devices:
            raise ValueError(f"0x{addr:02X} is already on the bus")
        device = SimEvaluator(
            self,
            addr,
            fw=fw,
            flags=flags,
            ignore_echoes=ignore_echoes,
            silent=silent,
            reply_delay=reply_delay,
        )
        self.devices[addr] = device
        if self._started:
            device.boot()
        return device

    def press(self, addr: int, key: int, session: int | None = None) -> SimEvent | None:
        """A citizen presses `key` (any byte: 1–6 are keys, the rest hardware faults). SESSION
        defaults to the open invitation's token, else 0. None when the keys are disabled."""
        return self.devices[addr].press(key, session)

    def set_flags(
        self,
        addr: int,
        *,
        stuck_key: bool | None = None,
        display_failed: bool | None = None,
        keys_disabled: bool | None = None,
    ) -> None:
        device = self.devices[addr]
        for bit, value in (
            (FLAG_STUCK_KEY, stuck_key),
            (FLAG_DISPLAY_FAILED, display_failed),
            (FLAG_KEYS_DISABLED, keys_disabled),
        ):
            if value is not None:
                device.flags = device.flags | bit if value else device.flags & ~bit

    def reboot(self, addr: int, reset_cause: int = 1) -> SimEvent:
        """Restart a device (default cause: watchdog). Its unechoed events are lost (`dropped`
        with reason DROP_REBOOT), its invitation closes, SEQ restarts with BOOT at 0."""
        return self.devices[addr].boot(reset_cause)

    def inject_caller_frame(self, addr: int, cmd: int, data: bytes = b"") -> None:
        """A window caller (呼叫器, ADDR 0x01–0x7F) talks on the same wire."""
        self.transmit(encode(CallerFrame(addr, cmd, data)), corruptible=False)

    def inject_noise(self, n_bytes: int) -> None:
        self.transmit(self.rng.randbytes(n_bytes), corruptible=False)

    def record(self, history: list[T], item: T) -> None:
        history.append(item)
        if self.history is not None and len(history) > 2 * self.history:
            del history[: -self.history]

    def unanswered_echoes(self) -> list[SimEvent]:
        """Events still waiting for their echo."""
        return [e for d in self.devices.values() for e in d.pending.values()]

    def frames_to(self, addresses: Iterable[int]) -> list[Frame]:
        wanted = set(addresses)
        return [f for _, f in self.heard if f.addr in wanted]

    # -- the wire

    def transmit(self, frame: bytes, *, corruptible: bool = True) -> float:
        """Put bytes on the line; returns when they would have left a real wire."""
        return self.send(frame, corruptible=corruptible)[0]

    def send(self, frame: bytes, *, corruptible: bool = True) -> tuple[float, bool]:
        """`transmit`, also telling whether the frame went out intact."""
        now = time.monotonic()
        end = now + len(frame) * self.char_s
        if corruptible and self.corrupt_rate and self.rng.random() < self.corrupt_rate:
            self.corrupted += 1
            self._write(self._corrupt(frame))
            return end, False
        return end, self._write(frame)

    def _corrupt(self, frame: bytes) -> bytes:
        # Skip the preamble byte: damage there changes nothing.
        if self.rng.random() < 0.5:
            return frame[: self.rng.randrange(2, len(frame))]
        i = self.rng.randrange(1, len(frame))
        damaged = bytearray(frame)
        damaged[i] ^= self.rng.randrange(1, 256)
        return bytes(damaged)

    def _write(self, data: bytes) -> bool:
        if self._master is None:
            self.lost_unplugged += 1
            return False
        try:
            os.write(self._master, data)
        except BlockingIOError:
            self.overruns += 1
            return False
        return True

    def _on_readable(self) -> None:
        assert self._master is not None
        try:
            data = os.read(self._master, 4096)
        except BlockingIOError:
            return
        except OSError as exc:  # cannot happen while we hold a slave fd; never kill the loop
            log.warning("simulator pty read failed: %s", exc)
            return
        now = time.monotonic()
        if self.local_echo:
            self._write(data)
        for frame in self.decoder.feed(data):
            self.record(self.heard, (now, frame))
            if self.host_loss_rate and self.rng.random() < self.host_loss_rate:
                self.host_frames_lost += 1
                self._lost_on_the_wire(frame)
                continue
            self._deliver(frame)

    def _deliver(self, frame: Frame) -> None:
        """A host frame reached the devices."""
        device = self.devices.get(frame.addr)
        if device is None:
            return  # nobody there; broadcasts (0xFF) and callers' addresses land here too
        if isinstance(frame, EVENT_TYPES):
            device.on_echo(frame.CMD, frame.raw[6:-2])
            return
        if device.silent:
            return
        reply = device.on_command(frame)
        if reply is not None:
            # On a wire the command is only complete after its last byte: answer after that.
            lo, hi = device.reply_delay
            wire = (len(frame.raw) + 1) * self.char_s
            self.loop.call_later(wire + lo + self.rng.random() * (hi - lo), self._reply, reply)

    def _lost_on_the_wire(self, frame: Frame) -> None:
        device = self.devices.get(frame.addr)
        if device is not None and isinstance(frame, EVENT_TYPES):
            event = device.pending.get((frame.CMD, frame.raw[6:-2]))
            if event is not None:
                event.echoes_lost += 1

    def _reply(self, reply: Reply) -> None:
        self.replies_sent += 1
        self.transmit(encode(reply))


class ThreadedSimulator:
    """Run an EvaluatorBusSimulator on its own event loop in a daemon thread.

    ``with ThreadedSimulator(sim) as t: t.call(lambda s: s.add(0x81))`` — `call` runs a
    function on the simulator's thread and returns its result; read the ground truth through
    it too (`t.call(lambda s: list(s.echoed))`)."""

    def __init__(self, simulator: EvaluatorBusSimulator) -> None:
        self.simulator = simulator
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="ff68-sim", daemon=True)

    def call(self, fn: Callable[[EvaluatorBusSimulator], T]) -> T:
        result: ThreadFuture[T] = ThreadFuture()

        def run() -> None:
            try:
                result.set_result(fn(self.simulator))
            except BaseException as exc:
                result.set_exception(exc)

        self._loop.call_soon_threadsafe(run)
        return result.result()

    def __enter__(self) -> Self:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self.simulator.start(), self._loop).result()
        return self

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        asyncio.run_coroutine_threadsafe(self.simulator.stop(), self._loop).result()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()


# ------------------------------------------------------------------------------------- demo


def _addresses(text: str) -> list[int]:
    """ "0x81-0x90,0xA0" → [0x81, …, 0x90, 0xA0]."""
    out: list[int] = []
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        out += range(int(lo, 0), int(hi or lo, 0) + 1)
    return out


async def _demo(args: argparse.Namespace) -> None:
    rng = random.Random(args.seed)
    sim = EvaluatorBusSimulator(
        args.link, seed=args.seed, corrupt_rate=args.corrupt, history=10_000
    )
    async with sim:
        for addr in _addresses(args.addresses):
            sim.add(addr)
        print(f"FF 68 bus with {len(sim.devices)} evaluators on {args.link} -> {sim.pty_name}")
        last_report = time.monotonic()
        while True:
            if args.rate > 0:
                await asyncio.sleep(rng.expovariate(args.rate))
                sim.press(rng.choice(list(sim.devices)), rng.choice([1, 1, 1, 2, 2, 3, 4, 5, 6]))
            else:
                await asyncio.sleep(1)
            if time.monotonic() - last_report >= 10:
                last_report = time.monotonic()
                print(
                    f"events {len(sim.events)}, echoed {len(sim.echoed)}, "
                    f"given up {len(sim.dropped)}, waiting {len(sim.unanswered_echoes())}"
                )


def main(argv: list[str] | None = None) -> None:
    """`python -m firmware_bridges.ff68.simulator var/ttyEVAL0 --rate 0.5`: a bus of evaluators
    with citizens pressing at random, for the demo and for trying the gateway by hand."""
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("link", help="path of the symlink to create, e.g. var/ttyEVAL0")
    parser.add_argument("--addresses", default="0x81-0x90", help="e.g. 0x81-0x90,0xA0")
    parser.add_argument("--rate", type=float, default=0.2, help="presses a second, all devices")
    parser.add_argument("--corrupt", type=float, default=0.0, help="fraction of frames damaged")
    parser.add_argument("--seed", type=int, default=None)
    args = parser.parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_demo(args))


if __name__ == "__main__":
    main()
