"""Messages on the wire, version 1. See protocols/README.md for the prose contract."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, model_validator

from protocols.strict import (
    INT64_MAX,
    Count,
    JsonObject,
    MonoNs,
    Name,
    Seq,
    Text,
    UtcTime,
    WireModel,
    safe,
)
from protocols.topics import ID_PATTERN

# A batch must fit comfortably in one MQTT message on every broker we target; 1,000 events of
# ~250 bytes is ~250 KiB, well under Mosquitto's and RabbitMQ's defaults (256 MiB, 128 MiB) and
# small enough that one lost batch costs little to resend.
MAX_EVENTS_PER_BATCH = 1000
MAX_PAYLOAD_BYTES = 1024 * 1024
MAX_BODY_BYTES = 16 * 1024
MAX_SEQ = INT64_MAX
KIND_PATTERN = r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$"
BOOT_PATTERN = r"^[0-9a-f]{8,32}$"
EPOCH_PATTERN = BOOT_PATTERN
# How far one batch may move a gateway's sequence beyond what central committed (a gap, a
# ``lost_from`` range, a new journal's start). More events than this cannot sit unacknowledged
# in any gateway journal (≥ 48 bytes a row: 200 GiB), so a larger jump is a fault, not data.
MAX_SEQ_ADVANCE = 2**32


class EventRecord(WireModel):
    """One journaled event. Identified by (gateway, seq), never by its time."""

    seq: Seq = Field(description="gateway sequence number: 1, 2, 3, … gapless")
    utc: UtcTime = Field(description="gateway wall clock at capture, UTC, ISO 8601, 1970–2199")
    mono_ns: MonoNs = Field(description="gateway monotonic clock at capture, ns since boot")
    boot: str = Field(pattern=BOOT_PATTERN, description="id of the gateway boot that captured it")
    synced: bool = Field(description="was the wall clock NTP-synchronised at capture")
    kind: str = Field(pattern=KIND_PATTERN, max_length=64, description="e.g. evaluator.key")
    # checked per event against its kind's model (protocols.events.validate_body), so one bad
    # body is quarantined alone instead of holding up its whole batch
    body: dict[str, Any] = Field(description="kind-specific payload, see protocols.events")


class EventBatch(WireModel):
    """gateway → central on hw/v1/{hall}/{gateway}/events.

    ``events`` are consecutive sequence numbers. ``lost_from``, when present, says that the
    gateway had to discard ``lost_from … events[0].seq - 1`` before they were acknowledged
    (its journal overflowed); central records the loss instead of waiting for them.
    """

    v: Literal[1] = 1
    hall: str = Field(pattern=f"^{ID_PATTERN}$")
    gateway: str = Field(pattern=f"^{ID_PATTERN}$")
    sender_boot: str = Field(pattern=BOOT_PATTERN)
    lost_from: Seq | None = None
    epoch: str | None = Field(
        default=None,
        pattern=EPOCH_PATTERN,
        description=(
            "id of the journal that numbered these events, created with it; a new id means a new "
            "or replaced journal (absent from gateways older than epochs)"
        ),
    )
    events: list[EventRecord] = Field(min_length=1, max_length=MAX_EVENTS_PER_BATCH)

    @model_validator(mode="after")
    def _consecutive(self) -> EventBatch:
        first = self.events[0].seq
        for offset, event in enumerate(self.events):
            if event.seq != first + offset:
                raise ValueError(f"events must have consecutive seq; {event.seq} at {offset}")
        if self.lost_from is not None and self.lost_from >= first:
            raise ValueError("lost_from must be below the first event's seq")
        return self

    @property
    def first_seq(self) -> int:
        return self.events[0].seq

    @property
    def last_seq(self) -> int:
        return self.events[-1].seq


class Ack(WireModel):
    """central → gateway on hw/v1/{hall}/{gateway}/ack.

    ``committed_through``: every seq ≤ this is committed (or recorded lost) at central; the
    gateway may trim them. ``replay_from``: central saw a gap and wants everything again from
    this seq.
    """

    v: Literal[1] = 1
    hall: str = Field(pattern=f"^{ID_PATTERN}$")
    gateway: str = Field(pattern=f"^{ID_PATTERN}$")
    committed_through: Count
    replay_from: Seq | None = None
    utc: UtcTime
    epoch: str | None = Field(
        default=None, pattern=EPOCH_PATTERN, description="the journal epoch this ack speaks for"
    )
    rebase_to: Seq | None = Field(
        default=None,
        description=(
            "central refuses this epoch's numbering above committed_through (it collides with "
            "other data or jumps too far): renumber those events from here, in a new epoch"
        ),
    )


class JournalState(WireModel):
    head_seq: Count = Field(description="highest seq journaled")
    acked_seq: Count = Field(description="highest seq central acknowledged")
    backlog: Count = Field(description="journaled, not yet acknowledged")
    oldest_unacked_utc: UtcTime | None = None
    disk_bytes: Count
    limit_bytes: Count
    dropped_unacked: Count = Field(description="events ever discarded before their ack")


class TaskStatus(WireModel):
    """One supervised long-running task of the gateway (its uplink, device supervisors …)."""

    state: Literal["running", "restarting", "failed", "stopped"]
    restarts: Count
    last_error: Text | None = None
    error_at: UtcTime | None = None


class GatewayState(WireModel):
    """gateway → central on hw/v1/{hall}/{gateway}/state, retained.

    Published as the birth message on every connect and periodically; the Last Will carries
    ``online: false`` so central learns when a hall goes dark.
    """

    v: Literal[1] = 1
    hall: str = Field(pattern=f"^{ID_PATTERN}$")
    gateway: str = Field(pattern=f"^{ID_PATTERN}$")
    boot: str = Field(pattern=BOOT_PATTERN)
    online: bool
    utc: UtcTime
    synced: bool
    software: Annotated[str, safe(120)] = ""
    journal: JournalState | None = None
    health: JsonObject = Field(default_factory=dict)
    tasks: dict[Name, TaskStatus] = Field(
        default_factory=dict, max_length=200, description="supervised tasks by name"
    )


def encode_event(record: EventRecord) -> str:
    """The canonical JSON text of one event; the journal stores exactly this."""
    return record.model_dump_json()


def encode_batch(
    hall: str,
    gateway: str,
    sender_boot: str,
    event_json: Sequence[str],
    lost_from: int | None = None,
    epoch: str | None = None,
) -> bytes:
    """Join pre-encoded events into a batch without re-serialising them (the hot path)."""
    header: dict[str, object] = {
        "v": 1,
        "hall": hall,
        "gateway": gateway,
        "sender_boot": sender_boot,
    }
    if lost_from is not None:
        header["lost_from"] = lost_from
    if epoch is not None:
        header["epoch"] = epoch
    head = json.dumps(header, separators=(",", ":"))[:-1]
    return f'{head},"events":[{",".join(event_json)}]}}'.encode()


def encode(message: BaseModel) -> bytes:
    return message.model_dump_json().encode()
