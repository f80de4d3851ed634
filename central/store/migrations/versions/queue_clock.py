"""Service sessions say where each stage's time came from (receive | machine_offset).

Revision ID: queue_clock
Revises: 0003_correlation
Create Date: 2026-12-06
"""

import sqlalchemy as sa
from alembic import op

from central.store.types import JSONDoc

revision = "queue_clock"
down_revision = "0003_correlation"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "service_sessions",
        sa.Column("time_sources", JSONDoc, comment="stage → receive | machine_offset"),
    )


def downgrade() -> None:
    op.drop_column("service_sessions", "time_sources")
