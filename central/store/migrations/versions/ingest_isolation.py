"""Sequence truth and bounded quarantine: event digests, journal epochs, gateway alarms.

Revision ID: ingest_isolation
Revises: 0001
Create Date: 2026-12-06
"""

import sqlalchemy as sa
from alembic import op

from central.store.types import UTCDateTime

revision = "ingest_isolation"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("events", sa.Column("digest", sa.String(64)))
    op.add_column("gateways", sa.Column("epoch", sa.String(32)))
    op.create_index("ix_quarantine_gateway_id", "quarantine", ["gateway_id", "id"])
    op.create_table(
        "gateway_alarms",
        sa.Column("gateway_id", sa.String(64), primary_key=True),
        sa.Column("kind", sa.String(32), primary_key=True),
        sa.Column("count", sa.BigInteger, nullable=False),
        sa.Column("first_at", UTCDateTime, nullable=False),
        sa.Column("last_at", UTCDateTime, nullable=False),
        sa.Column("detail", sa.Text, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("gateway_alarms")
    op.drop_index("ix_quarantine_gateway_id", "quarantine")
    op.drop_column("gateways", "epoch")
    op.drop_column("events", "digest")
