"""Cases (办件), their suspensions and revisions.

Revision ID: 0002_cases
Revises: 0001
Create Date: 2026-11-21
"""

import sqlalchemy as sa
from alembic import op

from central.store.types import JSONDoc, UTCDateTime

revision = "0002_cases"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "cases",
        sa.Column("case_no", sa.String(64), primary_key=True, comment="办件编号"),
        sa.Column("revision", sa.Integer, nullable=False),
        sa.Column("item_code", sa.String(64), nullable=False, comment="事项编码"),
        sa.Column("item_name", sa.String(200), nullable=False, comment="事项名称"),
        sa.Column("department", sa.String(128), nullable=False),
        sa.Column("hall_id", sa.String(64), nullable=False),
        sa.Column("window", sa.Integer),
        sa.Column("staff", sa.String(6)),
        sa.Column("accepted_at", UTCDateTime, nullable=False, comment="受理时间"),
        sa.Column("legal_days", sa.Integer, nullable=False, comment="法定时限, working days"),
        sa.Column("promised_days", sa.Integer, comment="承诺时限, working days"),
        sa.Column("completed_at", UTCDateTime, comment="办结时间"),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("applicant_masked", sa.String(200), comment="masked: 张*, 138****1234"),
        sa.Column("applicant_digest", sa.String(64), comment="salted SHA-256 of the applicant id"),
        sa.Column("received_at", UTCDateTime, nullable=False),
        sa.Column("source", sa.String(32), nullable=False, comment="api | csv | mqtt"),
    )
    for column in ("department", "hall_id", "accepted_at"):
        op.create_index(f"ix_cases_{column}", "cases", [column])
    op.create_table(
        "case_suspensions",
        sa.Column("case_no", sa.String(64), sa.ForeignKey("cases.case_no"), primary_key=True),
        sa.Column("started_at", UTCDateTime, primary_key=True),
        sa.Column("ended_at", UTCDateTime),
        sa.Column("reason", sa.String(64), nullable=False, comment="补正 | 特别程序 | …"),
    )
    op.create_table(
        "case_revisions",
        sa.Column("case_no", sa.String(64), primary_key=True),
        sa.Column("revision", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("doc", JSONDoc, nullable=False),
        sa.Column("received_at", UTCDateTime, nullable=False),
    )


def downgrade() -> None:
    for name in ("case_revisions", "case_suspensions", "cases"):
        op.drop_table(name)
