# Long module: the $QM feed's whole message table with its framer and field readers and writers;
# splitting would scatter one manual's wire format.
"""The $QM queue-number machine (排队叫号机) event feed: bytes in, typed messages out.

Sans-I/O in the h11 manner: ``Decoder.feed(bytes) -> list[message]`` on the gateway side,
``AckDecoder.feed(bytes) -> list[mseq]`` on the machine side, and ``encode``/``encode_ack``
to build lines. Nothing here touches a port. The vendor's manual is
``docs/devices/queue-machine-qm.md``; section names below refer to it.

Wire form ("Transport"): ``$<body>*<CS>\\r\\n``, CS = two hex digits, the XOR of every byte of
``<body>``. Machine lines are ``QM,<mseq>,<type>,<fields…>``; the gateway answers ``ACK,<mseq>``.
"""

from __future__ import annotations

import codecs
import re
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from functools import reduce
from operator import xor
from typing import Any, ClassVar, Literal, NamedTuple, cast

from protocols.strict import device_text

__all__ = [
    "MAX_LINE",
    "MAX_MSEQ",
    "AckDecoder",
    "Called",
    "Decoder",
    "FeedItem",
    "Heartbeat",
    "Message",
    "NoShow",
    "QMMessage",
    "Recalled",
    "Rejected",
    "ServiceFinished",
    "ServiceStarted",
    "StaffLogin",
    "StaffLogout",
    "TextEncoding",
    "TicketIssued",
    "Transferred",
    "Unusable",
    "WindowPaused",
    "WindowResumed",
    "checksum",
    "encode",
    "encode_ack",
    "encode_line",
    "format_machine_time",
    "next_mseq",
    "normalize_encoding",
]

# "Machine → gateway messages": mseq runs 1–999999 and wraps to 1.
MAX_MSEQ = 999_999
# A number outside that range is still the machine's handle for its message: it is journaled
# as unusable and acknowledged with the same number, or the machine would resend it forever.
# Up to 18 digits fit a signed 64-bit integer, the widest a store holds.
MAX_MSEQ_DIGITS = 18

# Longest line accepted, '$' to '\n' inclusive. NMEA 0183 caps a sentence at 82 characters, but
# a TK line carries a service name: a 40-character Chinese name is 120 bytes in UTF-8, so the
# longest plausible line is ~190 bytes. A valid line that we refuse is never acknowledged and
# would be re-sent every 2 s forever, so the bound is generous (1 KiB, ~1 s of a 9600-baud
# line); it only has to stop a noisy line without '\n' from growing memory.
MAX_LINE = 1024

# How many rejected lines to keep for inspection.
REJECTED_KEPT = 64

TextEncoding = Literal["utf-8", "gb2312"]


def normalize_encoding(name: str) -> TextEncoding:
    """The manual's two text encodings ("Transport"), under any spelling Python accepts."""
    try:
        canonical = codecs.lookup(name).name
    except LookupError:
        canonical = ""
    if canonical == "utf-8":
        return "utf-8"
    if canonical == "gb2312":
        return "gb2312"
    raise ValueError(f"unsupported $QM text encoding {name!r}: use 'utf-8' or 'gb2312'")


# Old units are configured as GB2312, but Chinese firmware routinely emits GBK characters
# (e.g. rare characters in place names); GB18030 decodes every GB2312 and GBK sequence the same
# way, so reading with it loses nothing and replaces fewer characters.
_DECODE_AS: dict[TextEncoding, str] = {"utf-8": "utf-8", "gb2312": "gb18030"}


# --- framing ---------------------------------------------------------------------------------


def checksum(body: bytes) -> int:
    """XOR of every byte between '$' and '*' ("Transport")."""
    return reduce(xor, body, 0)


def encode_line(body: str, encoding: str = "utf-8") -> bytes:
    """``$<body>*<CS>\\r\\n`` with ``body`` in the configured text encoding."""
    data = body.encode(normalize_encoding(encoding))
    return b"$%s*%02X\r\n" % (data, checksum(data))


def encode_ack(mseq: int) -> bytes:
    """``$ACK,<mseq>*CS\\r\\n`` ("Gateway → machine"); e.g. 1042 → ``$ACK,1042*62``. Any
    number the machine sent is acknowledged as sent, in range or not."""
    if not 0 <= mseq < 10**MAX_MSEQ_DIGITS:
        raise ValueError(f"mseq {mseq} is not a number of at most {MAX_MSEQ_DIGITS} digits")
    return encode_line(f"ACK,{mseq}")


def next_mseq(mseq: int) -> int:
    """The message number after ``mseq``: 1–999999, wrapping to 1."""
    return 1 if mseq >= MAX_MSEQ else mseq + 1


@dataclass(frozen=True, slots=True)
class Rejected:
    """A line that is not acknowledged: broken framing, bad checksum, or no readable mseq."""

    raw: bytes
    reason: str


_HUNT, _LINE, _SKIP = 0, 1, 2
_DELIMITERS = re.compile(rb"[$\n]")
_HEX = frozenset(b"0123456789ABCDEFabcdef")


class _Line(NamedTuple):
    body: bytes  # between '$' and '*'; for an over-long line only its first bytes
    raw: bytes  # as received without CRLF; for an over-long line only its first max_line bytes
    overlong: int = 0  # the whole line's length when it did not fit in max_line


@dataclass(slots=True)
class _Overlong:
    """A line past max_line: its head is kept, the rest only checksummed as it streams by, so a
    well-formed long line can still be acknowledged (else the machine resends it forever)."""

    head: bytes
    length: int
    xor: int
    tail: bytes  # the last bytes, where '*CS' and '\r' sit


class _Framer:
    """Splits a byte stream into checksum-valid line bodies.

    A '$' always starts a new line (no field may contain one), so a line cut by noise or by a
    reconnect costs only itself: the next '$' resynchronises. The result does not depend on how
    the stream is chunked.
    """

    def __init__(self, max_line: int, rejected_size: int) -> None:
        if max_line < 8:
            raise ValueError("max_line must be at least 8 bytes")
        self.max_line = max_line
        self.bad_lines = 0
        self.garbage_bytes = 0
        self.rejected: deque[Rejected] = deque(maxlen=rejected_size)
        self._buf = bytearray()
        self._state = _HUNT
        self._long: _Overlong | None = None

    def reject(self, raw: bytes, reason: str) -> None:
        self.bad_lines += 1
        self.rejected.append(Rejected(raw, reason))

    def reset(self) -> None:
        """Forget a partial line (the link it came from is gone)."""
        if self._state == _LINE:
            self.reject(b"$" + bytes(self._buf), "cut off by a disconnect")
        self._drop_long("cut off by a disconnect")
        self._buf.clear()
        self._state = _HUNT

    def feed(self, data: bytes) -> list[_Line]:
        """Every complete line whose checksum holds (over-long ones marked, head only)."""
        data = bytes(data)
        frames: list[_Line] = []
        start = 0
        for match in _DELIMITERS.finditer(data):
            at = match.start()
            self._take(data, start, at)
            if data[at] == 0x24:  # '$'
                if self._state == _LINE:
                    self.reject(b"$" + bytes(self._buf), "cut short by a new '$'")
                self._drop_long("cut short by a new '$'")
                self._buf.clear()
                self._state = _LINE
            else:  # '\n'
                if self._state == _LINE:
                    frame = self._complete(bytes(self._buf))
                    if frame is not None:
                        frames.append(frame)
                elif self._state == _SKIP:
                    frame = self._complete_long()
                    if frame is not None:
                        frames.append(frame)
                elif self._state == _HUNT:
                    self.garbage_bytes += 1
                self._buf.clear()
                self._state = _HUNT
            start = at + 1
        self._take(data, start, len(data))
        return frames

    def _take(self, data: bytes, start: int, end: int) -> None:
        if start == end:
            return
        if self._state == _HUNT:
            self.garbage_bytes += end - start
        elif self._state == _LINE:
            # '$' + content + '\n' must fit in max_line; checked as bytes arrive so that the
            # outcome is the same however the stream is chunked.
            if len(self._buf) + (end - start) + 2 > self.max_line:
                room = self.max_line - 1 - len(self._buf)
                head = b"$" + bytes(self._buf) + data[start : start + room]
                content = bytes(self._buf) + data[start:end]
                self._long = _Overlong(head, len(content), checksum(content), content[-4:])
                self._buf.clear()
                self._state = _SKIP
            else:
                self._buf += data[start:end]
        elif self._long is not None:  # _SKIP: the rest of an over-long line, checksummed
            piece = data[start:end]
            self._long.length += len(piece)
            self._long.xor ^= checksum(piece)
            self._long.tail = (self._long.tail + piece)[-4:]

    def _drop_long(self, why: str) -> None:
        if self._long is not None:
            self.reject(self._long.head, f"longer than {self.max_line} bytes, {why}")
            self._long = None

    def _complete_long(self) -> _Line | None:
        line, self._long = self._long, None
        if line is None:
            return None
        tail, total = line.tail, line.xor
        if tail.endswith(b"\r"):
            tail, total = tail[:-1], total ^ 0x0D
        given = tail[-2:]
        if (
            len(tail) < 3
            or tail[-3:-2] != b"*"
            or not _HEX.issuperset(given)
            or int(given, 16) != total ^ checksum(tail[-3:])
        ):
            self.reject(line.head, f"longer than {self.max_line} bytes")
            return None
        return _Line(line.head[1:], line.head, line.length + 2)

    def _complete(self, content: bytes) -> _Line | None:
        if content.endswith(b"\r"):
            content = content[:-1]
        raw = b"$" + content
        star = content.rfind(b"*")
        if star < 0:
            self.reject(raw, "no '*' before the checksum")
            return None
        given = content[star + 1 :]
        if len(given) != 2 or not _HEX.issuperset(given):
            self.reject(raw, "checksum is not two hex digits")
            return None
        body = content[:star]
        computed = checksum(body)
        if int(given, 16) != computed:
            self.reject(raw, f"checksum {given.decode()} but body gives {computed:02X}")
            return None
        return _Line(body, raw)


# --- messages --------------------------------------------------------------------------------


def format_machine_time(moment: datetime) -> str:
    """``YYYYMMDDhhmmss`` ("Machine → gateway messages"), the machine's local clock."""
    return (
        f"{moment.year:04d}{moment.month:02d}{moment.day:02d}"
        f"{moment.hour:02d}{moment.minute:02d}{moment.second:02d}"
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class QMMessage:
    """Fields every $QM message has.

    ``machine_time`` is the machine's own clock, naive Asia/Shanghai local time as sent; it
    drifts and can be hours wrong after a power cut, so it is only ever kept beside the
    gateway's receive time. It is None when the 14 digits are no real moment (e.g. all zeros
    from a machine whose clock battery died); ``machine_time_text`` keeps what was sent.
    ``raw`` is the whole line as received, without CRLF (empty for messages built locally).
    """

    CODE: ClassVar[str] = ""

    mseq: int
    machine_time: datetime | None = None
    machine_time_text: str = ""
    raw: bytes = field(default=b"", compare=False, repr=False)

    def __post_init__(self) -> None:
        if not self.machine_time_text and self.machine_time is not None:
            object.__setattr__(self, "machine_time_text", format_machine_time(self.machine_time))


@dataclass(frozen=True, slots=True, kw_only=True)
class TicketIssued(QMMessage):
    """TK: a ticket was issued; ``waiting`` counts the new ticket too (取号)."""

    CODE: ClassVar[str] = "TK"
    ticket: str
    service: str
    waiting: int
    service_name: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class _TicketAtWindow(QMMessage):
    ticket: str
    window: int


@dataclass(frozen=True, slots=True, kw_only=True)
class _TicketWithStaff(_TicketAtWindow):
    staff: str


@dataclass(frozen=True, slots=True, kw_only=True)
class _StaffAtWindow(QMMessage):
    window: int
    staff: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Called(_TicketAtWindow):
    """CL: ticket called to a window (叫号)."""

    CODE: ClassVar[str] = "CL"


@dataclass(frozen=True, slots=True, kw_only=True)
class Recalled(_TicketAtWindow):
    """RC: ticket called again (重呼)."""

    CODE: ClassVar[str] = "RC"


@dataclass(frozen=True, slots=True, kw_only=True)
class NoShow(_TicketAtWindow):
    """NS: the calls went unanswered (弃号)."""

    CODE: ClassVar[str] = "NS"


@dataclass(frozen=True, slots=True, kw_only=True)
class ServiceStarted(_TicketWithStaff):
    """ST: service started at a window by a staff member (开始办理)."""

    CODE: ClassVar[str] = "ST"


@dataclass(frozen=True, slots=True, kw_only=True)
class ServiceFinished(_TicketWithStaff):
    """FN: service finished (办结); the gateway invites an evaluation now."""

    CODE: ClassVar[str] = "FN"


@dataclass(frozen=True, slots=True, kw_only=True)
class Transferred(QMMessage):
    """TR: ends the service at ``from_window`` (no FN follows); the ticket waits again (转办)."""

    CODE: ClassVar[str] = "TR"
    ticket: str
    from_window: int
    to_service: str


@dataclass(frozen=True, slots=True, kw_only=True)
class StaffLogin(_StaffAtWindow):
    """LI: staff logged in at a window (登录)."""

    CODE: ClassVar[str] = "LI"


@dataclass(frozen=True, slots=True, kw_only=True)
class StaffLogout(_StaffAtWindow):
    """LO: staff logged out (退出)."""

    CODE: ClassVar[str] = "LO"


@dataclass(frozen=True, slots=True, kw_only=True)
class WindowPaused(_StaffAtWindow):
    """PS: window paused, staff away (暂停服务)."""

    CODE: ClassVar[str] = "PS"


@dataclass(frozen=True, slots=True, kw_only=True)
class WindowResumed(_StaffAtWindow):
    """RS: window resumed (恢复服务)."""

    CODE: ClassVar[str] = "RS"


@dataclass(frozen=True, slots=True, kw_only=True)
class Heartbeat(QMMessage):
    """HB: every 30 s, with everyone waiting in every queue."""

    CODE: ClassVar[str] = "HB"
    waiting_total: int


Message = (
    TicketIssued
    | Called
    | Recalled
    | ServiceStarted
    | ServiceFinished
    | NoShow
    | Transferred
    | StaffLogin
    | StaffLogout
    | WindowPaused
    | WindowResumed
    | Heartbeat
)


@dataclass(frozen=True, slots=True)
class Unusable:
    """A well-formed line (checksum holds, mseq readable) that cannot be used: an unknown type,
    a missing or extra field, a malformed time or number. Journal ``raw`` and acknowledge it,
    so it does not sit in the machine's buffer forever; central sees a device fault."""

    mseq: int
    raw: bytes
    reason: str


FeedItem = Message | Unusable


# --- field kinds: one reader and one writer each ---------------------------------------------


class _FieldError(ValueError):
    pass


# Tickets and service codes: printable ASCII without the line's delimiters.
_TOKEN = re.compile(rb"[\x21-\x23\x25-\x29\x2b\x2d-\x7e]{1,32}")
_TOKEN_TEXT = re.compile(r"[\x21-\x23\x25-\x29\x2b\x2d-\x7e]{1,32}")
_WINDOW = re.compile(rb"[0-9]{1,5}")
_STAFF = re.compile(rb"[0-9]{6}")
_COUNT = re.compile(rb"[0-9]{1,6}")
_TIME = re.compile(rb"[0-9]{14}")
_MSEQ = re.compile(rb"[0-9]{1,%d}" % MAX_MSEQ_DIGITS)
_STAFF_TEXT = re.compile(r"[0-9]{6}")
_FORBIDDEN_IN_TEXT = frozenset(",*$\r\n")


@dataclass(slots=True)
class _Notes:
    """What a line's reader noticed without rejecting the line."""

    text_replaced: bool = False
    impossible_time: bool = False


_Reader = Callable[[str, bytes, TextEncoding, _Notes], dict[str, Any]]
_Writer = Callable[[str, Any, TextEncoding], bytes]


def _read_token(name: str, value: bytes, _enc: TextEncoding, _notes: _Notes) -> dict[str, Any]:
    if not _TOKEN.fullmatch(value):
        raise _FieldError(f"{name} {value!r} is not a 1–32 character code")
    return {name: value.decode("ascii")}


def _read_int(pattern: re.Pattern[bytes], what: str) -> _Reader:
    def read(name: str, value: bytes, _enc: TextEncoding, _notes: _Notes) -> dict[str, Any]:
        if not pattern.fullmatch(value):
            raise _FieldError(f"{name} {value!r} is not {what}")
        return {name: int(value)}

    return read


def _read_staff(name: str, value: bytes, _enc: TextEncoding, _notes: _Notes) -> dict[str, Any]:
    if not _STAFF.fullmatch(value):
        raise _FieldError(f"{name} {value!r} is not a 6-digit staff number")
    return {name: value.decode("ascii")}


_TIME_SLICES = ((0, 4), (4, 6), (6, 8), (8, 10), (10, 12), (12, 14))


def _read_time(_name: str, value: bytes, _enc: TextEncoding, notes: _Notes) -> dict[str, Any]:
    if not _TIME.fullmatch(value):
        raise _FieldError(f"time {value!r} is not YYYYMMDDhhmmss")
    text = value.decode("ascii")
    year, month, day, hour, minute, second = (int(text[a:b]) for a, b in _TIME_SLICES)
    try:
        moment: datetime | None = datetime(year, month, day, hour, minute, second)
    except ValueError:
        # Right shape, impossible moment: the clock is wrong, the event itself is still good.
        moment = None
        notes.impossible_time = True
    return {"machine_time": moment, "machine_time_text": text}


def _read_text(name: str, value: bytes, enc: TextEncoding, notes: _Notes) -> dict[str, Any]:
    # any byte may arrive here (NUL, broken UTF-8, GB 2312 on a UTF-8 unit): decoded sensibly
    # and made storable; the line's raw bytes stay with the message
    text, altered = device_text(value, _DECODE_AS[enc], MAX_LINE)
    notes.text_replaced |= altered
    return {name: text}


def _write_token(name: str, value: Any, _enc: TextEncoding) -> bytes:
    if not isinstance(value, str) or not _TOKEN_TEXT.fullmatch(value):
        raise ValueError(f"{name} {value!r} is not a 1–32 character printable ASCII code")
    return value.encode("ascii")


def _write_int(limit: int) -> _Writer:
    def write(name: str, value: Any, _enc: TextEncoding) -> bytes:
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= limit:
            raise ValueError(f"{name} {value!r} outside 0…{limit}")
        return str(value).encode("ascii")

    return write


def _write_staff(name: str, value: Any, _enc: TextEncoding) -> bytes:
    if not isinstance(value, str) or not _STAFF_TEXT.fullmatch(value):
        raise ValueError(f"{name} {value!r} is not a 6-digit staff number")
    return value.encode("ascii")


def _write_time(_name: str, value: Any, _enc: TextEncoding) -> bytes:
    if not isinstance(value, str) or not _TIME.fullmatch(value.encode("ascii", "replace")):
        raise ValueError(f"machine time {value!r} is not YYYYMMDDhhmmss")
    return value.encode("ascii")


def _write_text(name: str, value: Any, enc: TextEncoding) -> bytes:
    if not isinstance(value, str) or _FORBIDDEN_IN_TEXT.intersection(value):
        raise ValueError(f"{name} {value!r} may not contain , * $ CR or LF")
    return value.encode(enc)


@dataclass(frozen=True, slots=True)
class _Kind:
    read: _Reader
    write: _Writer


_K_TOKEN = _Kind(_read_token, _write_token)
_K_WINDOW = _Kind(_read_int(_WINDOW, "a window number"), _write_int(99_999))
_K_COUNT = _Kind(_read_int(_COUNT, "a count"), _write_int(999_999))
_K_STAFF = _Kind(_read_staff, _write_staff)
_K_TIME = _Kind(_read_time, _write_time)
_K_TEXT = _Kind(_read_text, _write_text)

_TIME_FIELD = "machine_time"


@dataclass(frozen=True, slots=True)
class _Layout:
    cls: type[QMMessage]
    fields: tuple[tuple[str, _Kind], ...]
    optional: int = 0  # how many trailing fields may be left out


def _window_staff(cls: type[QMMessage]) -> _Layout:
    return _Layout(cls, (("window", _K_WINDOW), ("staff", _K_STAFF), (_TIME_FIELD, _K_TIME)))


def _ticket_window(cls: type[QMMessage]) -> _Layout:
    return _Layout(cls, (("ticket", _K_TOKEN), ("window", _K_WINDOW), (_TIME_FIELD, _K_TIME)))


def _ticket_window_staff(cls: type[QMMessage]) -> _Layout:
    fields = (("ticket", _K_TOKEN), ("window", _K_WINDOW), ("staff", _K_STAFF))
    return _Layout(cls, (*fields, (_TIME_FIELD, _K_TIME)))


# The manual's table, field order as on the wire.
_LAYOUTS: dict[str, _Layout] = {
    "TK": _Layout(
        TicketIssued,
        (
            ("ticket", _K_TOKEN),
            ("service", _K_TOKEN),
            (_TIME_FIELD, _K_TIME),
            ("waiting", _K_COUNT),
            ("service_name", _K_TEXT),
        ),
        optional=1,
    ),
    "CL": _ticket_window(Called),
    "RC": _ticket_window(Recalled),
    "ST": _ticket_window_staff(ServiceStarted),
    "FN": _ticket_window_staff(ServiceFinished),
    "NS": _ticket_window(NoShow),
    "TR": _Layout(
        Transferred,
        (
            ("ticket", _K_TOKEN),
            ("from_window", _K_WINDOW),
            ("to_service", _K_TOKEN),
            (_TIME_FIELD, _K_TIME),
        ),
    ),
    "LI": _window_staff(StaffLogin),
    "LO": _window_staff(StaffLogout),
    "PS": _window_staff(WindowPaused),
    "RS": _window_staff(WindowResumed),
    "HB": _Layout(Heartbeat, ((_TIME_FIELD, _K_TIME), ("waiting_total", _K_COUNT))),
}
assert all(code == layout.cls.CODE for code, layout in _LAYOUTS.items())


def encode(message: Message, encoding: str = "utf-8") -> bytes:
    """The line the machine sends for ``message``; raises ValueError for a field the wire
    cannot carry (a comma in a name, a 7-digit staff number, text outside GB2312…)."""
    enc = normalize_encoding(encoding)
    layout = _LAYOUTS[message.CODE]
    if not 1 <= message.mseq <= MAX_MSEQ:
        raise ValueError(f"mseq {message.mseq} outside 1…{MAX_MSEQ}")
    parts = [b"QM", str(message.mseq).encode("ascii"), message.CODE.encode("ascii")]
    first_optional = len(layout.fields) - layout.optional
    for index, (name, kind) in enumerate(layout.fields):
        if name == _TIME_FIELD:
            value: Any = message.machine_time_text
        else:
            value = getattr(message, name)
            if value is None and index >= first_optional:
                break
        parts.append(kind.write(name, value, enc))
    body = b",".join(parts)
    return b"$%s*%02X\r\n" % (body, checksum(body))


# --- gateway side ----------------------------------------------------------------------------


class Decoder:
    """Gateway side of the feed: ``feed(bytes) -> list[Message | Unusable]``; never raises.

    Every returned item carries an mseq to acknowledge, Unusable ones included. Lines with
    broken framing, a bad checksum or no readable mseq are not returned (they must not be
    acknowledged: the machine sends them again); they are counted in ``bad_lines`` and kept in
    ``rejected``. Bytes outside any line are counted in ``garbage_bytes``.
    """

    def __init__(
        self,
        encoding: str = "utf-8",
        max_line: int = MAX_LINE,
        rejected_size: int = REJECTED_KEPT,
    ) -> None:
        self.encoding: TextEncoding = normalize_encoding(encoding)
        self._framer = _Framer(max_line, rejected_size)
        self.messages = 0
        self.unusable = 0
        self.text_replaced = 0  # lines whose service name had to be made safe (raw kept)
        self.impossible_times = 0  # well-shaped machine times that are no real moment

    @property
    def bad_lines(self) -> int:
        return self._framer.bad_lines

    @property
    def garbage_bytes(self) -> int:
        return self._framer.garbage_bytes

    @property
    def rejected(self) -> deque[Rejected]:
        return self._framer.rejected

    def reset(self) -> None:
        """Drop a partial line; call when the transport reconnects."""
        self._framer.reset()

    def feed(self, data: bytes) -> list[FeedItem]:
        items: list[FeedItem] = []
        for line in self._framer.feed(data):
            item = self._parse_long(line) if line.overlong else self._parse(line.body, line.raw)
            if item is None:
                continue
            if isinstance(item, Unusable):
                self.unusable += 1
            else:
                self.messages += 1
            items.append(item)
        return items

    def _parse_long(self, line: _Line) -> FeedItem | None:
        parts = line.body.split(b",", 2)
        if len(parts) < 3 or parts[0] != b"QM" or not _MSEQ.fullmatch(parts[1]):
            self._framer.reject(line.raw, f"longer than {self._framer.max_line} bytes")
            return None
        return Unusable(
            int(parts[1]),
            line.raw,
            f"line of {line.overlong} bytes, longer than {self._framer.max_line}: "
            "journaled cut, acknowledged",
        )

    def _parse(self, body: bytes, raw: bytes) -> FeedItem | None:
        parts = body.split(b",")
        if parts[0] != b"QM":
            self._framer.reject(raw, "not a $QM line")
            return None
        if len(parts) < 2 or not _MSEQ.fullmatch(parts[1]):
            self._framer.reject(raw, "no readable mseq")
            return None
        mseq = int(parts[1])
        if not 1 <= mseq <= MAX_MSEQ:
            return Unusable(mseq, raw, f"mseq {mseq} is outside 1…{MAX_MSEQ}")
        if len(parts) < 3:
            return Unusable(mseq, raw, "no message type")
        code = parts[2].decode("ascii", errors="replace")
        layout = _LAYOUTS.get(code)
        if layout is None:
            return Unusable(mseq, raw, f"unknown message type {code!r}")
        values = parts[3:]
        most = len(layout.fields)
        least = most - layout.optional
        if not least <= len(values) <= most:
            expected = str(most) if least == most else f"{least}–{most}"
            return Unusable(mseq, raw, f"{code} needs {expected} fields, got {len(values)}")
        notes = _Notes()
        kwargs: dict[str, Any] = {"mseq": mseq, "raw": raw}
        try:
            for (name, kind), value in zip(layout.fields, values, strict=False):
                kwargs.update(kind.read(name, value, self.encoding, notes))
        except _FieldError as error:
            return Unusable(mseq, raw, f"{code}: {error}")
        self.text_replaced += notes.text_replaced
        self.impossible_times += notes.impossible_time
        return cast(Message, layout.cls(**kwargs))


# --- machine side ----------------------------------------------------------------------------


class AckDecoder:
    """Machine side: ``feed(bytes) -> list[int]`` of acknowledged mseqs; never raises."""

    _ACK = re.compile(rb"ACK,([0-9]{1,%d})" % MAX_MSEQ_DIGITS)

    def __init__(self, max_line: int = 64, rejected_size: int = REJECTED_KEPT) -> None:
        self._framer = _Framer(max_line, rejected_size)

    @property
    def bad_lines(self) -> int:
        return self._framer.bad_lines

    @property
    def garbage_bytes(self) -> int:
        return self._framer.garbage_bytes

    @property
    def rejected(self) -> deque[Rejected]:
        return self._framer.rejected

    def reset(self) -> None:
        self._framer.reset()

    def feed(self, data: bytes) -> list[int]:
        acks: list[int] = []
        for body, raw, overlong in self._framer.feed(data):
            match = None if overlong else self._ACK.fullmatch(body)
            if match is None:
                self._framer.reject(raw, "not an $ACK line")
            else:
                acks.append(int(match.group(1)))
        return acks
