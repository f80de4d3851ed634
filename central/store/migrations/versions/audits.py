"""抽查: monthly samples of finished cases, their tasks and call-back records.

Revision ID: audits
Revises: indicator_rollups_monthly
Create Date: 2026-12-07
"""

import sqlalchemy as sa
from alembic import op

from central.store.types import JSONDoc, UTCDateTime

revision = "audits"
down_revision = "indicator_rollups_monthly"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "audit_samples",
        sa.Column("month", sa.String(7), primary_key=True, comment="YYYY-MM (Beijing)"),
        sa.Column("seed", sa.String(64), nullable=False),
        sa.Column(
            "departments",
            JSONDoc,
            nullable=False,
            comment="department → {population, size, count, percent} as drawn",
        ),
        sa.Column("drawn_at", UTCDateTime, nullable=False),
        sa.Column("drawn_by", sa.String(128), nullable=False),
    )
    op.create_table(
        "audit_tasks",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("month", sa.String(7), sa.ForeignKey("audit_samples.month"), nullable=False),
        sa.Column("case_no", sa.String(64), sa.ForeignKey("cases.case_no"), nullable=False),
        sa.Column("department", sa.String(128), nullable=False),
        sa.Column("hall_id", sa.String(64), nullable=False),
        sa.Column(
            "position", sa.Integer, nullable=False, comment="draw order within the department"
        ),
        sa.Column("case_revision", sa.Integer, nullable=False, comment="the case revision drawn"),
        sa.UniqueConstraint("month", "case_no", name="uq_audit_tasks_month_case"),
    )
    op.create_index("ix_audit_tasks_month_department", "audit_tasks", ["month", "department"])
    op.create_table(
        "audit_callbacks",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("task_id", sa.Integer, sa.ForeignKey("audit_tasks.id"), nullable=False),
        sa.Column("reached", sa.Boolean, nullable=False),
        sa.Column("handled", sa.String(8), comment="yes | no | unsure: handled as recorded"),
        sa.Column("timing", sa.String(8), comment="… at the recorded time"),
        sa.Column("evaluation", sa.String(8), comment="… the recorded evaluation was theirs"),
        sa.Column("satisfied", sa.String(8), comment="… satisfied"),
        sa.Column("note", sa.Text, nullable=False),
        sa.Column(
            "discrepancies",
            JSONDoc,
            nullable=False,
            comment="where they contradict the record",
        ),
        sa.Column("entered_by", sa.String(128), nullable=False),
        sa.Column("entered_at", UTCDateTime, nullable=False),
    )
    op.create_index("ix_audit_callbacks_task_id", "audit_callbacks", ["task_id"])


def downgrade() -> None:
    op.drop_index("ix_audit_callbacks_task_id", table_name="audit_callbacks")
    op.drop_table("audit_callbacks")
    op.drop_index("ix_audit_tasks_month_department", table_name="audit_tasks")
    op.drop_table("audit_tasks")
    op.drop_table("audit_samples")
