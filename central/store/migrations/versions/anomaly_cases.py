"""Gaming detection: anomaly cases, their append-only decisions, the day and week work queues.

Revision ID: anomaly_cases
Revises: indicator_rollups
Create Date: 2026-12-06
"""

import sqlalchemy as sa
from alembic import op

from central.store.types import JSONDoc, UTCDateTime

revision = "anomaly_cases"
down_revision = "indicator_rollups"
branch_labels = None
depends_on = None

QUEUES = ("anomaly_day_queue", "anomaly_week_queue")


def upgrade() -> None:
    op.create_table(
        "anomaly_cases",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("fingerprint", sa.String(64), nullable=False, unique=True),
        sa.Column("pattern", sa.String(48), nullable=False),
        sa.Column("hall_id", sa.String(64), nullable=False),
        sa.Column("window", sa.Integer),
        sa.Column("staff", sa.String(6)),
        sa.Column("period_start", sa.Date, nullable=False),
        sa.Column("period_end", sa.Date, nullable=False),
        sa.Column("period_kind", sa.String(8), nullable=False, comment="day | week"),
        sa.Column("p_value", sa.Float),
        sa.Column("effect", sa.Float, nullable=False),
        sa.Column("effect_name", sa.String(64), nullable=False),
        sa.Column("method", sa.Text, nullable=False),
        sa.Column("summary", sa.Text, nullable=False),
        sa.Column("evidence", JSONDoc, nullable=False),
        sa.Column("opened_at", UTCDateTime, nullable=False),
    )
    op.create_index("ix_anomaly_cases_hall_period", "anomaly_cases", ["hall_id", "period_start"])
    op.create_table(
        "anomaly_decisions",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("case_id", sa.Integer, sa.ForeignKey("anomaly_cases.id"), nullable=False),
        sa.Column("generation", sa.Integer, nullable=False),
        sa.Column("decision", sa.String(16), nullable=False),
        sa.Column("note", sa.Text, nullable=False),
        sa.Column("decided_by", sa.String(200), nullable=False),
        sa.Column("decider_role", sa.String(32), nullable=False),
        sa.Column("decided_at", UTCDateTime, nullable=False),
        sa.UniqueConstraint("case_id", "generation", name="uq_anomaly_decisions_generation"),
    )
    for name in QUEUES:
        op.create_table(
            name,
            sa.Column("hall_id", sa.String(64), primary_key=True),
            sa.Column("business_day", sa.Date, primary_key=True),
            sa.Column("marked_at", UTCDateTime, nullable=False),
            sa.Column("generation", sa.Integer, nullable=False, server_default="1"),
            sa.Column("claimed_by", sa.String(128)),
            sa.Column("lease_until", UTCDateTime),
        )
        op.create_index(f"ix_{name}_lease", name, ["lease_until"])


def downgrade() -> None:
    for name in QUEUES:
        op.drop_index(f"ix_{name}_lease", table_name=name)
        op.drop_table(name)
    op.drop_table("anomaly_decisions")
    op.drop_index("ix_anomaly_cases_hall_period", table_name="anomaly_cases")
    op.drop_table("anomaly_cases")
