"""大屏 devices: screens enrolled by a one-time link and known by a revocable cookie; an index
of current correlation results by business day (the wall's every-hall day figures).

Revision ID: wall_screens
Revises: registry_version
Create Date: 2026-12-06
"""

import sqlalchemy as sa
from alembic import op

from central.store.types import UTCDateTime

revision = "wall_screens"
down_revision = "registry_version"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "screens",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("hall_id", sa.String(64), comment="the subtree it shows; NULL: every hall"),
        sa.Column("enroll_hash", sa.String(64), unique=True, comment="sha256 of the one-time code"),
        sa.Column("enroll_expires_at", UTCDateTime),
        sa.Column(
            "cookie_hash", sa.String(64), unique=True, comment="sha256 of the screen's cookie"
        ),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("enrolled_at", UTCDateTime),
        sa.Column("revoked_at", UTCDateTime),
    )
    op.create_index("ix_correlation_heads_day", "correlation_heads", ["business_day"])


def downgrade() -> None:
    op.drop_index("ix_correlation_heads_day", table_name="correlation_heads")
    op.drop_table("screens")
