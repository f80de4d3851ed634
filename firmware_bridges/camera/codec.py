"""Camera wire formats without I/O: MJPEG over HTTP, and the evidence manifest's canonical form.

MJPEG over HTTP is ``multipart/x-mixed-replace`` (RFC 2046 section 5.1.1 framing, applied to an
endless body): each part is ``--boundary CRLF headers CRLF CRLF jpeg``. Cameras are sloppy about
it (bare LF, missing Content-Length, a boundary with or without the leading ``--``), so the
parser trusts Content-Length when present and otherwise scans for the JPEG end marker or the
next boundary. Anything it cannot use is counted, never fatal.

The evidence manifest is a hash chain of JSON lines: ``hash = sha256(prev_hash || canonical)``
where ``canonical`` is the entry without its ``hash`` field, keys sorted, no spaces, UTF-8.
Central keeps the heads it receives, so rewriting a gateway's evidence later is detectable.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

JPEG_SOI = b"\xff\xd8"
JPEG_EOI = b"\xff\xd9"

# A 4K camera's JPEG at high quality is ~2 MiB; a part larger than this is garbage or a hostile
# stream, and the buffer must stay bounded (h11 keeps the same kind of limit for headers).
MAX_PART_BYTES = 8 * 1024 * 1024
MAX_HEADER_BYTES = 8 * 1024

_BOUNDARY_PARAM = re.compile(r'boundary="?([^";,\s]+)"?', re.IGNORECASE)


class MjpegError(ValueError):
    """The response is not an MJPEG multipart stream at all."""


def boundary_from_content_type(content_type: str) -> bytes:
    """``multipart/x-mixed-replace; boundary=frame`` → ``b"frame"`` (leading ``--`` dropped)."""
    if "multipart" not in content_type.lower():
        raise MjpegError(f"not a multipart stream: {content_type!r}")
    match = _BOUNDARY_PARAM.search(content_type)
    if match is None:
        raise MjpegError(f"multipart stream without a boundary: {content_type!r}")
    boundary = match.group(1)
    # Some cameras declare "--frame" and then send "----frame"; others declare "frame" and send
    # "--frame". Normalise to the bare token and accept both on the wire.
    return boundary.lstrip("-").encode("latin-1")


@dataclass(frozen=True, slots=True)
class JpegPart:
    """One complete JPEG out of the stream, as bytes (decoding is the caller's business)."""

    data: bytes
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass(slots=True)
class MjpegStats:
    parts: int = 0
    garbage_bytes: int = 0
    bad_parts: int = 0
    oversized_parts: int = 0


class MjpegParser:
    """Feed bytes in any chunking, get complete JPEG parts out.

    >>> parser = MjpegParser(b"frame")
    >>> parts = parser.feed(encode_part(b"\\xff\\xd8jpeg\\xff\\xd9", b"frame"))
    >>> [p.data for p in parts]
    [b'\\xff\\xd8jpeg\\xff\\xd9']
    """

    def __init__(self, boundary: bytes, max_part_bytes: int = MAX_PART_BYTES) -> None:
        token = boundary.lstrip(b"-")
        if not token:
            raise MjpegError("empty boundary")
        self._delimiter = b"--" + token
        self._max_part = max_part_bytes
        self._buffer = bytearray()
        self.stats = MjpegStats()

    def feed(self, data: bytes) -> list[JpegPart]:
        self._buffer += data
        parts: list[JpegPart] = []
        while True:
            before = len(self._buffer)
            part = self._next_part()
            if part is not None:
                parts.append(part)
            elif len(self._buffer) == before:
                break  # needs more bytes; a rejected part shrank the buffer and we go on
        return parts

    @property
    def buffered(self) -> int:
        return len(self._buffer)

    def _next_part(self) -> JpegPart | None:
        buf = self._buffer
        start = buf.find(self._delimiter)
        if start < 0:
            # Keep a tail that might be the start of a delimiter; the rest is garbage.
            keep = len(self._delimiter) - 1
            if len(buf) > keep:
                self.stats.garbage_bytes += len(buf) - keep
                del buf[: len(buf) - keep]
            return None
        if start > 0:
            # Bytes between parts: CRLFs are normal, anything longer is junk worth counting.
            if buf[:start].strip(b"\r\n"):
                self.stats.garbage_bytes += start
            del buf[:start]
        header_end, separator = _find_header_end(buf, len(self._delimiter))
        if header_end < 0:
            if len(buf) > MAX_HEADER_BYTES:
                self.stats.garbage_bytes += len(self._delimiter)
                del buf[: len(self._delimiter)]
            return None
        headers = _parse_headers(bytes(buf[len(self._delimiter) : header_end]))
        body_start = header_end + separator
        length = _content_length(headers)
        if length is not None and 0 < length <= self._max_part:
            if len(buf) < body_start + length:
                return None
            body = bytes(buf[body_start : body_start + length])
            del buf[: body_start + length]
            return self._accept(body, headers)
        # No usable Content-Length: the part ends at the next delimiter.
        end = buf.find(self._delimiter, body_start)
        if end < 0:
            if len(buf) - body_start > self._max_part:
                # Drop what we have of the oversized part; resynchronise on the next delimiter.
                self.stats.oversized_parts += 1
                keep = len(self._delimiter) - 1
                self.stats.garbage_bytes += len(buf) - keep
                del buf[: len(buf) - keep]
            return None
        body = bytes(buf[body_start:end]).rstrip(b"\r\n")
        del buf[:end]
        return self._accept(body, headers)

    def _accept(self, body: bytes, headers: dict[str, str]) -> JpegPart | None:
        if not body.startswith(JPEG_SOI) or JPEG_EOI not in body[-16:]:
            self.stats.bad_parts += 1
            return None
        self.stats.parts += 1
        return JpegPart(body, headers)


def _find_header_end(buf: bytearray, offset: int) -> tuple[int, int]:
    """Index of the blank line after the part headers, and its length (CRLFCRLF or LFLF)."""
    crlf = buf.find(b"\r\n\r\n", offset)
    lf = buf.find(b"\n\n", offset)
    if crlf >= 0 and (lf < 0 or crlf <= lf):
        return crlf, 4
    if lf >= 0:
        return lf, 2
    return -1, 0


def _parse_headers(block: bytes) -> dict[str, str]:
    headers: dict[str, str] = {}
    for line in block.decode("latin-1").splitlines():
        name, sep, value = line.partition(":")
        if sep:
            headers[name.strip().lower()] = value.strip()
    return headers


def _content_length(headers: Mapping[str, str]) -> int | None:
    raw = headers.get("content-length")
    if raw is None or not raw.isdigit():
        return None
    return int(raw)


def encode_part(
    jpeg: bytes, boundary: bytes, extra_headers: Mapping[str, str] | None = None
) -> bytes:
    """One multipart part, as a well-behaved camera sends it (the simulator's server uses this)."""
    lines = [b"--" + boundary.lstrip(b"-"), b"Content-Type: image/jpeg"]
    lines.append(b"Content-Length: " + str(len(jpeg)).encode())
    for name, value in (extra_headers or {}).items():
        lines.append(f"{name}: {value}".encode("latin-1"))
    return b"\r\n".join(lines) + b"\r\n\r\n" + jpeg + b"\r\n"


def content_type(boundary: bytes) -> str:
    return f"multipart/x-mixed-replace; boundary={boundary.decode('latin-1')}"


# --- the evidence manifest --------------------------------------------------------------------

GENESIS = "0" * 64
"""The ``prev`` of the first manifest entry."""

MANIFEST_FIELDS = frozenset(
    {"seq", "utc", "action", "path", "sha256", "size", "camera", "window", "reason", "meta", "prev"}
)


def canonical_entry(entry: Mapping[str, Any]) -> bytes:
    """The bytes that are hashed: every field but ``hash``, sorted keys, compact, UTF-8."""
    body = {key: value for key, value in entry.items() if key != "hash"}
    unknown = set(body) - MANIFEST_FIELDS
    if unknown:
        raise ValueError(f"unknown manifest fields {sorted(unknown)}")
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def chain_hash(prev: str, entry: Mapping[str, Any]) -> str:
    return hashlib.sha256(bytes.fromhex(prev) + canonical_entry(entry)).hexdigest()


def seal_entry(entry: Mapping[str, Any]) -> dict[str, Any]:
    """Return the entry with its ``hash``; ``entry['prev']`` must be the previous head."""
    sealed = dict(entry)
    sealed["hash"] = chain_hash(str(entry["prev"]), entry)
    return sealed


def encode_entry_line(sealed: Mapping[str, Any]) -> bytes:
    """One manifest line: the sealed entry as compact JSON with sorted keys, then LF."""
    return (
        json.dumps(dict(sealed), sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
        + b"\n"
    )


@dataclass(frozen=True, slots=True)
class ChainProblem:
    line: int
    what: str


@dataclass(slots=True)
class ChainCheck:
    """Outcome of walking a manifest: entries that parsed, the head, and what was wrong."""

    entries: list[dict[str, Any]] = field(default_factory=list)
    head: str = GENESIS
    head_seq: int = 0
    problems: list[ChainProblem] = field(default_factory=list)


def check_chain(lines: list[bytes]) -> ChainCheck:
    """Walk manifest lines; every broken link, bad hash or seq gap is a problem.

    After a problem the walk continues from the line's own claimed hash, so one altered entry
    is reported once instead of poisoning every later line.
    """
    result = ChainCheck()
    prev = GENESIS
    expected_seq = 1
    for number, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        try:
            entry = json.loads(raw)
        except ValueError:
            result.problems.append(ChainProblem(number, "not JSON"))
            continue
        if not isinstance(entry, dict) or not isinstance(entry.get("hash"), str):
            result.problems.append(ChainProblem(number, "not a manifest entry"))
            continue
        if entry.get("prev") != prev:
            result.problems.append(ChainProblem(number, "prev does not link to the entry before"))
        try:
            recomputed = chain_hash(str(entry.get("prev", "")), entry)
        except ValueError as error:
            result.problems.append(ChainProblem(number, f"cannot hash: {error}"))
            recomputed = ""
        if recomputed and recomputed != entry["hash"]:
            result.problems.append(ChainProblem(number, "hash does not match the entry (altered)"))
        if entry.get("seq") != expected_seq:
            result.problems.append(
                ChainProblem(number, f"seq {entry.get('seq')!r} where {expected_seq} was due")
            )
        seq = entry.get("seq")
        expected_seq = (seq if isinstance(seq, int) else expected_seq) + 1
        prev = entry["hash"]
        result.entries.append(entry)
        result.head = prev
        result.head_seq = expected_seq - 1
    return result
