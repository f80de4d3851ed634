"""Rollup rows per grouping (PostgreSQL: LIST partitions of ``grouping``), and the windows each
hall saw per month (``rollup_window_days``, both stores, filled from the window rollup rows).

On PostgreSQL the two rollup tables are copied into partitioned tables of the same name in the
migration's one transaction (plan for a copy of them: ~17 million rows for a year of 2,000
halls take minutes).

Revision ID: rollups_by_grouping
Revises: rollups_appeal_excluded
Create Date: 2026-12-07
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy import text

from central.store.schema_rollups import partition_statements

revision = "rollups_by_grouping"
down_revision = "rollups_appeal_excluded"
branch_labels = None
depends_on = None

TABLES = {  # table → its index on (grouping, day)
    "indicator_rollups": ("ix_indicator_rollups_grouping_day", "business_day"),
    "indicator_rollups_monthly": ("ix_indicator_rollups_monthly_grouping_month", "month"),
}


def _partitioned(table: str) -> bool:
    query = text(f"SELECT relkind = 'p' FROM pg_class WHERE oid = '{table}'::regclass")
    return bool(op.get_bind().execute(query).scalar())


def _copy(table: str, partitioned: bool) -> None:
    index, day = TABLES[table]
    old = f"{table}_old"
    op.execute(f"ALTER TABLE {table} RENAME TO {old}")
    op.execute(f"ALTER TABLE {old} RENAME CONSTRAINT {table}_pkey TO {old}_pkey")
    op.execute(f"ALTER INDEX {index} RENAME TO {index}_old")
    like = f"(LIKE {old} INCLUDING DEFAULTS INCLUDING COMMENTS)"
    if partitioned:
        op.execute(f"CREATE TABLE {table} {like} PARTITION BY LIST (grouping)")
        for statement in partition_statements(table):
            op.execute(statement)
    else:
        op.execute(f"CREATE TABLE {table} {like}")
    # keys and index after the copy: built once per partition instead of row by row
    op.execute(f"INSERT INTO {table} SELECT * FROM {old}")
    key = f'hall_id, {day}, grouping, department, "window", staff'
    op.execute(f"ALTER TABLE {table} ADD CONSTRAINT {table}_pkey PRIMARY KEY ({key})")
    op.execute(f"CREATE INDEX {index} ON {table} (grouping, {day})")
    op.execute(f"DROP TABLE {old}")


def _day_of_month() -> str:
    if op.get_bind().dialect.name == "postgresql":
        return "CAST(extract(day FROM business_day) AS integer)"
    return "CAST(strftime('%d', business_day) AS integer)"


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for table in TABLES:
            if not _partitioned(table):
                _copy(table, partitioned=True)
    op.create_table(
        "rollup_window_days",
        sa.Column("hall_id", sa.String(64), primary_key=True),
        sa.Column("month", sa.Date, primary_key=True, comment="first day of the month"),
        sa.Column("window", sa.String(16), primary_key=True),
        sa.Column(
            "department", sa.String(128), primary_key=True, comment="the roster's, '' if none"
        ),
        sa.Column("days", sa.Integer, nullable=False, comment="bit d-1 set: a window row on day d"),
    )
    op.create_index("ix_rollup_window_days_month", "rollup_window_days", ["month"])
    # one window row per hall, day and window: the sum of its days' bits is their union
    month = (
        "date_trunc('month', business_day)::date"
        if op.get_bind().dialect.name == "postgresql"
        else "date(business_day, 'start of month')"
    )
    op.execute(
        'INSERT INTO rollup_window_days (hall_id, month, "window", department, days) '
        f'SELECT hall_id, {month} AS m, "window", department, '
        f"sum(1 << ({_day_of_month()} - 1)) FROM indicator_rollups WHERE grouping = 'window' "
        'GROUP BY hall_id, m, "window", department'
    )


def downgrade() -> None:
    op.drop_index("ix_rollup_window_days_month", "rollup_window_days")
    op.drop_table("rollup_window_days")
    if op.get_bind().dialect.name == "postgresql":
        for table in TABLES:
            if _partitioned(table):
                _copy(table, partitioned=False)
