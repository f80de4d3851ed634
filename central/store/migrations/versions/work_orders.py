"""差评 work orders: the rating that opened each follow-up, per-stage deadlines and ends, the
appeal (申诉) and its decision, the citizen's answer at 回访; events say which stage, ground,
evidence and answer. Orders opened before keep their single due day as their 核实 due.

Revision ID: work_orders
Revises: audits
Create Date: 2026-12-07
"""

import sqlalchemy as sa
from alembic import op

from central.store.types import JSONDoc, UTCDateTime

revision = "work_orders"
down_revision = "audits"
branch_labels = None
depends_on = None

ORDER_COLUMNS = (
    ("level", sa.Integer, "national level 1–2 under the mapping version"),
    ("tag", sa.String(16), "差评原因 tag"),
    ("mapping_version", sa.String(32), None),
    ("stage_days", JSONDoc, "working days per stage when it opened"),
    ("verify_due", sa.Date, None),
    ("rectify_due", sa.Date, None),
    ("call_back_due", sa.Date, None),
    ("verified_at", UTCDateTime, None),
    ("rectified_at", UTCDateTime, None),
    ("called_back_at", UTCDateTime, None),
    ("answer", sa.String(16), "the citizen's answer at 回访"),
    ("appeal_ground", sa.String(16), None),
    ("appeal_evidence", sa.String(64), "sha256 in the evidence vault"),
    ("appeal_upheld", sa.Boolean, None),
)
EVENT_COLUMNS = (
    ("stage", sa.String(16)),
    ("ground", sa.String(16)),
    ("evidence_sha256", sa.String(64)),
    ("answer", sa.String(16)),
)


def upgrade() -> None:
    with op.batch_alter_table("followups") as batch:
        for name, type_, comment in ORDER_COLUMNS:
            batch.add_column(sa.Column(name, type_, comment=comment))
        batch.add_column(
            sa.Column("excluded", sa.Boolean, nullable=False, server_default=sa.false())
        )
    op.execute("UPDATE followups SET verify_due = due")
    with op.batch_alter_table("followup_events") as batch:
        for name, type_ in EVENT_COLUMNS:
            batch.add_column(sa.Column(name, type_))


def downgrade() -> None:
    with op.batch_alter_table("followup_events") as batch:
        for name, _ in EVENT_COLUMNS:
            batch.drop_column(name)
    with op.batch_alter_table("followups") as batch:
        batch.drop_column("excluded")
        for name, _, _ in ORDER_COLUMNS:
            batch.drop_column(name)
