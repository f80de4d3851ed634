"""The registry of halls' version row: bumped by every registry write, read per request.

Revision ID: registry_version
Revises: halls_registry
Create Date: 2026-12-06
"""

import sqlalchemy as sa
from alembic import op

revision = "registry_version"
down_revision = "halls_registry"
branch_labels = None
depends_on = None


def upgrade() -> None:
    table = op.create_table(
        "registry_version",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("version", sa.BigInteger, nullable=False),
    )
    op.bulk_insert(table, [{"id": 1, "version": 0}])


def downgrade() -> None:
    op.drop_table("registry_version")
