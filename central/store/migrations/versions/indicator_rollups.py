"""Daily indicator rollups per hall, business day and group; 评价率's evaluated cases by the
days around their acceptance; which cases each hall-day's evaluations covered.

Revision ID: indicator_rollups
Revises: outbox
Create Date: 2026-12-06
"""

import sqlalchemy as sa
from alembic import op

revision = "indicator_rollups"
down_revision = "outbox"
branch_labels = None
depends_on = None

# frozen here: the schema module may gain columns in later revisions
PAIRS = (
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
        sa.Column(
            "grouping",
            sa.String(16),
            primary_key=primary_key,
            nullable=False,
            comment="hall | department | window | staff" if primary_key else None,
        ),
        sa.Column(
            "department",
            sa.String(128),
            primary_key=primary_key,
            nullable=False,
            comment="'' when not grouped by it" if primary_key else None,
        ),
        sa.Column("window", sa.String(16), primary_key=primary_key, nullable=False),
        sa.Column("staff", sa.String(16), primary_key=primary_key, nullable=False),
    ]


def upgrade() -> None:
    op.create_table(
        "indicator_rollups",
        sa.Column("hall_id", sa.String(64), primary_key=True),
        sa.Column("business_day", sa.Date, primary_key=True),
        *_group_columns(primary_key=True),
        *(sa.Column(f"{p}_{side}", sa.Float, nullable=False) for p in PAIRS for side in "nd"),
        sa.Column("overdue_completed", sa.Integer, nullable=False),
        *(sa.Column(f"bad_{k}", sa.Integer, nullable=False) for k in (3, 4, 5, 6)),
    )
    op.create_index(
        "ix_indicator_rollups_grouping_day", "indicator_rollups", ["grouping", "business_day"]
    )
    op.create_table(
        "rollup_evaluated",
        sa.Column("hall_id", sa.String(64), nullable=False),
        sa.Column("accepted_day", sa.Date, nullable=False),
        *_group_columns(primary_key=False),
        sa.Column("before_day", sa.Date, comment="last evaluation day before the acceptance day"),
        sa.Column(
            "after_day", sa.Date, comment="first evaluation day on or after the acceptance day"
        ),
        sa.Column("cases", sa.Integer, nullable=False),
    )
    op.create_index("ix_rollup_evaluated_hall_day", "rollup_evaluated", ["hall_id", "accepted_day"])
    op.create_index(
        "ix_rollup_evaluated_grouping_day", "rollup_evaluated", ["grouping", "accepted_day"]
    )
    op.create_table(
        "rollup_case_evaluations",
        sa.Column("hall_id", sa.String(64), primary_key=True),
        sa.Column("business_day", sa.Date, primary_key=True),
        sa.Column("case_no", sa.String(64), primary_key=True),
    )
    op.create_index("ix_rollup_case_evaluations_case_no", "rollup_case_evaluations", ["case_no"])


def downgrade() -> None:
    op.drop_table("rollup_case_evaluations")
    op.drop_table("rollup_evaluated")
    op.drop_table("indicator_rollups")
