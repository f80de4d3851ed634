"""Evidence uploads, version 1: a snapshot's bytes, gateway → central, and central's receipt.

    hw/v1/{hall}/{gateway}/evidence   gateway → central   EvidenceHeader + file bytes, QoS 1
    hw/v1/{hall}/{gateway}/receipt    central → gateway   EvidenceReceipt, QoS 1

Framing of an upload (one MQTT message)::

    b"HWEV1\\n"  |  header length, 4 bytes big-endian  |  header JSON (UTF-8)  |  file bytes

The header carries the SHA-256 the gateway *journaled* for the file (in a ``camera.verdict``,
``camera.presence`` or ``camera.evidence`` event), never one recomputed on sending: central
hashes the bytes itself and refuses an upload whose bytes do not match the journaled hash
(tampered or corrupted on the gateway's disk or on the way).

An upload is sent only after central acknowledged the event that names the file, so central
can always check it against a stored hash. The gateway keeps it in its queue until a receipt
says ``stored`` or ``refused``; ``retry`` (central could not decide now) and silence make it
send again later.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Iterable
from typing import Annotated, Literal

from pydantic import Field, ValidationError

from protocols.strict import Count, Seq, Text, UtcTime, WireModel, safe
from protocols.topics import ID_PATTERN

MAGIC = b"HWEV1\n"
_LENGTH = struct.Struct(">I")
MAX_HEADER_BYTES = 4096
# Mosquitto is configured with max_packet_size 1,114,112 (1 MiB of batch payload + 64 KiB for
# topic and properties, deploy/mosquitto/README.md); a snapshot must fit in the same packet
# with its header, so 1,000 KiB. A 640×360 JPEG snapshot at quality 85 is 30–80 KiB.
MAX_EVIDENCE_BYTES = 1000 * 1024
SHA256 = r"^[0-9a-f]{64}$"


def evidence_sha256(data: bytes | Iterable[bytes]) -> str:
    """The hash an evidence file is known by: SHA-256 of its bytes (given whole or in blocks),
    lowercase hex. The gateway journals it when the file enters its manifest; central
    recomputes it from an upload's bytes and refuses a mismatch."""
    digest = hashlib.sha256()
    for block in [data] if isinstance(data, bytes) else data:
        digest.update(block)
    return digest.hexdigest()


class FramingError(ValueError):
    """Bytes that are not an upload of this version (wrong magic, length, header)."""


class EvidenceHeader(WireModel):
    v: Literal[1] = 1
    hall: str = Field(pattern=f"^{ID_PATTERN}$")
    gateway: str = Field(pattern=f"^{ID_PATTERN}$")
    path: Annotated[str, safe(300, min_length=1)] = Field(
        description="relative to the evidence dir"
    )
    sha256: str = Field(pattern=SHA256, description="the hash the gateway journaled")
    size: int = Field(ge=0, le=MAX_EVIDENCE_BYTES)
    manifest_seq: Count = Field(description="manifest entry that added the file (0: unknown)")
    event_seq: Seq = Field(description="gateway seq of the event that names the file")


ReceiptStatus = Literal["stored", "refused", "retry"]


class EvidenceReceipt(WireModel):
    """central → gateway: what became of one upload."""

    v: Literal[1] = 1
    hall: str = Field(pattern=f"^{ID_PATTERN}$")
    gateway: str = Field(pattern=f"^{ID_PATTERN}$")
    sha256: str = Field(pattern=SHA256)
    event_seq: Seq | None = Field(
        default=None, description="the upload's event; identical images share a hash"
    )
    status: ReceiptStatus
    reason: Text = ""
    utc: UtcTime


def encode_upload(header: EvidenceHeader, data: bytes) -> bytes:
    if len(data) != header.size:
        raise FramingError(f"header says {header.size} bytes, got {len(data)}")
    head = header.model_dump_json().encode()
    if len(head) > MAX_HEADER_BYTES:
        raise FramingError("header too long")
    return MAGIC + _LENGTH.pack(len(head)) + head + data


def decode_upload(payload: bytes) -> tuple[EvidenceHeader, bytes]:
    """The header and the file bytes; FramingError for anything else (never trusts a size)."""
    start = len(MAGIC) + _LENGTH.size
    if len(payload) < start or not payload.startswith(MAGIC):
        raise FramingError("not an evidence upload (magic)")
    (length,) = _LENGTH.unpack_from(payload, len(MAGIC))
    if length > MAX_HEADER_BYTES or start + length > len(payload):
        raise FramingError(f"header length {length} out of bounds")
    try:
        header = EvidenceHeader.model_validate_json(payload[start : start + length])
    except (ValueError, ValidationError) as exc:
        raise FramingError(f"bad header: {exc}") from None
    data = payload[start + length :]
    if len(data) != header.size:
        raise FramingError(f"header says {header.size} bytes, message carries {len(data)}")
    return header, data
