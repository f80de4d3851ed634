"""Correlation's dirty hall-days become a work queue: a generation bumped by new input, and the
worker holding a hall-day with its lease (several aggregator processes share the hall-days);
each correlated hall-day counts the times it was computed.

Revision ID: hallday_queue
Revises: merge_heads
Create Date: 2026-12-06
"""

import sqlalchemy as sa
from alembic import op

from central.store.types import UTCDateTime

revision = "hallday_queue"
down_revision = "merge_heads"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "correlation_dirty",
        sa.Column(
            "generation",
            sa.Integer,
            nullable=False,
            server_default="1",
            comment="bumped by each new input; a recompute clears only the generation it read",
        ),
    )
    op.add_column(
        "correlation_dirty",
        sa.Column("claimed_by", sa.String(128), comment="the worker computing it"),
    )
    op.add_column(
        "correlation_dirty",
        sa.Column("lease_until", UTCDateTime, comment="free for another worker after this"),
    )
    op.add_column(
        "correlation_days",
        sa.Column("runs", sa.Integer, nullable=False, server_default="1", comment="times computed"),
    )
    op.create_index("ix_correlation_dirty_lease", "correlation_dirty", ["lease_until"])


def downgrade() -> None:
    op.drop_column("correlation_days", "runs")
    op.drop_index("ix_correlation_dirty_lease", table_name="correlation_dirty")
    with op.batch_alter_table("correlation_dirty") as batch:
        batch.drop_column("lease_until")
        batch.drop_column("claimed_by")
        batch.drop_column("generation")
