"""Ledger chain heads sealed every few minutes (ledger_seals).

Revision ID: ledger_seals
Revises: tsledger
Create Date: 2026-12-06
"""

import sqlalchemy as sa
from alembic import op

from central.store.types import UTCDateTime

revision = "ledger_seals"
down_revision = "tsledger"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "ledger_seals",
        sa.Column("hall_id", sa.String(64), primary_key=True),
        sa.Column("day", sa.Date, primary_key=True, comment="business day of the chain"),
        sa.Column(
            "entries",
            sa.Integer,
            primary_key=True,
            autoincrement=False,
            comment="the chain's length when sealed",
        ),
        sa.Column(
            "head", sa.String(64), nullable=False, comment="chain hash of entry number 'entries'"
        ),
        sa.Column("sealed_at", UTCDateTime, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("ledger_seals")
