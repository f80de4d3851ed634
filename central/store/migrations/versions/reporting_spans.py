"""Each correlated hall-day records when its queue feed was reporting (在岗率's coverage).

Revision ID: reporting_spans
Revises: queue_clock
Create Date: 2026-12-06
"""

import sqlalchemy as sa
from alembic import op

from central.store.types import JSONDoc

revision = "reporting_spans"
down_revision = "queue_clock"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "correlation_days",
        sa.Column(
            "reporting", JSONDoc, comment="[[start, end], …] the queue feed reported (UTC ISO)"
        ),
    )
    # every correlated day is computed again, so that it gets its reporting spans
    op.execute(
        "INSERT INTO correlation_dirty (hall_id, business_day, marked_at) "
        "SELECT d.hall_id, d.business_day, d.run_at FROM correlation_days d "
        "WHERE NOT EXISTS (SELECT 1 FROM correlation_dirty x WHERE "
        "x.hall_id = d.hall_id AND x.business_day = d.business_day)"
    )


def downgrade() -> None:
    op.drop_column("correlation_days", "reporting")
