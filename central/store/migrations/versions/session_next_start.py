"""Service sessions keep when the window's next service started (LATE from then on).

Revision ID: session_next_start
Revises: reporting_spans
Create Date: 2026-12-06
"""

import sqlalchemy as sa
from alembic import op

from central.store.types import UTCDateTime

revision = "session_next_start"
down_revision = "reporting_spans"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "service_sessions",
        sa.Column(
            "next_start_at",
            UTCDateTime,
            comment="the next session at the same window started: LATE from then on",
        ),
    )


def downgrade() -> None:
    op.drop_column("service_sessions", "next_start_at")
