"""Evidence snapshots from the gateways: verify, store content-addressed, quarantine the rest.

An upload (protocols/evidence.py) names the gateway event that journaled the file's SHA-256.
Central accepts the bytes only if

- that event is stored here (same gateway, same hall) and is a ``camera.verdict``,
  ``camera.presence`` or ``camera.evidence`` naming this path with this hash, and
- the SHA-256 of the bytes received is that hash.

Anything else that claims to be evidence is refused. Bytes that do not hash to what the
gateway journaled mean tampering or corruption on the gateway's disk or on the way: they are
kept in ``quarantine/`` with a JSON note, recorded in ``evidence_rejects`` and logged at ERROR,
never served. Stored files live at ``<data_dir>/evidence/sha256/ab/<sha256>.jpg``; a file is
written to a temporary name and renamed, so a reader never sees half a snapshot.
"""

from __future__ import annotations

import json
import logging
import os
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from central.store.db import insert_ignore
from central.store.schema import events
from central.store.schema_evidence import evidence_files, evidence_rejects
from hallkit.clock import utc_now
from protocols import topics
from protocols.evidence import (
    EvidenceHeader,
    EvidenceReceipt,
    FramingError,
    ReceiptStatus,
    decode_upload,
    evidence_sha256,
)
from protocols.strict import clean_text

log = logging.getLogger(__name__)

# where each kind of event keeps the file's path and hash
_NAMED_BY = {
    "camera.verdict": ("snapshot", "snapshot_sha256"),
    "camera.presence": ("snapshot", "snapshot_sha256"),
    "camera.evidence": ("path", "sha256"),
}


@dataclass(frozen=True, slots=True)
class EvidenceVault:
    """The evidence directory under central's data dir."""

    root: Path

    @classmethod
    def in_data_dir(cls, data_dir: Path) -> EvidenceVault:
        return cls(data_dir / "evidence")

    def path_for(self, sha256: str) -> Path:
        return self.root / "sha256" / sha256[:2] / f"{sha256}.jpg"

    def has(self, sha256: str) -> bool:
        return self.path_for(sha256).is_file()

    @property
    def quarantine(self) -> Path:
        return self.root / "quarantine"

    def store(self, sha256: str, data: bytes) -> Path:
        target = self.path_for(sha256)
        if target.is_file():
            return target  # content-addressed: the same bytes are already here
        target.parent.mkdir(parents=True, exist_ok=True)
        temporary = target.with_suffix(f".{os.getpid()}.part")
        with temporary.open("wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, target)
        return target

    def put_in_quarantine(self, name: str, data: bytes, note: dict[str, Any]) -> Path:
        self.quarantine.mkdir(parents=True, exist_ok=True)
        target = self.quarantine / f"{name}.bin"
        target.write_bytes(data)
        target.with_suffix(".json").write_text(json.dumps(note, ensure_ascii=False, indent=1))
        return target


_bound: weakref.WeakKeyDictionary[AsyncEngine, EvidenceVault] = weakref.WeakKeyDictionary()


def bind(engine: AsyncEngine, data_dir: Path) -> EvidenceVault:
    """The aggregator's call at start: the API serving this engine finds the files here."""
    vault = EvidenceVault.in_data_dir(data_dir)
    _bound[engine] = vault
    return vault


def vault_for(engine: AsyncEngine) -> EvidenceVault | None:
    return _bound.get(engine)


def _receipt(
    header_or_addr: EvidenceHeader | topics.TopicAddress,
    sha256: str,
    status: ReceiptStatus,
    reason: str = "",
) -> EvidenceReceipt:
    event_seq = header_or_addr.event_seq if isinstance(header_or_addr, EvidenceHeader) else None
    return EvidenceReceipt(
        hall=header_or_addr.hall,
        gateway=header_or_addr.gateway,
        sha256=sha256,
        event_seq=event_seq,
        status=status,
        reason=clean_text(reason, 300),
        utc=utc_now(),
    )


async def _named_event(conn: AsyncConnection, header: EvidenceHeader) -> tuple[str, str] | None:
    """(kind, problem) of the event the upload names; problem is '' when it names this file."""
    row = (
        await conn.execute(
            select(events.c.kind, events.c.hall_id, events.c.body).where(
                events.c.gateway_id == header.gateway, events.c.seq == header.event_seq
            )
        )
    ).first()
    if row is None:
        return None
    if row.kind not in _NAMED_BY or row.hall_id != header.hall:
        return row.kind, f"event {header.event_seq} is a {row.kind} of hall {row.hall_id}"
    path_key, hash_key = _NAMED_BY[row.kind]
    body = row.body or {}
    if body.get(hash_key) != header.sha256 or body.get(path_key) != header.path:
        return row.kind, (
            f"event {header.event_seq} journaled {body.get(path_key)!r} "
            f"sha256 {body.get(hash_key)}, upload claims {header.path!r} "
            f"{header.sha256}"
        )
    return row.kind, ""


async def receive(
    engine: AsyncEngine, vault: EvidenceVault, topic_name: str, payload: bytes
) -> EvidenceReceipt | None:
    """Verify and store one upload; the receipt to send back (None: no one to answer)."""
    try:
        address = topics.parse(topic_name)
    except topics.TopicError:
        return None
    try:
        header, data = decode_upload(payload)
    except FramingError as exc:
        log.error(
            "evidence: unreadable upload from %s/%s refused: %s", address.hall, address.gateway, exc
        )
        return None  # nothing to name in a receipt; the gateway resends and is refused again
    if (header.hall, header.gateway) != (address.hall, address.gateway):
        log.error(
            "evidence: upload on %s claims to be from %s/%s; refused",
            topic_name,
            header.hall,
            header.gateway,
        )
        return _receipt(address, header.sha256, "refused", "header names another gateway")
    actual = evidence_sha256(data)
    now = utc_now()
    async with engine.begin() as conn:
        named = await _named_event(conn, header)
        if named is None:
            # sent only after the event was acknowledged, so central lost it (a restore):
            # keep asking; a replay of the journal brings the event back
            return _receipt(
                header, header.sha256, "retry", f"event {header.event_seq} is not stored at central"
            )
        kind, problem = named
        if not problem and actual != header.sha256:
            problem = (
                f"bytes hash to {actual}, {kind} {header.event_seq} journaled "
                f"{header.sha256}: tampered or corrupted"
            )
        if problem:
            name = f"{now:%Y%m%dT%H%M%S%f}-{header.hall}-{header.gateway}-{header.event_seq}"
            vault.put_in_quarantine(
                name,
                data,
                {
                    "header": header.model_dump(mode="json"),
                    "actual_sha256": actual,
                    "reason": problem,
                    "received_at": now.isoformat(),
                },
            )
            await conn.execute(
                insert(evidence_rejects).values(
                    gateway_id=header.gateway,
                    hall_id=header.hall,
                    event_seq=header.event_seq,
                    claimed_sha256=header.sha256,
                    actual_sha256=actual,
                    reason=problem[:2000],
                    quarantine=f"{name}.bin",
                    received_at=now,
                )
            )
            log.error(
                "EVIDENCE REFUSED from %s/%s (%s): %s — quarantined as %s.bin",
                header.hall,
                header.gateway,
                header.path,
                problem,
                name,
            )
            return _receipt(header, header.sha256, "refused", problem)
        vault.store(actual, data)
        await conn.execute(
            insert_ignore(conn.dialect, evidence_files).values(
                gateway_id=header.gateway,
                event_seq=header.event_seq,
                sha256=actual,
                hall_id=header.hall,
                kind=kind,
                path=header.path,
                size=len(data),
                stored_at=now,
            )
        )
    log.info(
        "evidence: stored %s from %s/%s (%d bytes)", actual, header.hall, header.gateway, len(data)
    )
    return _receipt(header, actual, "stored")


async def stored_refs(conn: AsyncConnection, sha256: str) -> list[Any]:
    """The gateway events a stored file belongs to."""
    return list(
        (await conn.execute(select(evidence_files).where(evidence_files.c.sha256 == sha256))).all()
    )


async def stored_hashes(conn: AsyncConnection, hashes: set[str]) -> set[str]:
    if not hashes:
        return set()
    rows = await conn.execute(
        select(evidence_files.c.sha256)
        .where(evidence_files.c.sha256.in_(sorted(hashes)))
        .distinct()
    )
    return {r.sha256 for r in rows}
