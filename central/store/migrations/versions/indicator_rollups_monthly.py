"""Indicator rollups and 评价率's evaluated cases summed per calendar month: a year's answer
reads twelve rows a group instead of 365.

Revision ID: indicator_rollups_monthly
Revises: anomaly_cases
Create Date: 2026-12-07
"""

import sqlalchemy as sa
from alembic import op

revision = "indicator_rollups_monthly"
down_revision = "anomaly_cases"
branch_labels = None
depends_on = None

PAIRS = (  # frozen here, as in indicator_rollups
    "on_time",
    "handling",
    "promise",
    "speedup",
    "early",
    "same_day",
    "satisfied",
    "wait",
    "no_show",
    "staffed",
    "covered",
)


def _group_columns(primary_key: bool) -> list[sa.Column[str]]:
    return [
        sa.Column(name, sa.String(size), primary_key=primary_key, nullable=False)
        for name, size in (("grouping", 16), ("department", 128), ("window", 16), ("staff", 16))
    ]


def upgrade() -> None:
    op.create_table(
        "indicator_rollups_monthly",
        sa.Column("hall_id", sa.String(64), primary_key=True),
        sa.Column("month", sa.Date, primary_key=True),
        *_group_columns(primary_key=True),
        *(sa.Column(f"{p}_{side}", sa.Float, nullable=False) for p in PAIRS for side in "nd"),
        sa.Column("overdue_completed", sa.Integer, nullable=False),
        *(sa.Column(f"bad_{k}", sa.Integer, nullable=False) for k in (3, 4, 5, 6)),
    )
    op.create_index(
        "ix_indicator_rollups_monthly_grouping_month",
        "indicator_rollups_monthly",
        ["grouping", "month"],
    )
    op.create_table(
        "rollup_evaluated_monthly",
        sa.Column("hall_id", sa.String(64), nullable=False),
        sa.Column("month", sa.Date, nullable=False),
        *_group_columns(primary_key=False),
        sa.Column("before_day", sa.Date),
        sa.Column("after_day", sa.Date),
        sa.Column("cases", sa.Integer, nullable=False),
    )
    op.create_index(
        "ix_rollup_evaluated_monthly_hall_month", "rollup_evaluated_monthly", ["hall_id", "month"]
    )
    op.create_index(
        "ix_rollup_evaluated_monthly_grouping_month",
        "rollup_evaluated_monthly",
        ["grouping", "month"],
    )


def downgrade() -> None:
    op.drop_table("rollup_evaluated_monthly")
    op.drop_table("indicator_rollups_monthly")
