"""Events without the foreign key to gateways on PostgreSQL (SQLite keeps it).

On PostgreSQL the key is checked by a trigger for every row, which cost as much CPU as the rest
of the COPY of a 50,000-event backlog (docs/province.md#peer-drain). The ingest already reads
and locks the gateway's row, and refuses an unregistered gateway, in the transaction that
stores its events; gateways are revoked, never deleted. On a partitioned ``events`` the drop
reaches every partition.

Revision ID: events_fk_sqlite_only
Revises: bridge_links
Create Date: 2026-12-07
"""

from alembic import op

revision = "events_fk_sqlite_only"
down_revision = "bridge_links"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE events DROP CONSTRAINT IF EXISTS events_gateway_id_fkey")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            "ALTER TABLE events ADD CONSTRAINT events_gateway_id_fkey"
            " FOREIGN KEY (gateway_id) REFERENCES gateways (gateway_id)"
        )
