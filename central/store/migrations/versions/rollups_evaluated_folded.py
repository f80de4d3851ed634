"""评价率's numerator folded into the rollup rows: a case evaluated on its acceptance day counts
in every range holding that day, so its count is a column of the day's (and month's) rows
instead of a row of rollup_evaluated. Existing rows stay right as they are (the column starts
at 0 and rollup_evaluated still holds them); ``hallwatch-central rollups rebuild`` folds them.

Revision ID: rollups_evaluated_folded
Revises: cases_completed_at
Create Date: 2026-12-07
"""

import sqlalchemy as sa
from alembic import op

revision = "rollups_evaluated_folded"
down_revision = "cases_completed_at"
branch_labels = None
depends_on = None

COMMENT = (
    "评价率's numerator: cases accepted that day and evaluated on it (the rest stay in "
    "rollup_evaluated)"
)


def upgrade() -> None:
    for table in ("indicator_rollups", "indicator_rollups_monthly"):
        op.add_column(
            table,
            sa.Column("evaluated", sa.Integer, nullable=False, server_default="0", comment=COMMENT),
        )


def downgrade() -> None:
    for table in ("indicator_rollups", "indicator_rollups_monthly"):
        op.drop_column(table, "evaluated")
