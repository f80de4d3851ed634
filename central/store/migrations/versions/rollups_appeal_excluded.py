"""申诉核减 in the rollup rows: evaluations an upheld 差评 appeal took out of 满意率 and the 差评
counts. Existing rows start at 0; ``hallwatch-central rollups rebuild`` fills them.

Revision ID: rollups_appeal_excluded
Revises: complaints
Create Date: 2026-12-07
"""

import sqlalchemy as sa
from alembic import op

revision = "rollups_appeal_excluded"
down_revision = "complaints"
branch_labels = None
depends_on = None

COMMENT = "申诉核减: evaluations an upheld appeal took out of 满意率 and 差评"


def upgrade() -> None:
    for table in ("indicator_rollups", "indicator_rollups_monthly"):
        op.add_column(
            table,
            sa.Column(
                "appeal_excluded", sa.Integer, nullable=False, server_default="0", comment=COMMENT
            ),
        )


def downgrade() -> None:
    for table in ("indicator_rollups", "indicator_rollups_monthly"):
        op.drop_column(table, "appeal_excluded")
