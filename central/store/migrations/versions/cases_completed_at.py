"""An index on cases.completed_at: the cases open at a range's end (超时未办结 over the
rollups) are found without reading every case of the year.

Revision ID: cases_completed_at
Revises: work_orders
Create Date: 2026-12-07
"""

from alembic import op

revision = "cases_completed_at"
down_revision = "work_orders"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_cases_completed_at", "cases", ["completed_at"])


def downgrade() -> None:
    op.drop_index("ix_cases_completed_at", table_name="cases")
