"""Operations tables: remote commands to gateways, their per-gateway version counter, results.

Commands are an outbox: the API (or the CLI) records a command with the next version for its
gateway; an aggregator process signs and publishes what is queued, in version order, and marks
it sent once the broker took it. Results from the gateways are appended, never updated, so a
command delivered twice shows both answers ("accepted", then "replayed").
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Index,
    Integer,
    String,
    Table,
    Text,
    UniqueConstraint,
)

from central.store.metadata import metadata
from central.store.types import JSONDoc, UTCDateTime

# The highest command version ever issued to a gateway id. Kept apart from ``gateways`` so a
# re-provisioned or replaced gateway continues above it (its bundle carries it as the floor).
command_counters = Table(
    "command_counters",
    metadata,
    Column("gateway_id", String(64), primary_key=True),
    Column("last_version", BigInteger, nullable=False),
)

gateway_commands = Table(
    "gateway_commands",
    metadata,
    Column("id", String(36), primary_key=True, comment="uuid4, as in the signed command"),
    Column("gateway_id", String(64), nullable=False),
    Column("hall_id", String(64), nullable=False),
    Column("version", BigInteger, nullable=False),
    Column("name", String(32), nullable=False),
    Column("args", JSONDoc, nullable=False),
    Column("issued_at", UTCDateTime, nullable=False),
    Column("expires_at", UTCDateTime, nullable=False),
    Column("requested_by", String(200), nullable=False, default=""),
    Column("sent_at", UTCDateTime),
    Column("publish_attempts", Integer, nullable=False, default=0),
    UniqueConstraint("gateway_id", "version", name="uq_gateway_commands_version"),
    Index("ix_gateway_commands_unsent", "sent_at"),
)

command_results = Table(
    "command_results",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column(
        "command_id",
        String(36),
        index=True,
        comment="absent when the gateway could not read the payload as a command",
    ),
    Column("gateway_id", String(64), nullable=False, index=True),
    Column("hall_id", String(64), nullable=False),
    Column("version", BigInteger),
    Column("accepted", Boolean, nullable=False),
    Column("reason", String(32), nullable=False),
    Column("detail", Text, nullable=False, default=""),
    Column("gateway_utc", UTCDateTime, nullable=False),
    Column("received_at", UTCDateTime, nullable=False),
    Column(
        "digest",
        String(64),
        nullable=False,
        unique=True,
        comment="SHA-256 of the payload: a redelivered result is stored once",
    ),
)
