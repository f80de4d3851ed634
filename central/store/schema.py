"""The spine's tables (SQLAlchemy Core): gateways, events, their progress and quarantine, API
tokens and the cases the approval system reports. The other concerns' tables are in the
``schema_*`` modules, all on the one ``metadata`` of ``central.store.metadata``;
``central.store.tables`` gathers them. Migrations in central/store/migrations must match; a test
compares them. Records are append-only except the per-gateway progress counters."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    Integer,
    LargeBinary,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
)

from central.store import partitions
from central.store.metadata import metadata
from central.store.types import JSONDoc, UTCDateTime

gateways = Table(
    "gateways",
    metadata,
    Column("gateway_id", String(64), primary_key=True),
    Column("hall_id", String(64), nullable=False, index=True),
    Column("registered_at", UTCDateTime, nullable=False),
    Column("revoked_at", UTCDateTime),
    # every seq ≤ committed_through is stored, quarantined or recorded lost
    Column("committed_through", BigInteger, nullable=False, default=0),
    Column("last_batch_at", UTCDateTime),
    Column("online", Boolean, nullable=False, default=False),
    Column("state", JSONDoc),
    Column("state_at", UTCDateTime),
    # the journal lineage whose numbering central follows now (EventBatch.epoch)
    Column("epoch", String(32)),
)

# what ingest refused or noticed about a gateway, one row per kind (bounded by design):
# seq_conflict, seq_jump, journal_epoch, quarantine_dropped, unreadable
gateway_alarms = Table(
    "gateway_alarms",
    metadata,
    Column("gateway_id", String(64), primary_key=True),
    Column("kind", String(32), primary_key=True),
    Column("count", BigInteger, nullable=False),
    Column("first_at", UTCDateTime, nullable=False),
    Column("last_at", UTCDateTime, nullable=False),
    Column("detail", Text, nullable=False),
)

# each tier bridge's link to this broker (county → city → province) as its retained
# notification says: "1" up, "0" down (also its will); ``changed_at``: when central first heard
# the present state, ``heard_at``: the latest notification (central.spine.bridges)
bridge_links = Table(
    "bridge_links",
    metadata,
    Column("bridge", String(64), primary_key=True),
    Column("up", Boolean, nullable=False),
    Column("changed_at", UTCDateTime, nullable=False),
    Column("heard_at", UTCDateTime, nullable=False),
)

# On PostgreSQL partitioned by month of ``utc`` (central.store.partitions): there the primary
# key must hold the partition key, so it is (gateway_id, seq, utc), added after the CREATE; a
# resend carries the same utc and lands on the stored row. SQLite keeps one plain table.
events = Table(
    "events",
    metadata,
    Column("gateway_id", String(64), nullable=False),
    Column("seq", BigInteger, nullable=False, autoincrement=False),
    Column("hall_id", String(64), nullable=False),
    Column("kind", String(64), nullable=False),
    Column("utc", UTCDateTime, nullable=False),
    Column("mono_ns", BigInteger, nullable=False),
    Column("boot", String(32), nullable=False),
    Column("synced", Boolean, nullable=False),
    Column("body", JSONDoc, nullable=False),
    Column("received_at", UTCDateTime, nullable=False),
    # SHA-256 of the event's content: a seq arriving again with other content is caught
    Column("digest", String(64)),
    PrimaryKeyConstraint("gateway_id", "seq").ddl_if(dialect="sqlite"),
    # Not on PostgreSQL: there the key's check is a trigger per row, as much CPU as the rest of
    # the COPY (docs/province.md#peer-drain); the ingest reads and locks the gateway's row and
    # refuses an unregistered one in the same transaction, and gateways are never deleted.
    ForeignKeyConstraint(["gateway_id"], ["gateways.gateway_id"]).ddl_if(dialect="sqlite"),
    Index("ix_events_hall_kind_utc", "hall_id", "kind", "utc"),
    Index("ix_events_utc", "utc"),
    postgresql_partition_by="RANGE (utc)",
)
partitions.declare_partitioned(events)

# seq ranges that arrived beyond a gap; merged into committed_through once the gap fills
pending_ranges = Table(
    "pending_ranges",
    metadata,
    Column("gateway_id", String(64), primary_key=True),
    Column("first_seq", BigInteger, primary_key=True, autoincrement=False),
    Column("last_seq", BigInteger, nullable=False),
)

# seq ranges the gateway told us it had to discard before they were acknowledged
lost_ranges = Table(
    "lost_ranges",
    metadata,
    Column("gateway_id", String(64), primary_key=True),
    Column("first_seq", BigInteger, primary_key=True, autoincrement=False),
    Column("last_seq", BigInteger, nullable=False),
    Column("reported_at", UTCDateTime, nullable=False),
)

# the wall-clock offset of each gateway boot, from its first NTP-synchronised event
boot_clocks = Table(
    "boot_clocks",
    metadata,
    Column("gateway_id", String(64), primary_key=True),
    Column("boot", String(32), primary_key=True),
    Column("offset_us", BigInteger, nullable=False),
    Column("from_seq", BigInteger, nullable=False),
)

quarantine = Table(
    "quarantine",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("received_at", UTCDateTime, nullable=False),
    Column("topic", Text, nullable=False),
    Column("gateway_id", String(64)),
    Column("seq", BigInteger),
    Column("reason", Text, nullable=False),
    Column("digest", String(64), nullable=False, unique=True),
    Column("payload", LargeBinary, nullable=False),
    Column("payload_size", Integer, nullable=False),
    Index("ix_quarantine_gateway_id", "gateway_id", "id"),  # the per-gateway bound
)

api_tokens = Table(
    "api_tokens",
    metadata,
    Column("token_hash", String(64), primary_key=True),
    Column("role", String(32), nullable=False),
    Column("hall_id", String(64)),
    Column("department", String(128)),
    Column("label", String(200), nullable=False, default=""),
    Column("created_at", UTCDateTime, nullable=False),
    Column("revoked_at", UTCDateTime),
    Column("expires_at", UTCDateTime),  # null: made before tokens expired (never)
)

# 办件: window cases reported by the approval system (审批系统). Idempotent on case_no; a case
# reported again with changed fields is a new revision (case_revisions keeps every version).
cases = Table(
    "cases",
    metadata,
    Column("case_no", String(64), primary_key=True, comment="办件编号"),
    Column("revision", Integer, nullable=False, default=1),
    Column("item_code", String(64), nullable=False, comment="事项编码"),
    Column("item_name", String(200), nullable=False, comment="事项名称"),
    Column("department", String(128), nullable=False, index=True),
    Column("hall_id", String(64), nullable=False, index=True),
    Column("window", Integer),
    Column("staff", String(6)),
    Column("accepted_at", UTCDateTime, nullable=False, index=True, comment="受理时间"),
    Column("legal_days", Integer, nullable=False, comment="法定时限, working days"),
    Column("promised_days", Integer, comment="承诺时限, working days"),
    Column("completed_at", UTCDateTime, comment="办结时间"),
    Column("status", String(32), nullable=False),
    Column("applicant_masked", String(200), comment="masked: 张*, 138****1234"),
    Column("applicant_digest", String(64), comment="salted SHA-256 of the applicant id"),
    Column("received_at", UTCDateTime, nullable=False),
    Column("source", String(32), nullable=False, comment="api | csv | mqtt"),
)

case_suspensions = Table(
    "case_suspensions",
    metadata,
    Column("case_no", String(64), ForeignKey("cases.case_no"), primary_key=True),
    Column("started_at", UTCDateTime, primary_key=True),
    Column("ended_at", UTCDateTime),
    Column("reason", String(64), nullable=False, comment="补正 | 特别程序 | …"),
)

case_revisions = Table(
    "case_revisions",
    metadata,
    Column("case_no", String(64), primary_key=True),
    Column("revision", Integer, primary_key=True, autoincrement=False),
    Column("doc", JSONDoc, nullable=False),
    Column("received_at", UTCDateTime, nullable=False),
)
