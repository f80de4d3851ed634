"""Join the eight lines that grew from 0001 and 0002_cases into one; changes no table.

Every later revision revises this one, so ``alembic heads`` shows one head and the code
upgrades to ``head``. The joined revisions keep their ids: deployed databases carry them.

Revision ID: merge_heads
Revises: 0003_case_ladder, dashboard, evidence, ingest_isolation, ledger_seals, ops_commands,
    session_next_start, token_expiry
Create Date: 2026-12-06
"""

revision = "merge_heads"
down_revision = (
    "0003_case_ladder",
    "dashboard",
    "evidence",
    "ingest_isolation",
    "ledger_seals",
    "ops_commands",
    "session_next_start",
    "token_expiry",
)
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
