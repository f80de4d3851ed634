"""API tokens expire (api_tokens.expires_at); tokens made before stay valid until revoked.

Revision ID: token_expiry
Revises: 0002_cases
Create Date: 2026-12-06
"""

import sqlalchemy as sa
from alembic import op

from central.store.types import UTCDateTime

revision = "token_expiry"
down_revision = "0002_cases"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("api_tokens", sa.Column("expires_at", UTCDateTime))


def downgrade() -> None:
    with op.batch_alter_table("api_tokens") as batch:
        batch.drop_column("expires_at")
