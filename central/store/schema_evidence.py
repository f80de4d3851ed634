"""Evidence files central holds: snapshots uploaded by the gateways, verified against the
SHA-256 they journaled, and the uploads refused (tampering or corruption, kept in quarantine).

The bytes live on disk under the data dir, content-addressed by SHA-256
(central/records/evidence.py); these tables say which gateway event each file belongs to, for
scoping and the review page.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, Index, Integer, String, Table, Text

from central.store.metadata import metadata
from central.store.types import UTCDateTime

# One row per (gateway event, file): the same snapshot may be named by a verdict and a
# presence change; the file is stored once.
evidence_files = Table(
    "evidence_files",
    metadata,
    Column("gateway_id", String(64), primary_key=True),
    Column(
        "event_seq",
        BigInteger,
        primary_key=True,
        comment="gateway seq of the camera.* event naming the file",
    ),
    Column("sha256", String(64), nullable=False),
    Column("hall_id", String(64), nullable=False),
    Column("kind", String(64), nullable=False),
    Column("path", String(300), nullable=False, comment="path on the gateway"),
    Column("size", Integer, nullable=False),
    Column("stored_at", UTCDateTime, nullable=False),
    Index("ix_evidence_files_sha256", "sha256"),
)

evidence_rejects = Table(
    "evidence_rejects",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("gateway_id", String(64), nullable=False),
    Column("hall_id", String(64), nullable=False),
    Column("event_seq", BigInteger, nullable=False),
    Column("claimed_sha256", String(64), nullable=False, comment="the hash in the upload"),
    Column("actual_sha256", String(64), nullable=False, comment="the hash of the bytes"),
    Column("reason", Text, nullable=False),
    Column("quarantine", String(300), nullable=False, comment="file name in quarantine/"),
    Column("received_at", UTCDateTime, nullable=False),
    Index("ix_evidence_rejects_gateway", "gateway_id", "received_at"),
)
