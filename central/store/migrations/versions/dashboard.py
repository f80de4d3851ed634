"""Dashboard: login accounts and evaluation flag reviews.

Revision ID: dashboard
Revises: 0002_cases
Create Date: 2026-11-21
"""

import sqlalchemy as sa
from alembic import op

from central.store.types import UTCDateTime

revision = "dashboard"
down_revision = "0002_cases"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "users",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column(
            "password_hash",
            sa.String(256),
            nullable=False,
            comment="scrypt$N$r$p$salt$digest (base64)",
        ),
        sa.Column(
            "role",
            sa.String(32),
            nullable=False,
            comment="supervisor | department_leader | hall_manager | technician",
        ),
        sa.Column("hall_id", sa.String(64), comment="hall_manager: the hall"),
        sa.Column("department", sa.String(128), comment="department_leader: the department"),
        sa.Column("disabled", sa.Boolean, nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("updated_at", UTCDateTime, nullable=False),
    )
    op.create_table(
        "evaluation_reviews",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("gateway_id", sa.String(64), nullable=False),
        sa.Column(
            "seq", sa.BigInteger, nullable=False, comment="gateway seq of the evaluator.key event"
        ),
        sa.Column("hall_id", sa.String(64), nullable=False),
        sa.Column(
            "flag", sa.String(64), nullable=False, comment="the flag reviewed, e.g. NO_SESSION"
        ),
        sa.Column("decision", sa.String(16), nullable=False, comment="confirmed | dismissed"),
        sa.Column("note", sa.Text, nullable=False),
        sa.Column(
            "generation",
            sa.Integer,
            nullable=False,
            comment="1 for the first review of this flag, n + 1 for the one replacing n",
        ),
        sa.Column(
            "supersedes",
            sa.Integer,
            sa.ForeignKey("evaluation_reviews.id"),
            comment="the review this one replaces",
        ),
        sa.Column(
            "evaluation_version",
            sa.Integer,
            comment="the correlation result version the reviewer saw",
        ),
        sa.Column("reviewer", sa.String(200), nullable=False),
        sa.Column("reviewer_role", sa.String(32), nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.UniqueConstraint(
            "gateway_id", "seq", "flag", "generation", name="uq_evaluation_reviews_generation"
        ),
    )
    op.create_index(
        "ix_evaluation_reviews_hall_created", "evaluation_reviews", ["hall_id", "created_at"]
    )


def downgrade() -> None:
    op.drop_table("evaluation_reviews")
    op.drop_table("users")
