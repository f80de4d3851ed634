"""Complaints (网上投诉) and their history.

Revision ID: complaints
Revises: events_by_month
Create Date: 2026-12-07
"""

import sqlalchemy as sa
from alembic import op

from central.store.types import UTCDateTime

revision = "complaints"
down_revision = "events_by_month"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "complaints",
        sa.Column("complaint_no", sa.String(24), primary_key=True, comment="投诉编号 TS…"),
        sa.Column("code_digest", sa.String(64), nullable=False, comment="SHA-256 of the 查询码"),
        sa.Column(
            "channel", sa.String(16), nullable=False, comment="web | phone | counter | letter"
        ),
        sa.Column(
            "text", sa.Text, nullable=False, comment="投诉内容, as typed (escaped on display)"
        ),
        sa.Column("hall_id", sa.String(64), comment="tied hall; NULL: unknown"),
        sa.Column("window", sa.Integer),
        sa.Column("staff", sa.String(6), comment="tied staff number"),
        sa.Column("staff_name_given", sa.String(32), comment="the name the complainant gave"),
        sa.Column("case_ref", sa.String(64), comment="办件编号 as the complainant gave it"),
        sa.Column(
            "case_no", sa.String(64), comment="the case it is tied to, when that number exists"
        ),
        sa.Column("happened_on", sa.Date),
        sa.Column(
            "department",
            sa.String(128),
            comment="归口 department; NULL: supervisors' triage queue",
        ),
        sa.Column("complainant", sa.String(32), comment="称呼"),
        sa.Column("phone", sa.String(16), comment="erased once closed or rejected"),
        sa.Column("phone_masked", sa.String(16)),
        sa.Column("consent", sa.Boolean, nullable=False, comment="同意短信/电话联系"),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("received_at", UTCDateTime, nullable=False),
        sa.Column("received_on", sa.Date, nullable=False, comment="business date received"),
        sa.Column("ack_due", sa.Date, nullable=False),
        sa.Column("reply_due", sa.Date, nullable=False),
        sa.Column("accepted_at", UTCDateTime),
        sa.Column("replied_at", UTCDateTime),
        sa.Column("replied_on", sa.Date, comment="business date of the reply"),
        sa.Column("closed_at", UTCDateTime),
        sa.Column("reply", sa.Text, comment="答复, shown to the complainant"),
        sa.Column("reject_reason", sa.Text),
        sa.Column("escalation_level", sa.Integer, nullable=False, server_default="0"),
        sa.Column(
            "entered_by", sa.String(160), comment="staff who entered a phone/counter complaint"
        ),
        sa.Column("updated_at", UTCDateTime, nullable=False),
    )
    op.create_index("ix_complaints_hall", "complaints", ["hall_id", "received_on"])
    op.create_index("ix_complaints_department", "complaints", ["department", "received_on"])
    op.create_index("ix_complaints_case", "complaints", ["case_no"])
    op.create_index("ix_complaints_state", "complaints", ["state", "reply_due"])
    op.create_table(
        "complaint_events",
        sa.Column("complaint_no", sa.String(24), primary_key=True),
        sa.Column("seq", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("at", UTCDateTime, nullable=False),
        sa.Column(
            "action", sa.String(16), nullable=False, comment="received | accept | … | escalate"
        ),
        sa.Column("state", sa.String(16), nullable=False, comment="the state after it"),
        sa.Column(
            "actor", sa.String(160), comment="role:label; NULL for the public form and the clock"
        ),
        sa.Column("note", sa.Text, nullable=False, server_default=""),
    )


def downgrade() -> None:
    op.drop_table("complaint_events")
    op.drop_table("complaints")
