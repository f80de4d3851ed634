"""The building blocks of every wire model: only what every supported store can hold and the
rules can use.

Probed limits behind each bound (docs/field-notes.md#refused-values): PostgreSQL ``text``/``jsonb``
cannot hold U+0000 (and JSON has no NaN); SQLite INTEGER and PostgreSQL bigint are signed 64-bit;
Python datetimes overflow at years 1 and 9999 as soon as an offset is added; JSON parsers recurse. A
value that validates against these types can be stored on SQLite and PostgreSQL and used in
arithmetic.

Device text is made to fit before it is journaled (``device_text``), keeping the raw bytes as
hex beside it; the models then refuse anything else, so a gateway never journals what central
cannot store.
"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
)

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1

# C0 and C1 control characters and DEL: NUL breaks PostgreSQL, the rest breaks lines, logs and
# terminals. Lone surrogates are refused by the JSON layer itself.
CONTROL_CHARS = re.compile("[\x00-\x1f\x7f-\x9f]")
SAFE_TEXT_PATTERN = r"^[^\x00-\x1f\x7f-\x9f]*$"
REPLACEMENT = "\ufffd"
HEX_PATTERN = r"^([0-9a-f]{2})*$"

# A Raspberry Pi without a real-time clock starts at the epoch, so 1970 is a real (unsynced)
# stamp; nothing a gateway can honestly send lies past 2200. Within this window every rule can
# add days, months or years without overflowing.
EARLIEST_UTC = datetime(1970, 1, 1, tzinfo=UTC)
LATEST_UTC = datetime(2200, 1, 1, tzinfo=UTC)

# Around central's receive time: a gateway may hold events for a long outage (its journal can
# keep months of a county hall), but a stamp ahead of the receive time is a wrong clock.
MAX_CLOCK_AHEAD = timedelta(minutes=15)
MAX_EVENT_AGE = timedelta(days=400)

MAX_JSON_DEPTH = 8  # free-form objects (health, counters); typed bodies are shallower still
MAX_JSON_NODES = 4096
MAX_KEY_CHARS = 64
MAX_JSON_TEXT = 2048


class WireModel(BaseModel):
    """Base of every message that crosses to central: unknown fields refused, no coercion
    ("4" is not a number, true is not 1), no NaN or infinity."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)


def safe(max_length: int, min_length: int = 0) -> StringConstraints:
    """Text without control characters, at most ``max_length`` characters."""
    return StringConstraints(
        min_length=min_length, max_length=max_length, pattern=SAFE_TEXT_PATTERN
    )


# -- integers ------------------------------------------------------------------------------------


def _not_an_integer(value: object) -> object:
    # pydantic takes an int for a float: beside Int64 in a union, an integer past 64 bits
    # would come back as a float instead of being refused.
    if isinstance(value, int) and not isinstance(value, bool):
        raise ValueError("an integer is not a fraction here (integers must fit 64 bits)")
    return value


Fraction = Annotated[float, BeforeValidator(_not_an_integer)]

Int64 = Annotated[int, Field(ge=INT64_MIN, le=INT64_MAX)]
Count = Annotated[int, Field(ge=0, le=INT64_MAX)]
Seq = Annotated[int, Field(ge=1, le=INT64_MAX)]
MonoNs = Annotated[int, Field(ge=0, le=INT64_MAX)]
Byte = Annotated[int, Field(ge=0, le=255)]
U32 = Annotated[int, Field(ge=0, le=2**32 - 1)]
Window = Annotated[int, Field(ge=0, le=99_999)]  # window numbers: 1–5 digits on the $QM feed
QueueMseq = Annotated[int, Field(ge=1, le=999_999)]  # the $QM machine's message numbers

# -- text ----------------------------------------------------------------------------------------

Name = Annotated[str, safe(64)]
Text = Annotated[str, safe(300)]
RawHex = Annotated[str, StringConstraints(max_length=4096, pattern=HEX_PATTERN)]

# -- time ----------------------------------------------------------------------------------------


def _time_input(value: Any) -> Any:
    # lax datetime parsing would take 1234 as a Unix time; a wire time is ISO 8601 text
    if isinstance(value, str | datetime):
        return value
    raise ValueError("a time must be ISO 8601 text with a timezone")


def _in_window(value: datetime) -> datetime:
    if value.tzinfo is None:
        raise ValueError("a time must carry a timezone (use Z)")
    value = value.astimezone(UTC)
    if not EARLIEST_UTC <= value < LATEST_UTC:
        raise ValueError(f"time outside {EARLIEST_UTC.year}–{LATEST_UTC.year - 1}")
    return value


UtcTime = Annotated[
    datetime, Field(strict=False), BeforeValidator(_time_input), AfterValidator(_in_window)
]


def stamp_plausible(utc: datetime, received_at: datetime) -> bool:
    """Can an event stamped ``utc`` and received at ``received_at`` have that time? A stamp
    that fails is kept as the gateway sent it (a fact about its clock) but rules use the
    receive time instead."""
    return received_at - MAX_EVENT_AGE <= utc <= received_at + MAX_CLOCK_AHEAD


def clamp_to_window(value: datetime) -> datetime:
    """A wall clock outside the contract's window, pinned to its nearest edge."""
    return min(max(value, EARLIEST_UTC), LATEST_UTC - timedelta(microseconds=1))


# -- free-form JSON objects ----------------------------------------------------------------------


def _check_json(value: dict[str, Any]) -> dict[str, Any]:
    nodes = 0
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        nodes += 1
        if nodes > MAX_JSON_NODES:
            raise ValueError(f"more than {MAX_JSON_NODES} values")
        if isinstance(item, dict):
            if depth > MAX_JSON_DEPTH:
                raise ValueError(f"nested deeper than {MAX_JSON_DEPTH}")
            for key, child in item.items():
                if (
                    not isinstance(key, str)
                    or len(key) > MAX_KEY_CHARS
                    or CONTROL_CHARS.search(key)
                ):
                    raise ValueError(
                        f"key {str(key)[:40]!r} is not safe text of at most "
                        f"{MAX_KEY_CHARS} characters"
                    )
                stack.append((child, depth + 1))
        elif isinstance(item, list):
            if depth > MAX_JSON_DEPTH:
                raise ValueError(f"nested deeper than {MAX_JSON_DEPTH}")
            stack.extend((child, depth + 1) for child in item)
        elif isinstance(item, str):
            if len(item) > MAX_JSON_TEXT or CONTROL_CHARS.search(item):
                raise ValueError(
                    f"text {item[:40]!r} is not safe text of at most {MAX_JSON_TEXT} characters"
                )
        elif isinstance(item, bool) or item is None:
            continue
        elif isinstance(item, int):
            if not INT64_MIN <= item <= INT64_MAX:
                raise ValueError(f"integer {item} outside signed 64 bits")
        elif isinstance(item, float):
            if not math.isfinite(item):
                raise ValueError("NaN and infinity are not JSON")
        else:
            raise ValueError(f"{type(item).__name__} is not a JSON value")
    return value


JsonObject = Annotated[dict[str, Any], AfterValidator(_check_json)]

# -- making device text safe -------------------------------------------------------------------


def clean_text(text: str, max_length: int) -> str:
    """``text`` with every control character replaced by U+FFFD and cut to ``max_length``."""
    cleaned = CONTROL_CHARS.sub(REPLACEMENT, text)
    cleaned = cleaned.encode("utf-8", "replace").decode("utf-8")  # lone surrogates
    return cleaned[:max_length]


def device_text(raw: bytes, encoding: str, max_length: int) -> tuple[str, bool]:
    """Decode a device's text field sensibly and make it safe: the configured encoding, else
    the other one the hall's devices use (UTF-8 / GB 18030, a superset of GB 2312), else the
    configured one with U+FFFD for what does not decode. Returns the text and whether it
    differs from a clean decoding of ``raw`` (then keep ``raw`` as hex beside it)."""
    utf8 = encoding.replace("_", "-").lower() in ("utf-8", "utf8")
    first, second = ("utf-8", "gb18030") if utf8 else ("gb18030", "utf-8")
    candidates = [first, second]
    if utf8 and _mostly_utf8(raw):
        candidates = [first]  # UTF-8 with a stray bad byte, not GB text: keep what reads
    for codec in candidates:
        try:
            text = raw.decode(codec)
        except UnicodeDecodeError:
            continue
        safe_text = clean_text(text, max_length)
        return safe_text, safe_text != text or codec != first
    return clean_text(raw.decode(first, "replace"), max_length), True


def _mostly_utf8(raw: bytes) -> bool:
    # more bytes in well-formed multi-byte UTF-8 sequences than bytes that are not UTF-8
    text = raw.decode("utf-8", "replace")
    bad = text.count(REPLACEMENT)
    good = sum(len(c.encode()) for c in text if ord(c) > 0x7F and c != REPLACEMENT)
    return good > bad


def json_safe(value: Any, depth: int = 1) -> Any:
    """A gateway's own free-form value (its health report) made to fit ``JsonObject``: text
    cleaned and cut, numbers that no store holds as text, nesting past the limit summarised."""
    if isinstance(value, dict):
        if depth > MAX_JSON_DEPTH:
            return "…"
        return {
            clean_text(str(k), MAX_KEY_CHARS): json_safe(v, depth + 1)
            for k, v in list(value.items())[:256]
        }
    if isinstance(value, list | tuple):
        if depth > MAX_JSON_DEPTH:
            return "…"
        return [json_safe(v, depth + 1) for v in list(value)[:256]]
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int):
        return value if INT64_MIN <= value <= INT64_MAX else str(value)
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    return clean_text(str(value), MAX_JSON_TEXT)
