"""Reading a message before anything is stored: topic, size and schema checks, and the
salvage of a batch whose bad events are quarantined one by one."""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

import pydantic_core
from pydantic import ValidationError
from sqlalchemy import exc as sa_exc

from protocols import events as kinds
from protocols import topics
from protocols.envelope import (
    MAX_BODY_BYTES,
    MAX_EVENTS_PER_BATCH,
    MAX_SEQ,
    EventBatch,
    EventRecord,
)

# errors that say nothing about the data: the message is not quarantined but sent again later
TRANSIENT = (
    sa_exc.OperationalError,
    sa_exc.InterfaceError,
    sa_exc.DisconnectionError,
    ConnectionError,
    TimeoutError,
)
# SQLSTATE classes that say the server went away or is not (yet) the primary: connection
# exceptions, operator intervention (shut down, crashed, starting up), and a read-only
# transaction (a standby reached while a virtual IP or a DNS name still points at it)
TRANSIENT_SQLSTATES = ("08", "57P", "25006")
# a transaction that lost to another (deadlock, serialization failure, a lock wait over
# lock_timeout): the same work again succeeds. Ingest runs transactions of one gateway at once
# (its live and drain paths, two aggregators); they meet on its row lock, taken in one order
CONTENTION_SQLSTATES = ("40P01", "40001", "55P03")


class StoreUnavailable(Exception):
    """The database could not be reached (``unreachable``) for a whole group, or its
    transaction lost to concurrent ones every time it was tried (``contended``): nothing of it
    was stored, nothing is acknowledged; the aggregator tries the same group again after a
    pause."""


def unreachable(exc: BaseException) -> bool:
    """The database is away: unreachable, restarting, or a standby (as during a failover).
    SQLAlchemy marks a connection it found dead (``connection_invalidated``); asyncpg's
    connection errors carry SQLSTATE class 08 and reach SQLAlchemy as its generic
    ``DBAPIError``, not as an ``OperationalError``. Nothing can be stored until it is back, so
    the same group is tried again; an error that may come from the data never counts."""
    if isinstance(exc, OSError | sa_exc.DisconnectionError):
        return True
    if isinstance(exc, sa_exc.DBAPIError):
        if exc.connection_invalidated:
            return True
        state = getattr(exc.orig, "sqlstate", None) or getattr(exc.orig, "pgcode", None)
        return isinstance(state, str) and state.startswith(TRANSIENT_SQLSTATES)
    return False


def contended(exc: BaseException) -> bool:
    """The transaction lost to a concurrent one (``CONTENTION_SQLSTATES``)."""
    if not isinstance(exc, sa_exc.DBAPIError):
        return False
    state = getattr(exc.orig, "sqlstate", None) or getattr(exc.orig, "pgcode", None)
    return state in CONTENTION_SQLSTATES


def transient(exc: BaseException) -> bool:
    """The error says nothing about the data (the database away, or locked, or a transaction
    that lost to another): the message is not quarantined; what is not retried as a group
    waits for the gateway's resend."""
    return isinstance(exc, TRANSIENT) or unreachable(exc) or contended(exc)


CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


@dataclass(frozen=True, slots=True)
class Incoming:
    topic: str
    payload: bytes
    received_at: datetime


class Rejected(Exception):
    """A message (or one event of it) that goes to quarantine, with the reason."""


class Unregistered(Rejected):
    """From a gateway id central does not know: quarantined in the shared bucket."""


@dataclass(frozen=True, slots=True)
class Poison:
    """An event of a readable batch that cannot be stored; quarantined whole, by its seq."""

    seq: int
    raw: bytes
    reason: str


Item = EventRecord | Poison


@dataclass(frozen=True, slots=True)
class Batch:
    msg: Incoming
    hall: str
    gateway: str
    epoch: str | None
    lost_from: int | None
    items: tuple[Item, ...]  # consecutive seqs

    @property
    def first_seq(self) -> int:
        return self.items[0].seq

    @property
    def last_seq(self) -> int:
        return self.items[-1].seq

    @property
    def start(self) -> int:
        return self.lost_from if self.lost_from is not None else self.first_seq

    def part(self, lo: int, hi: int) -> Batch:
        return replace(self, items=self.items[lo:hi], lost_from=self.lost_from if lo == 0 else None)

    def poisoned(self, reason: str) -> Batch:
        (item,) = self.items
        if isinstance(item, Poison):
            return self
        return replace(self, items=(Poison(item.seq, item.model_dump_json().encode(), reason),))


@dataclass(frozen=True, slots=True)
class Reject:
    msg: Incoming
    reason: str
    gateway: str | None


Unit = Batch | Reject


def read_message(msg: Incoming, max_payload: int) -> Unit:
    try:
        return parse_message(msg, max_payload)
    except Rejected as exc:
        return Reject(msg, str(exc), gateway_of(msg.topic))
    except Exception as exc:
        return Reject(msg, f"unreadable: {failure(exc)}", gateway_of(msg.topic))


def parse_message(msg: Incoming, max_payload: int) -> Batch:
    if len(msg.payload) > max_payload:
        raise Rejected(f"payload of {len(msg.payload)} bytes exceeds {max_payload}")
    try:
        address = topics.parse(msg.topic)
    except topics.TopicError as exc:
        raise Rejected(f"topic: {exc}") from None
    if address.channel not in topics.EVENT_CHANNELS:
        raise Rejected(f"channel {address.channel} does not carry events")
    try:
        batch = EventBatch.model_validate_json(msg.payload)
    except ValidationError as exc:
        parsed = salvage(msg, exc)
    else:
        parsed = Batch(
            msg,
            batch.hall,
            batch.gateway,
            batch.epoch,
            batch.lost_from,
            tuple(checked(event) for event in batch.events),
        )
    if (parsed.hall, parsed.gateway) != (address.hall, address.gateway):
        raise Rejected(
            f"envelope says {parsed.hall}/{parsed.gateway} but the topic says "
            f"{address.hall}/{address.gateway}"
        )
    return parsed


def salvage(msg: Incoming, error: ValidationError) -> Batch:
    """A batch that failed validation as a whole: if its envelope is sound and its seqs
    readable, keep the good events and quarantine the others by seq, so the gateway's stream
    goes on; otherwise the whole message is refused with the first error."""
    first_error = Rejected(describe(error))
    try:
        doc = json.loads(msg.payload)
    except (ValueError, RecursionError):
        raise first_error from None
    raw_events = doc.get("events") if isinstance(doc, dict) else None
    if not isinstance(raw_events, list) or not 1 <= len(raw_events) <= MAX_EVENTS_PER_BATCH:
        raise first_error
    seqs = [raw.get("seq") if isinstance(raw, dict) else None for raw in raw_events]
    first = seqs[0]
    if (
        type(first) is not int
        or not 1 <= first <= MAX_SEQ - len(seqs)
        or seqs != list(range(first, first + len(seqs)))
    ):
        raise first_error
    header = {key: value for key, value in doc.items() if key != "events"}
    probe = json.dumps({**header, "events": [template_event(first, msg.received_at)]})
    try:
        envelope = EventBatch.model_validate_json(probe)
    except ValidationError as exc:
        raise Rejected(describe(exc)) from None
    items: list[Item] = []
    for seq, raw in zip(seqs, raw_events, strict=True):
        text = raw_json(raw)
        try:
            items.append(checked(EventRecord.model_validate_json(text)))
        except ValidationError as exc:
            items.append(Poison(seq, text.encode(), f"event: {describe(exc)}"))
        except Exception as exc:
            items.append(Poison(seq, text.encode(), f"event: {failure(exc)}"))
    return Batch(
        msg, envelope.hall, envelope.gateway, envelope.epoch, envelope.lost_from, tuple(items)
    )


def template_event(seq: int, received_at: datetime) -> dict[str, Any]:
    """A valid event with the batch's first seq: lets the envelope be checked on its own."""
    return {
        "seq": seq,
        "utc": received_at.isoformat().replace("+00:00", "Z"),
        "mono_ns": 0,
        "boot": "0" * 8,
        "synced": False,
        "kind": "gen.sample",
        "body": {"n": 0, "run": ""},
    }


def raw_json(raw: object) -> str:
    return json.dumps(raw, ensure_ascii=True, separators=(",", ":"))


def checked(event: EventRecord) -> Item:
    """The event, or its quarantine form when its body does not fit its kind."""
    try:
        check_body(event.kind, event.body)
    except Rejected as exc:
        return Poison(event.seq, event.model_dump_json().encode(), str(exc))
    except Exception as exc:
        return Poison(event.seq, raw_or_empty(event), f"body of {event.kind}: {failure(exc)}")
    return event


def raw_or_empty(event: EventRecord) -> bytes:
    try:
        return event.model_dump_json().encode()
    except Exception:
        return b""


def check_body(kind: str, body: dict[str, Any]) -> None:
    if len(str(body)) > MAX_BODY_BYTES * 2:  # cheap bound before the exact one
        raise Rejected(f"body of {kind} is too large")
    try:
        kinds.validate_body(kind, body)
    except kinds.UnknownKind as exc:
        raise Rejected(str(exc)) from None
    except ValidationError as exc:
        raise Rejected(f"body of {kind}: {describe(exc)}") from None


def describe(exc: ValidationError) -> str:
    errors = exc.errors()
    first = errors[0]
    loc = ".".join(str(p) for p in first["loc"])
    if first["loc"] == ("v",):
        return f"schema: unsupported protocol version {first.get('input')!r}"
    more = f" (+{len(errors) - 1} more)" if len(errors) > 1 else ""
    return f"schema: {loc or 'payload'}: {first['msg']}{more}"


def failure(exc: BaseException) -> str:
    text = str(exc).split("\n[SQL:")[0]  # SQLAlchemy appends the statement and parameters
    return f"{type(exc).__name__}: {text}"[:1000]


def printable(text: str) -> str:
    """Text safe for every store and log line: control characters (NUL first) escaped."""
    text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


def gateway_of(topic_name: str) -> str | None:
    parts = topic_name.split("/")
    return printable(parts[3])[:64] if len(parts) == 5 else None


def quarantine_digest(topic_name: str, body: bytes) -> str:
    """Quarantine rows are unique on this: the same refusal twice is kept once."""
    return hashlib.sha256(topic_name.encode("utf-8", "replace") + b"\0" + body).hexdigest()


def event_digest(event: EventRecord, body_json: bytes | None = None) -> str:
    """SHA-256 of an event's content as sent (a journal resends the very same document): of
    ``[seq, utc, mono_ns, boot, synced, kind, body]`` in compact JSON. ``body_json``: the body
    already serialized (``pydantic_core.to_json``), as the store takes it too."""
    body = pydantic_core.to_json(event.body) if body_json is None else body_json
    to_json = pydantic_core.to_json
    doc = b"[%d,%b,%d,%b,%b,%b,%b]" % (
        event.seq,
        to_json(event.utc.isoformat()),
        event.mono_ns,
        to_json(event.boot),
        b"true" if event.synced else b"false",
        to_json(event.kind),
        body,
    )
    return hashlib.sha256(doc).hexdigest()
