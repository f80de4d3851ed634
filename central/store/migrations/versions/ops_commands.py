"""Remote commands to gateways: version counters, the outbox, results.

Revision ID: ops_commands
Revises: 0002_cases
Create Date: 2026-11-21
"""

import sqlalchemy as sa
from alembic import op

from central.store.types import JSONDoc, UTCDateTime

revision = "ops_commands"
down_revision = "0002_cases"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "command_counters",
        sa.Column("gateway_id", sa.String(64), primary_key=True),
        sa.Column("last_version", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "gateway_commands",
        sa.Column("id", sa.String(36), primary_key=True, comment="uuid4, as in the signed command"),
        sa.Column("gateway_id", sa.String(64), nullable=False),
        sa.Column("hall_id", sa.String(64), nullable=False),
        sa.Column("version", sa.BigInteger, nullable=False),
        sa.Column("name", sa.String(32), nullable=False),
        sa.Column("args", JSONDoc, nullable=False),
        sa.Column("issued_at", UTCDateTime, nullable=False),
        sa.Column("expires_at", UTCDateTime, nullable=False),
        sa.Column("requested_by", sa.String(200), nullable=False),
        sa.Column("sent_at", UTCDateTime),
        sa.Column("publish_attempts", sa.Integer, nullable=False),
        sa.UniqueConstraint("gateway_id", "version", name="uq_gateway_commands_version"),
    )
    op.create_index("ix_gateway_commands_unsent", "gateway_commands", ["sent_at"])
    op.create_table(
        "command_results",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("command_id", sa.String(36)),
        sa.Column("gateway_id", sa.String(64), nullable=False),
        sa.Column("hall_id", sa.String(64), nullable=False),
        sa.Column("version", sa.BigInteger),
        sa.Column("accepted", sa.Boolean, nullable=False),
        sa.Column("reason", sa.String(32), nullable=False),
        sa.Column("detail", sa.Text, nullable=False),
        sa.Column("gateway_utc", UTCDateTime, nullable=False),
        sa.Column("received_at", UTCDateTime, nullable=False),
        sa.Column("digest", sa.String(64), nullable=False, unique=True),
    )
    op.create_index("ix_command_results_command_id", "command_results", ["command_id"])
    op.create_index("ix_command_results_gateway_id", "command_results", ["gateway_id"])


def downgrade() -> None:
    op.drop_table("command_results")
    op.drop_table("gateway_commands")
    op.drop_table("command_counters")
