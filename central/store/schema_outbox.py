"""The outbox (messages to deliver: the 好差评 feed, SMS, e-mail, webhooks) and the feed's
record of which evaluation version went out as which message.

Migration ``outbox`` creates them."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    Index,
    Integer,
    String,
    Table,
    UniqueConstraint,
)

from central.store.metadata import metadata
from central.store.types import JSONDoc, UTCDateTime

# One row per message; (channel, idem_key) unique, so enqueueing twice is one message.
outbox = Table(
    "outbox",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True),
    Column("channel", String(16), nullable=False, comment="platform_http|platform_file|sms|…"),
    Column("idem_key", String(200), nullable=False, comment="sent as Idempotency-Key"),
    Column("kind", String(48), nullable=False, comment="what it says: haocha.record, ladder.…"),
    Column("audience", String(16), nullable=False, comment="platform | staff | citizen"),
    Column("recipient", String(128), nullable=False, comment="a reference, never a number"),
    Column("payload", JSONDoc, nullable=False),
    Column("status", String(16), nullable=False, comment="pending|sending|delivered|failed|held"),
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("next_attempt_at", UTCDateTime, nullable=False),
    Column("claimed_by", String(128)),
    Column("lease_until", UTCDateTime),
    Column("last_error", String(200), comment="one line, nothing personal"),
    Column("created_at", UTCDateTime, nullable=False),
    Column("delivered_at", UTCDateTime),
    UniqueConstraint("channel", "idem_key", name="uq_outbox_channel_key"),
    Index("ix_outbox_due", "status", "next_attempt_at"),
    Index("ix_outbox_recipient", "recipient", "delivered_at"),
)

# 好差评 feed: each evaluation version sent upward, and how (create, update, withdraw)
haocha_feed = Table(
    "haocha_feed",
    metadata,
    Column("gateway_id", String(64), primary_key=True),
    Column("seq", BigInteger, primary_key=True, autoincrement=False),
    Column("version", Integer, primary_key=True, autoincrement=False),
    Column("hall_id", String(64), nullable=False),
    Column("op", String(16), nullable=False, comment="create | update | withdraw"),
    Column("mapping_version", String(32), nullable=False),
    Column("level", Integer, comment="None for a withdrawal"),
    Column("outbox_id", BigInteger, nullable=False),
    Column("enqueued_at", UTCDateTime, nullable=False),
    Index("ix_haocha_feed_hall", "hall_id"),
)
