"""Evidence files uploaded by the gateways and the refused uploads.

Revision ID: evidence
Revises: 0002_cases
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op

from central.store.types import UTCDateTime

revision = "evidence"
down_revision = "0002_cases"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "evidence_files",
        sa.Column("gateway_id", sa.String(64), primary_key=True),
        sa.Column(
            "event_seq",
            sa.BigInteger,
            primary_key=True,
            comment="gateway seq of the camera.* event naming the file",
        ),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("hall_id", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(64), nullable=False),
        sa.Column("path", sa.String(300), nullable=False, comment="path on the gateway"),
        sa.Column("size", sa.Integer, nullable=False),
        sa.Column("stored_at", UTCDateTime, nullable=False),
    )
    op.create_index("ix_evidence_files_sha256", "evidence_files", ["sha256"])
    op.create_table(
        "evidence_rejects",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("gateway_id", sa.String(64), nullable=False),
        sa.Column("hall_id", sa.String(64), nullable=False),
        sa.Column("event_seq", sa.BigInteger, nullable=False),
        sa.Column(
            "claimed_sha256", sa.String(64), nullable=False, comment="the hash in the upload"
        ),
        sa.Column("actual_sha256", sa.String(64), nullable=False, comment="the hash of the bytes"),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("quarantine", sa.String(300), nullable=False, comment="file name in quarantine/"),
        sa.Column("received_at", UTCDateTime, nullable=False),
    )
    op.create_index(
        "ix_evidence_rejects_gateway", "evidence_rejects", ["gateway_id", "received_at"]
    )


def downgrade() -> None:
    op.drop_table("evidence_rejects")
    op.drop_table("evidence_files")
