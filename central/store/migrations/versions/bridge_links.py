"""Tier bridges' links as central hears their notifications (``bridge_links``).

Revision ID: bridge_links
Revises: rollups_by_grouping
Create Date: 2026-12-07
"""

import sqlalchemy as sa
from alembic import op

from central.store.types import UTCDateTime

revision = "bridge_links"
down_revision = "rollups_by_grouping"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "bridge_links",
        sa.Column("bridge", sa.String(64), primary_key=True),
        sa.Column("up", sa.Boolean, nullable=False),
        sa.Column("changed_at", UTCDateTime, nullable=False),
        sa.Column("heard_at", UTCDateTime, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("bridge_links")
