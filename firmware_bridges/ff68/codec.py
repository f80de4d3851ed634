# Long module: the bus's whole frame table (every command and reply, decoder, encoder, checks) as
# the spec lays it out; splitting would scatter it.
"""FF 68 evaluator bus: frames, decoder and encoder. No I/O (h11 style).

Bytes in, typed frames out (`Decoder.feed`); typed frames in, bytes out (`encode`). The same code
serves the gateway's driver, the simulator that plays the devices, and the tests. The protocol
is specified in `docs/devices/evaluator-bus-ff68.md` ("the spec" below); section names in the
comments refer to it.

Frame on the wire (spec "Frame")::

    [FF]* 68 LEN LEN 68 ADDR CMD DATA… CS 16      LEN = 2 + len(DATA), 2 ≤ LEN ≤ 64
                                                  CS = (ADDR + CMD + sum(DATA)) mod 256
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import ClassVar, Final

PREAMBLE: Final = 0xFF
START: Final = 0x68
END: Final = 0x16
MIN_LEN: Final = 2
MAX_LEN: Final = 64
MAX_DATA: Final = MAX_LEN - 2
# 68 LEN LEN 68 | ADDR CMD DATA (= LEN bytes) | CS 16
HEADER_SIZE: Final = 4
MAX_FRAME: Final = HEADER_SIZE + MAX_LEN + 2

# Spec "Addresses".
HOST_ADDR: Final = 0x00
BROADCAST_ADDR: Final = 0xFF
CALLER_ADDRS: Final = range(0x01, 0x80)  # window callers (呼叫器): not ours, never answered
EVALUATOR_ADDRS: Final = range(0x81, 0xFF)  # evaluators (评价器)

# Spec "Device → host events" and "Host → device commands".
CMD_KEY: Final = 0x11
CMD_INVITE_TIMEOUT: Final = 0x12
CMD_BOOT: Final = 0x1F
CMD_INVITE: Final = 0x21
CMD_CANCEL: Final = 0x22
CMD_SHOW_STAFF: Final = 0x23
CMD_STATUS_POLL: Final = 0x30
CMD_INVITE_REPLY: Final = 0xA1
CMD_CANCEL_REPLY: Final = 0xA2
CMD_SHOW_STAFF_REPLY: Final = 0xA3
CMD_STATUS_REPLY: Final = 0xB0

STATUS_OK: Final = 0
STATUS_BUSY: Final = 1  # a different invitation is already open
STATUS_BAD_ARGUMENT: Final = 2

RESET_POWER_ON: Final = 0
RESET_WATCHDOG: Final = 1
RESET_BROWN_OUT: Final = 2

FLAG_STUCK_KEY: Final = 0x01
FLAG_DISPLAY_FAILED: Final = 0x02
FLAG_KEYS_DISABLED: Final = 0x04

STAFF_NO_LEN: Final = 6
MAX_NAME_BYTES: Final = 12

KEY_LABELS: Final[dict[int, str]] = {
    1: "非常满意",
    2: "基本满意",
    3: "服务态度不好",
    4: "办理时间太长",
    5: "业务不熟",
    6: "其他",
}

# Spec "Device → host events": a device resends an unechoed event 300 ms + 0–200 ms after the end
# of its previous transmission, 5 attempts in all. The last copy therefore arrives at most
# 4 × (500 ms + one frame) after the first: 2.05 s for a 12-byte KEY at 9600 baud, 3.2 s even for
# a 70-byte frame at 2400 baud. 4 s covers both, plus the wait after the last attempt before the
# device gives up: a repeat is never older than that, and an echo older than that is useless.
RETRY_MIN_S: Final = 0.300
RETRY_JITTER_S: Final = 0.200
MAX_ATTEMPTS: Final = 5
RETRANSMISSION_WINDOW_S: Final = 4.0


def checksum(addr: int, cmd: int, data: bytes) -> int:
    return (addr + cmd + sum(data)) & 0xFF


def build_frame(addr: int, cmd: int, data: bytes = b"", *, preamble: int = 1) -> bytes:
    """Frame bytes for any ADDR/CMD/DATA, unchecked beyond the framing limits.

    `encode` is the checked way; this one is for the simulator and tests that must put
    arguments on the wire that a well-behaved host never sends (the STATUS 2 cases)."""
    if not (0 <= addr <= 0xFF and 0 <= cmd <= 0xFF):
        raise ValueError(f"ADDR and CMD are bytes: {addr!r}, {cmd!r}")
    if len(data) > MAX_DATA:
        raise ValueError(f"DATA is {len(data)} bytes, at most {MAX_DATA} fit (LEN ≤ {MAX_LEN})")
    n = len(data) + 2
    body = bytes((START, n, n, START, addr, cmd)) + data
    return bytes([PREAMBLE]) * preamble + body + bytes((checksum(addr, cmd, data), END))


# --------------------------------------------------------------------------------------- frames


@dataclass(frozen=True, slots=True)
class _Frame:
    # The exact frame bytes from the first 0x68 to 0x16, no preamble; b"" on a frame we built
    # rather than decoded. Not part of equality: two decodings of the same content are equal.
    raw: bytes = field(default=b"", kw_only=True, compare=False, repr=False)


# Device → host events. Each must be echoed byte for byte (spec "Device → host events").


@dataclass(frozen=True, slots=True)
class KeyEvent(_Frame):
    """KEY (0x11): a citizen pressed one of the six keys."""

    CMD: ClassVar[int] = CMD_KEY
    addr: int
    seq: int
    key: int  # the raw value: 1–6, anything else is a hardware fault
    session: int  # 0 = no invitation open

    @property
    def valid_key(self) -> bool:
        """False for a hardware fault: journal it as a fault, never as an evaluation (but echo
        it: the device closed its invitation on it)."""
        return self.key in KEY_LABELS

    @property
    def label(self) -> str | None:
        return KEY_LABELS.get(self.key)


@dataclass(frozen=True, slots=True)
class InviteTimeout(_Frame):
    """INVITE_TIMEOUT (0x12): the invitation closed unanswered after TIMEOUT_S."""

    CMD: ClassVar[int] = CMD_INVITE_TIMEOUT
    addr: int
    seq: int
    session: int


@dataclass(frozen=True, slots=True)
class Boot(_Frame):
    """BOOT (0x1F): the device (re)started; SEQ is 0 and restarts from 1."""

    CMD: ClassVar[int] = CMD_BOOT
    addr: int
    seq: int
    fw_major: int
    fw_minor: int
    reset_cause: int  # RESET_POWER_ON, RESET_WATCHDOG, RESET_BROWN_OUT


# Device → host replies.


@dataclass(frozen=True, slots=True)
class InviteReply(_Frame):
    CMD: ClassVar[int] = CMD_INVITE_REPLY
    addr: int
    session: int
    status: int


@dataclass(frozen=True, slots=True)
class CancelReply(_Frame):
    CMD: ClassVar[int] = CMD_CANCEL_REPLY
    addr: int
    session: int
    status: int


@dataclass(frozen=True, slots=True)
class ShowStaffReply(_Frame):
    CMD: ClassVar[int] = CMD_SHOW_STAFF_REPLY
    addr: int
    status: int


@dataclass(frozen=True, slots=True)
class StatusReply(_Frame):
    CMD: ClassVar[int] = CMD_STATUS_REPLY
    addr: int
    fw_major: int
    fw_minor: int
    uptime_s: int
    key_count: int
    flags: int

    @property
    def stuck_key(self) -> bool:
        return bool(self.flags & FLAG_STUCK_KEY)

    @property
    def display_failed(self) -> bool:
        return bool(self.flags & FLAG_DISPLAY_FAILED)

    @property
    def keys_disabled(self) -> bool:
        return bool(self.flags & FLAG_KEYS_DISABLED)


# Host → device commands. Decoded too: the simulator reads them with this same codec.
# Strings decoded from the wire keep undecodable bytes as surrogates (surrogateescape), so a
# frame with a bad staff number or name survives decoding and `problem()` can name the fault.


@dataclass(frozen=True, slots=True)
class Invite(_Frame):
    """INVITE (0x21): light the keys, play "请您对我的服务做出评价", show staff number and name."""

    CMD: ClassVar[int] = CMD_INVITE
    addr: int
    session: int  # 1–255, the token the KEY/INVITE_TIMEOUT events will carry
    timeout_s: int  # 1–255
    staff_no: str  # 6 ASCII digits
    name: str  # 0–12 bytes of UTF-8


@dataclass(frozen=True, slots=True)
class Cancel(_Frame):
    CMD: ClassVar[int] = CMD_CANCEL
    addr: int
    session: int


@dataclass(frozen=True, slots=True)
class ShowStaff(_Frame):
    CMD: ClassVar[int] = CMD_SHOW_STAFF
    addr: int
    staff_no: str
    name: str


@dataclass(frozen=True, slots=True)
class StatusPoll(_Frame):
    CMD: ClassVar[int] = CMD_STATUS_POLL
    addr: int


# Other traffic on the bus.


@dataclass(frozen=True, slots=True)
class CallerFrame(_Frame):
    """A window caller's frame (ADDR 0x01–0x7F): not ours. Count it, never answer it."""

    addr: int
    cmd: int
    data: bytes


@dataclass(frozen=True, slots=True)
class HostFrame(_Frame):
    """ADDR 0x00 (the host) or 0xFF (broadcast): another host, or a broadcast. Never answered."""

    addr: int
    cmd: int
    data: bytes


@dataclass(frozen=True, slots=True)
class UnknownFrame(_Frame):
    """Valid framing, but an unknown command, a DATA length the command does not have, or an
    address outside every range (0x80)."""

    addr: int
    cmd: int
    data: bytes


Event = KeyEvent | InviteTimeout | Boot
Reply = InviteReply | CancelReply | ShowStaffReply | StatusReply
Command = Invite | Cancel | ShowStaff | StatusPoll
Frame = Event | Reply | Command | CallerFrame | HostFrame | UnknownFrame

EVENT_TYPES: Final = (KeyEvent, InviteTimeout, Boot)
REPLY_TYPES: Final = (InviteReply, CancelReply, ShowStaffReply, StatusReply)
COMMAND_TYPES: Final = (Invite, Cancel, ShowStaff, StatusPoll)

REPLY_TO: Final[dict[type[Command], type[Reply]]] = {
    Invite: InviteReply,
    Cancel: CancelReply,
    ShowStaff: ShowStaffReply,
    StatusPoll: StatusReply,
}


def answers(command: Command, reply: Reply) -> bool:
    """Is `reply` the device's answer to `command`? Same address, the reply command, and for
    INVITE/CANCEL the same SESSION (a late answer to an earlier invitation is not this one's)."""
    if reply.addr != command.addr or type(reply) is not REPLY_TO[type(command)]:
        return False
    if isinstance(command, Invite | Cancel) and isinstance(reply, InviteReply | CancelReply):
        return reply.session == command.session
    return True


# ------------------------------------------------------------------------------------- decoding

_Parser = Callable[[int, bytes, bytes], Frame | None]


def _text(data: bytes, encoding: str) -> str:
    return data.decode(encoding, "surrogateescape")


def _u32(data: bytes) -> int:
    return int.from_bytes(data, "big")


def _key(a: int, d: bytes, raw: bytes) -> Frame | None:
    return KeyEvent(a, d[0], d[1], d[2], raw=raw) if len(d) == 3 else None


def _invite_timeout(a: int, d: bytes, raw: bytes) -> Frame | None:
    return InviteTimeout(a, d[0], d[1], raw=raw) if len(d) == 2 else None


def _boot(a: int, d: bytes, raw: bytes) -> Frame | None:
    return Boot(a, d[0], d[1], d[2], d[3], raw=raw) if len(d) == 4 else None


def _invite(a: int, d: bytes, raw: bytes) -> Frame | None:
    if len(d) < 2 + STAFF_NO_LEN:
        return None
    staff, name = _text(d[2:8], "ascii"), _text(d[8:], "utf-8")
    return Invite(a, d[0], d[1], staff, name, raw=raw)


def _cancel(a: int, d: bytes, raw: bytes) -> Frame | None:
    return Cancel(a, d[0], raw=raw) if len(d) == 1 else None


def _show_staff(a: int, d: bytes, raw: bytes) -> Frame | None:
    if len(d) < STAFF_NO_LEN:
        return None
    return ShowStaff(a, _text(d[:6], "ascii"), _text(d[6:], "utf-8"), raw=raw)


def _status_poll(a: int, d: bytes, raw: bytes) -> Frame | None:
    return StatusPoll(a, raw=raw) if not d else None


def _invite_reply(a: int, d: bytes, raw: bytes) -> Frame | None:
    return InviteReply(a, d[0], d[1], raw=raw) if len(d) == 2 else None


def _cancel_reply(a: int, d: bytes, raw: bytes) -> Frame | None:
    return CancelReply(a, d[0], d[1], raw=raw) if len(d) == 2 else None


def _show_staff_reply(a: int, d: bytes, raw: bytes) -> Frame | None:
    return ShowStaffReply(a, d[0], raw=raw) if len(d) == 1 else None


def _status_reply(a: int, d: bytes, raw: bytes) -> Frame | None:
    if len(d) != 11:
        return None
    return StatusReply(a, d[0], d[1], _u32(d[2:6]), _u32(d[6:10]), d[10], raw=raw)


_PARSERS: Final[dict[int, _Parser]] = {
    CMD_KEY: _key,
    CMD_INVITE_TIMEOUT: _invite_timeout,
    CMD_BOOT: _boot,
    CMD_INVITE: _invite,
    CMD_CANCEL: _cancel,
    CMD_SHOW_STAFF: _show_staff,
    CMD_STATUS_POLL: _status_poll,
    CMD_INVITE_REPLY: _invite_reply,
    CMD_CANCEL_REPLY: _cancel_reply,
    CMD_SHOW_STAFF_REPLY: _show_staff_reply,
    CMD_STATUS_REPLY: _status_reply,
}


def classify(addr: int, cmd: int, data: bytes, raw: bytes = b"") -> Frame:
    """The typed frame for a well-framed ADDR/CMD/DATA. Never raises."""
    if addr in (HOST_ADDR, BROADCAST_ADDR):
        return HostFrame(addr, cmd, data, raw=raw)
    if addr in CALLER_ADDRS:
        return CallerFrame(addr, cmd, data, raw=raw)
    parser = _PARSERS.get(cmd) if addr in EVALUATOR_ADDRS else None
    frame = parser(addr, data, raw) if parser is not None else None
    return frame if frame is not None else UnknownFrame(addr, cmd, data, raw=raw)


# Reasons an invalid frame was dropped (spec "Frame": drop it, count it).
BAD_LEN = "len"  # LEN outside 2..64
LEN_MISMATCH = "len_mismatch"  # the two LEN bytes differ
BAD_CHECKSUM = "checksum"
NO_END = "no_end"  # no 0x16 where the frame must end
TRUNCATED = "truncated"  # the line went quiet before the frame was complete


class Decoder:
    """Bytes in any chunking → frames. Never raises; counts and keeps what it rejects.

    A frame starts at `68 LEN LEN 68`: a lone 0x68 in line noise is garbage, not an invalid
    frame (the spec's invalid cases all have a header: a LEN out of range, mismatched LEN bytes,
    a wrong CS, a missing 0x16). After an invalid frame the search resumes one byte after the
    0x68 that began it, so a good frame that starts inside a truncated one is still found.
    Preamble 0xFF bytes before a frame are counted apart from other garbage.
    """

    # h11 bounds its buffer by policy (`max_buffer_size`); here the protocol bounds it: at most
    # one unfinished frame (≤ MAX_FRAME = 70 bytes) is ever kept between calls. `max_buffer`
    # bounds how much of one `feed` argument is copied in at a time, so a caller handing over a
    # huge read costs at most that much extra memory. 4 KiB = the Linux tty read buffer.
    DEFAULT_MAX_BUFFER: Final = 4096
    DEFAULT_KEEP_REJECTED: Final = 32

    def __init__(
        self, max_buffer: int = DEFAULT_MAX_BUFFER, keep_rejected: int = DEFAULT_KEEP_REJECTED
    ) -> None:
        if max_buffer < MAX_FRAME:
            raise ValueError(f"max_buffer must hold one whole frame ({MAX_FRAME} bytes)")
        self.max_buffer = max_buffer
        self._buf = bytearray()
        self.rejected: deque[bytes] = deque(maxlen=keep_rejected)
        self.frames = 0
        self.garbage_bytes = 0
        self.preamble_bytes = 0
        self.invalid_frames = 0
        self.invalid_by_reason: dict[str, int] = {}
        self.caller_frames = 0
        self.host_frames = 0
        self.unknown_frames = 0

    @property
    def buffered(self) -> int:
        """Bytes of an unfinished frame held back: a frame may be arriving."""
        return len(self._buf)

    def feed(self, data: bytes) -> list[Frame]:
        out: list[Frame] = []
        for start in range(0, len(data), self.max_buffer):
            self._buf += data[start : start + self.max_buffer]
            self._parse(out, final=False)
        return out

    def line_idle(self) -> list[Frame]:
        """The line went quiet: a frame still unfinished never will be. Reject it as truncated
        and decode what follows its 0x68 (a short frame may sit inside a long claimed one)."""
        out: list[Frame] = []
        self._parse(out, final=True)
        return out

    def reset(self) -> None:
        """Forget a partial frame (the port was reopened)."""
        self._skip(len(self._buf))

    def counters(self) -> dict[str, int]:
        return {
            "frames": self.frames,
            "garbage_bytes": self.garbage_bytes,
            "preamble_bytes": self.preamble_bytes,
            "invalid_frames": self.invalid_frames,
            "caller_frames": self.caller_frames,
            "host_frames": self.host_frames,
            "unknown_frames": self.unknown_frames,
            **{f"invalid_{k}": v for k, v in sorted(self.invalid_by_reason.items())},
        }

    def _skip(self, n: int) -> None:
        ff = self._buf.count(PREAMBLE, 0, n)
        self.preamble_bytes += ff
        self.garbage_bytes += n - ff
        del self._buf[:n]

    def _reject(self, reason: str, length: int) -> None:
        self.invalid_frames += 1
        self.invalid_by_reason[reason] = self.invalid_by_reason.get(reason, 0) + 1
        self.rejected.append(bytes(self._buf[:length]))
        # Resume one byte after the 0x68 that began it (spec "Frame").
        del self._buf[:1]

    def _parse(self, out: list[Frame], *, final: bool) -> None:
        buf = self._buf
        while buf:
            i = buf.find(START)
            if i < 0:
                self._skip(len(buf))
                return
            if i:
                self._skip(i)
            if len(buf) < HEADER_SIZE:
                if final:
                    self._skip(len(buf))
                return
            if buf[3] != START:
                self._skip(1)  # a stray 0x68, not a frame start
                continue
            n, n2 = buf[1], buf[2]
            if n != n2:
                self._reject(LEN_MISMATCH, HEADER_SIZE)
                continue
            if not MIN_LEN <= n <= MAX_LEN:
                self._reject(BAD_LEN, HEADER_SIZE)
                continue
            size = HEADER_SIZE + n + 2
            if len(buf) < size:
                if final:
                    self._reject(TRUNCATED, len(buf))
                    continue
                return
            addr, cmd = buf[4], buf[5]
            data = bytes(buf[6 : size - 2])
            if buf[size - 2] != checksum(addr, cmd, data):
                self._reject(BAD_CHECKSUM, size)
                continue
            if buf[size - 1] != END:
                self._reject(NO_END, size)
                continue
            frame = classify(addr, cmd, data, bytes(buf[:size]))
            del buf[:size]
            self.frames += 1
            if isinstance(frame, CallerFrame):
                self.caller_frames += 1
            elif isinstance(frame, HostFrame):
                self.host_frames += 1
            elif isinstance(frame, UnknownFrame):
                self.unknown_frames += 1
            out.append(frame)


# ------------------------------------------------------------------------------------- encoding


def _staff_problem(staff_no: str) -> str | None:
    if len(staff_no) == STAFF_NO_LEN and staff_no.isascii() and staff_no.isdigit():
        return None
    return f"staff number {staff_no!r} is not {STAFF_NO_LEN} ASCII digits"


def _name_problem(name: str) -> str | None:
    try:
        size = len(name.encode("utf-8"))
    except UnicodeEncodeError:
        return f"name {name!r} is not UTF-8"
    return f"name {name!r} is {size} bytes of UTF-8, over {MAX_NAME_BYTES}" if size > 12 else None


def _byte_problem(frame: Frame) -> str | None:
    for name in ("seq", "key", "session", "status", "fw_major", "fw_minor", "flags",
                 "reset_cause", "timeout_s", "cmd"):  # fmt: skip
        value = getattr(frame, name, 0)
        if not 0 <= value <= 0xFF:
            return f"{name} {value} is not a byte"
    for name in ("uptime_s", "key_count"):
        value = getattr(frame, name, 0)
        if not 0 <= value <= 0xFFFF_FFFF:
            return f"{name} {value} is not an unsigned 32-bit value"
    return None


def _addr_problem(frame: Frame) -> str | None:
    if isinstance(frame, HostFrame):
        ok = frame.addr in (HOST_ADDR, BROADCAST_ADDR)
    elif isinstance(frame, CallerFrame):
        ok = frame.addr in CALLER_ADDRS
    elif isinstance(frame, UnknownFrame):
        ok = 0 <= frame.addr <= 0xFF
    else:
        ok = frame.addr in EVALUATOR_ADDRS
    return None if ok else f"address 0x{frame.addr:02X} does not fit {type(frame).__name__}"


def problem(frame: Frame) -> str | None:
    """What is wrong with this frame's arguments, or None. For commands these are the spec's
    STATUS 2 cases (SESSION 0, TIMEOUT_S 0, staff number not 6 ASCII digits, name over 12 bytes
    or not UTF-8, CANCEL of session 0, which is never open); the simulator answers STATUS 2 on
    exactly these."""
    found = _addr_problem(frame) or _byte_problem(frame)
    if found:
        return found
    if isinstance(frame, CallerFrame | HostFrame | UnknownFrame) and len(frame.data) > MAX_DATA:
        return f"DATA is {len(frame.data)} bytes, at most {MAX_DATA} fit (LEN ≤ {MAX_LEN})"
    if isinstance(frame, Invite | Cancel) and frame.session == 0:
        return "SESSION 0 is not an invitation token (1–255)"
    if isinstance(frame, Invite) and frame.timeout_s == 0:
        return "TIMEOUT_S must be 1–255"
    if isinstance(frame, Invite | ShowStaff):
        return _staff_problem(frame.staff_no) or _name_problem(frame.name)
    return None


def _cmd_and_data(frame: Frame) -> tuple[int, bytes]:
    match frame:
        case KeyEvent(seq=seq, key=key, session=session):
            return CMD_KEY, bytes((seq, key, session))
        case InviteTimeout(seq=seq, session=session):
            return CMD_INVITE_TIMEOUT, bytes((seq, session))
        case Boot(seq=seq, fw_major=major, fw_minor=minor, reset_cause=cause):
            return CMD_BOOT, bytes((seq, major, minor, cause))
        case InviteReply(session=session, status=status):
            return CMD_INVITE_REPLY, bytes((session, status))
        case CancelReply(session=session, status=status):
            return CMD_CANCEL_REPLY, bytes((session, status))
        case ShowStaffReply(status=status):
            return CMD_SHOW_STAFF_REPLY, bytes((status,))
        case StatusReply():
            return CMD_STATUS_REPLY, (
                bytes((frame.fw_major, frame.fw_minor))
                + frame.uptime_s.to_bytes(4, "big")
                + frame.key_count.to_bytes(4, "big")
                + bytes((frame.flags,))
            )
        case Invite():
            return CMD_INVITE, bytes((frame.session, frame.timeout_s)) + _staff_and_name(frame)
        case Cancel(session=session):
            return CMD_CANCEL, bytes((session,))
        case ShowStaff():
            return CMD_SHOW_STAFF, _staff_and_name(frame)
        case StatusPoll():
            return CMD_STATUS_POLL, b""
        case CallerFrame(cmd=cmd, data=data) | HostFrame(cmd=cmd, data=data):
            return cmd, data
        case UnknownFrame(cmd=cmd, data=data):
            return cmd, data
    raise TypeError(f"not an FF 68 frame: {frame!r}")


def _staff_and_name(frame: Invite | ShowStaff) -> bytes:
    # surrogateescape: a decoded frame with bad bytes re-encodes to exactly those bytes.
    return frame.staff_no.encode("ascii", "surrogateescape") + frame.name.encode(
        "utf-8", "surrogateescape"
    )


def encode(frame: Frame, *, preamble: int = 1) -> bytes:
    """The frame's bytes with `preamble` 0xFF bytes in front. Raises ValueError for arguments
    the spec does not allow (see `problem`), so the gateway never sends a STATUS 2 request."""
    found = problem(frame)
    if found:
        raise ValueError(f"{type(frame).__name__}: {found}")
    cmd, data = _cmd_and_data(frame)
    return build_frame(frame.addr, cmd, data, preamble=preamble)


def echo(event: Event) -> bytes:
    """The acknowledgement of a device event: the identical frame (spec: the device matches the
    echo on ADDR, CMD and DATA). A decoded event is echoed from its own bytes, so whatever the
    device sent, even a KEY value the codec calls a fault, goes back unchanged."""
    if not isinstance(event, EVENT_TYPES):
        raise TypeError(f"only device events are echoed, not {type(event).__name__}")
    if event.raw:
        return bytes([PREAMBLE]) + event.raw
    return encode(event)


class RetransmissionFilter:
    """Tells a device's retransmission from a new event (sans-I/O: the caller passes `now`).

    A repeat is identical to the first copy (same ADDR, CMD and DATA, DATA starting with SEQ)
    and arrives within RETRANSMISSION_WINDOW_S of it; a new event differs at least in SEQ unless
    the device wrapped 256 SEQ values inside the window, which a human pressing keys cannot do.

    A BOOT restarts SEQ, but it deliberately does not reset the filter: when the BOOT's first
    copies are lost, the new boot's SEQ 1 arrives *before* its BOOT, and a reset would let that
    KEY's repeat count twice (seen in the 16-evaluator load test). The price: a device that
    reboots and sends a first event identical to one it sent in the 4 s before is taken for a
    repeat (echoed, not journaled). That needs a reboot and two presses of the same key with
    the same session within 4 s, SEQ 1 both times; the protocol cannot tell the two apart."""

    def __init__(self, window_s: float = RETRANSMISSION_WINDOW_S) -> None:
        self.window_s = window_s
        self._seen: dict[tuple[int, int, bytes], float] = {}
        self.duplicates = 0

    def is_repeat(self, event: Event, now: float) -> bool:
        """True if `event` repeats one seen within the window. Either way, echo it."""
        self._expire(now)
        cmd, data = _cmd_and_data(event)
        key = (event.addr, cmd, data)
        if key in self._seen:
            self.duplicates += 1
            return True
        self._seen[key] = now
        return False

    def forget(self, event: Event) -> None:
        """Take back a first copy the host could not keep (its journal failed, so it was not
        echoed): the device's next copy is then the event itself, not a repeat."""
        cmd, data = _cmd_and_data(event)
        self._seen.pop((event.addr, cmd, data), None)

    def _expire(self, now: float) -> None:
        # dicts keep insertion order and `now` only grows: the oldest entries come first.
        while self._seen:
            oldest = next(iter(self._seen))
            if now - self._seen[oldest] < self.window_s:
                return
            del self._seen[oldest]
