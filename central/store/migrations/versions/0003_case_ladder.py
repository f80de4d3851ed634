"""The case ladder: recorded steps and each case's current stage.

Revision ID: 0003_case_ladder
Revises: 0002_cases
Create Date: 2026-11-21
"""

import sqlalchemy as sa
from alembic import op

from central.store.types import UTCDateTime

revision = "0003_case_ladder"
down_revision = "0002_cases"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "case_steps",
        sa.Column("case_no", sa.String(64), sa.ForeignKey("cases.case_no"), primary_key=True),
        sa.Column("at", UTCDateTime, primary_key=True, comment="when the case entered the stage"),
        sa.Column("stage", sa.String(32), primary_key=True, comment="LadderStage value"),
        sa.Column(
            "on_date", sa.Date, nullable=False, comment="business date (Asia/Shanghai) of at"
        ),
        sa.Column(
            "days_over",
            sa.Integer,
            nullable=False,
            comment="counted working days − limit when it happened",
        ),
        sa.Column(
            "revision", sa.Integer, nullable=False, comment="case revision it was derived from"
        ),
        sa.Column("recorded_at", UTCDateTime, nullable=False),
    )
    op.create_index("ix_case_steps_on_date_stage", "case_steps", ["on_date", "stage"])
    op.create_table(
        "case_ladder",
        sa.Column("case_no", sa.String(64), sa.ForeignKey("cases.case_no"), primary_key=True),
        sa.Column("revision", sa.Integer, nullable=False, comment="case revision the stage is for"),
        sa.Column(
            "rules_digest", sa.String(16), nullable=False, comment="calendar + thresholds used"
        ),
        sa.Column("as_of", sa.Date, nullable=False, comment="business date the stage is for"),
        sa.Column("stage", sa.String(32), comment="LadderStage value; NULL once withdrawn (撤件)"),
        sa.Column("deadline", sa.Date, comment="NULL while the clock is stopped"),
        sa.Column("days_over", sa.Integer, comment="counted working days − limit on as_of"),
        sa.Column("overdue", sa.Boolean, nullable=False),
        sa.Column(
            "settled", sa.Boolean, nullable=False, comment="completed or withdrawn: nothing to add"
        ),
        sa.Column("updated_at", UTCDateTime, nullable=False),
    )
    op.create_index("ix_case_ladder_stage", "case_ladder", ["stage"])
    op.create_index("ix_case_ladder_open", "case_ladder", ["settled", "as_of"])
    op.create_index("ix_cases_received_at", "cases", ["received_at"])


def downgrade() -> None:
    op.drop_index("ix_cases_received_at", "cases")
    op.drop_table("case_ladder")
    op.drop_table("case_steps")
