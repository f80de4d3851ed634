"""The outbox and the 好差评 feed's records.

Revision ID: outbox
Revises: wall_screens
Create Date: 2026-12-07
"""

import sqlalchemy as sa
from alembic import op

from central.store.types import JSONDoc, UTCDateTime

revision = "outbox"
down_revision = "wall_screens"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "outbox",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True),
        sa.Column(
            "channel",
            sa.String(16),
            nullable=False,
            comment="platform_http|platform_file|sms|…",
        ),
        sa.Column("idem_key", sa.String(200), nullable=False, comment="sent as Idempotency-Key"),
        sa.Column(
            "kind", sa.String(48), nullable=False, comment="what it says: haocha.record, ladder.…"
        ),
        sa.Column("audience", sa.String(16), nullable=False, comment="platform | staff | citizen"),
        sa.Column(
            "recipient", sa.String(128), nullable=False, comment="a reference, never a number"
        ),
        sa.Column("payload", JSONDoc, nullable=False),
        sa.Column(
            "status",
            sa.String(16),
            nullable=False,
            comment="pending|sending|delivered|failed|held",
        ),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("next_attempt_at", UTCDateTime, nullable=False),
        sa.Column("claimed_by", sa.String(128)),
        sa.Column("lease_until", UTCDateTime),
        sa.Column("last_error", sa.String(200), comment="one line, nothing personal"),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("delivered_at", UTCDateTime),
        sa.UniqueConstraint("channel", "idem_key", name="uq_outbox_channel_key"),
    )
    op.create_index("ix_outbox_due", "outbox", ["status", "next_attempt_at"])
    op.create_index("ix_outbox_recipient", "outbox", ["recipient", "delivered_at"])
    op.create_table(
        "haocha_feed",
        sa.Column("gateway_id", sa.String(64), primary_key=True),
        sa.Column("seq", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("version", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("hall_id", sa.String(64), nullable=False),
        sa.Column("op", sa.String(16), nullable=False, comment="create | update | withdraw"),
        sa.Column("mapping_version", sa.String(32), nullable=False),
        sa.Column("level", sa.Integer, comment="None for a withdrawal"),
        sa.Column("outbox_id", sa.BigInteger, nullable=False),
        sa.Column("enqueued_at", UTCDateTime, nullable=False),
    )
    op.create_index("ix_haocha_feed_hall", "haocha_feed", ["hall_id"])


def downgrade() -> None:
    op.drop_index("ix_haocha_feed_hall", table_name="haocha_feed")
    op.drop_table("haocha_feed")
    op.drop_index("ix_outbox_recipient", table_name="outbox")
    op.drop_index("ix_outbox_due", table_name="outbox")
    op.drop_table("outbox")
