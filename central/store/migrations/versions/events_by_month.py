"""PostgreSQL: events partitioned by month of utc (SQLite: unchanged).

The stored events are copied into a new partitioned table of the same name, one partition per
month they span (plus the DEFAULT partition), in the migration's one transaction; the primary
key becomes (gateway_id, seq, utc).

Revision ID: events_by_month
Revises: rollups_evaluated_folded
Create Date: 2026-12-07
"""

import datetime as dt

from alembic import op
from sqlalchemy import text

from central.store import partitions

revision = "events_by_month"
down_revision = "rollups_evaluated_folded"
branch_labels = None
depends_on = None

OLD = "events_unpartitioned"
INDEXES = {
    "ix_events_hall_kind_utc": "(hall_id, kind, utc)",
    "ix_events_utc": "(utc)",
}


def _partitioned() -> bool:
    return bool(
        op.get_bind()
        .execute(text("SELECT relkind = 'p' FROM pg_class WHERE oid = 'events'::regclass"))
        .scalar()
    )


def _rename_old() -> None:
    op.execute(f"ALTER TABLE events RENAME TO {OLD}")
    op.execute(f"ALTER TABLE {OLD} RENAME CONSTRAINT events_pkey TO {OLD}_pkey")
    op.execute(
        f"ALTER TABLE {OLD} RENAME CONSTRAINT events_gateway_id_fkey TO {OLD}_gateway_id_fkey"
    )
    for index in INDEXES:
        op.execute(f"ALTER INDEX {index} RENAME TO {index}_old")


def _finish_new(primary_key: str) -> None:
    op.execute(f"ALTER TABLE events ADD CONSTRAINT events_pkey PRIMARY KEY ({primary_key})")
    op.execute(
        "ALTER TABLE events ADD CONSTRAINT events_gateway_id_fkey"
        " FOREIGN KEY (gateway_id) REFERENCES gateways (gateway_id)"
    )
    for index, columns in INDEXES.items():
        op.execute(f"CREATE INDEX {index} ON events {columns}")


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name != "postgresql" or _partitioned():
        return
    _rename_old()
    op.execute(f"CREATE TABLE events (LIKE {OLD} INCLUDING DEFAULTS) PARTITION BY RANGE (utc)")
    op.execute(f"CREATE SCHEMA IF NOT EXISTS {partitions.SCHEMA}")
    op.execute(partitions.create_default("events"))
    months: list[dt.date] = list(
        bind.execute(
            text(f"SELECT DISTINCT date_trunc('month', utc AT TIME ZONE 'UTC')::date FROM {OLD}")
        ).scalars()
    )
    partitions.create_months_sync(bind, "events", months)
    # indexes after the copy: built once per partition instead of row by row
    op.execute(f"INSERT INTO events SELECT * FROM {OLD}")
    _finish_new("gateway_id, seq, utc")
    op.execute(f"DROP TABLE {OLD}")


def downgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name != "postgresql" or not _partitioned():
        return
    _rename_old()
    op.execute(f"CREATE TABLE events (LIKE {OLD} INCLUDING DEFAULTS)")
    op.execute(f"INSERT INTO events SELECT * FROM {OLD}")
    _finish_new("gateway_id, seq")
    op.execute(f"DROP TABLE {OLD} CASCADE")
