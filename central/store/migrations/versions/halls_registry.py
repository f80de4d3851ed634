"""The registry of halls: name, level, parent, region code, address and opening hours.

Revision ID: halls_registry
Revises: hallday_queue
Create Date: 2026-12-06
"""

import sqlalchemy as sa
from alembic import op

from central.store.types import UTCDateTime

revision = "halls_registry"
down_revision = "hallday_queue"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "halls",
        sa.Column("hall_id", sa.String(64), primary_key=True),
        sa.Column("name", sa.String(128), nullable=False, comment="名称"),
        sa.Column(
            "level",
            sa.String(16),
            nullable=False,
            comment="province | city | county | township",
        ),
        sa.Column("parent_id", sa.String(64), comment="the hall one level up; none for a top hall"),
        sa.Column(
            "region_code", sa.String(12), nullable=False, comment="行政区划代码, 6 or 12 digits"
        ),
        sa.Column("address", sa.Text, nullable=False, server_default=""),
        sa.Column(
            "opening_hours",
            sa.String(128),
            nullable=False,
            server_default="",
            comment="办公时间",
        ),
        sa.Column("updated_at", UTCDateTime, nullable=False),
    )
    op.create_index("ix_halls_parent", "halls", ["parent_id"])


def downgrade() -> None:
    op.drop_index("ix_halls_parent", table_name="halls")
    op.drop_table("halls")
