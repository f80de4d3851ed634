"""The spine: gateways, events, progress ranges, clock offsets, quarantine, API tokens.

Revision ID: 0001
Revises:
Create Date: 2026-11-21
"""

import sqlalchemy as sa
from alembic import op

from central.store.types import JSONDoc, UTCDateTime

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "gateways",
        sa.Column("gateway_id", sa.String(64), primary_key=True),
        sa.Column("hall_id", sa.String(64), nullable=False),
        sa.Column("registered_at", UTCDateTime, nullable=False),
        sa.Column("revoked_at", UTCDateTime),
        sa.Column("committed_through", sa.BigInteger, nullable=False),
        sa.Column("last_batch_at", UTCDateTime),
        sa.Column("online", sa.Boolean, nullable=False),
        sa.Column("state", JSONDoc),
        sa.Column("state_at", UTCDateTime),
    )
    op.create_index("ix_gateways_hall_id", "gateways", ["hall_id"])
    op.create_table(
        "events",
        sa.Column(
            "gateway_id", sa.String(64), sa.ForeignKey("gateways.gateway_id"), primary_key=True
        ),
        sa.Column("seq", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("hall_id", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(64), nullable=False),
        sa.Column("utc", UTCDateTime, nullable=False),
        sa.Column("mono_ns", sa.BigInteger, nullable=False),
        sa.Column("boot", sa.String(32), nullable=False),
        sa.Column("synced", sa.Boolean, nullable=False),
        sa.Column("body", JSONDoc, nullable=False),
        sa.Column("received_at", UTCDateTime, nullable=False),
    )
    op.create_index("ix_events_hall_kind_utc", "events", ["hall_id", "kind", "utc"])
    op.create_index("ix_events_utc", "events", ["utc"])
    for name, extra in (
        ("pending_ranges", []),
        ("lost_ranges", [sa.Column("reported_at", UTCDateTime, nullable=False)]),
    ):
        op.create_table(
            name,
            sa.Column("gateway_id", sa.String(64), primary_key=True),
            sa.Column("first_seq", sa.BigInteger, primary_key=True, autoincrement=False),
            sa.Column("last_seq", sa.BigInteger, nullable=False),
            *extra,
        )
    op.create_table(
        "boot_clocks",
        sa.Column("gateway_id", sa.String(64), primary_key=True),
        sa.Column("boot", sa.String(32), primary_key=True),
        sa.Column("offset_us", sa.BigInteger, nullable=False),
        sa.Column("from_seq", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "quarantine",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("received_at", UTCDateTime, nullable=False),
        sa.Column("topic", sa.Text, nullable=False),
        sa.Column("gateway_id", sa.String(64)),
        sa.Column("seq", sa.BigInteger),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("digest", sa.String(64), nullable=False, unique=True),
        sa.Column("payload", sa.LargeBinary, nullable=False),
        sa.Column("payload_size", sa.Integer, nullable=False),
    )
    op.create_table(
        "api_tokens",
        sa.Column("token_hash", sa.String(64), primary_key=True),
        sa.Column("role", sa.String(32), nullable=False),
        sa.Column("hall_id", sa.String(64)),
        sa.Column("department", sa.String(128)),
        sa.Column("label", sa.String(200), nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("revoked_at", UTCDateTime),
    )


def downgrade() -> None:
    for name in (
        "api_tokens",
        "quarantine",
        "boot_clocks",
        "lost_ranges",
        "pending_ranges",
        "events",
        "gateways",
    ):
        op.drop_table(name)
