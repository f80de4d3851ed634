"""Time-series sink watermark; ledger entries and the ledger job's watermarks.

Revision ID: tsledger
Revises: 0002_cases
Create Date: 2026-11-21
"""

import sqlalchemy as sa
from alembic import op

from central.store.types import UTCDateTime

revision = "tsledger"
down_revision = "0002_cases"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "timeseries_progress",
        sa.Column("gateway_id", sa.String(64), primary_key=True),
        sa.Column("through_seq", sa.BigInteger, nullable=False),
        sa.Column("written_at", UTCDateTime, nullable=False),
    )
    op.create_table(
        "ledger_entries",
        sa.Column("hall_id", sa.String(64), primary_key=True),
        sa.Column(
            "day", sa.Date, primary_key=True, comment="business day (Asia/Shanghai) of entry"
        ),
        sa.Column(
            "position", sa.Integer, primary_key=True, autoincrement=False, comment="1, 2, 3, …"
        ),
        sa.Column(
            "record", sa.String(16), nullable=False, comment="evaluation | case_revision | case"
        ),
        sa.Column("ref", sa.String(64), nullable=False, comment="gateway id or case number"),
        sa.Column("ref_no", sa.BigInteger, nullable=False, comment="event seq or case revision"),
        sa.Column("row_hash", sa.String(64), nullable=False),
        sa.Column("chain_hash", sa.String(64), nullable=False),
        sa.Column("entered_at", UTCDateTime, nullable=False),
    )
    op.create_index(
        "ux_ledger_entries_record", "ledger_entries", ["record", "ref", "ref_no"], unique=True
    )
    op.create_table(
        "ledger_progress",
        sa.Column("source", sa.String(32), primary_key=True),
        sa.Column("ref", sa.String(64), primary_key=True),
        sa.Column("through_seq", sa.BigInteger, nullable=False),
        sa.Column("through_at", UTCDateTime),
    )
    op.create_index("ix_case_revisions_received_at", "case_revisions", ["received_at"])


def downgrade() -> None:
    op.drop_index("ix_case_revisions_received_at", "case_revisions")
    for name in ("ledger_progress", "ledger_entries", "timeseries_progress"):
        op.drop_table(name)
