"""Daily indicator rollups: per hall, business day and group (hall, department, window, staff)
the numerators and denominators of every additive indicator of central/rules/INDICATORS.md, so
dashboards over a month or a year sum rows instead of loading every fact.

Derived data: recomputed from the facts whenever the correlation job writes a hall-day
(``central.reporting.rollups``), rebuilt by ``hallwatch-central rollups rebuild``. An empty
department, window or staff field is a grouping that does not use it.
"""

from __future__ import annotations

from sqlalchemy import DDL, Column, Date, Float, Index, Integer, String, Table, event

from central.store.metadata import metadata

# (numerator, denominator) column pairs, named after the indicator's accumulator
PAIRS = (
    "on_time",
    "handling",
    "promise",
    "speedup",
    "early",
    "same_day",
    "satisfied",
    "wait",
    "no_show",
    "staffed",
    "covered",
)
BAD_KEYS = (3, 4, 5, 6)
APPEAL_EXCLUDED_COMMENT = "申诉核减: evaluations an upheld appeal took out of 满意率 and 差评"
GROUP_COLUMNS = ("grouping", "department", "window", "staff")
GROUPING_VALUES = ("hall", "department", "window", "staff")
# On PostgreSQL the rollup rows of each grouping are a table of their own (LIST partitions of
# ``grouping``, in this schema so the public one lists the tables the code names): a year by
# department reads the department rows' pages only, not every grouping's rows of those days.
SCHEMA = "rollup_groupings"


def partition_statements(table: str) -> list[str]:
    """The partitions of ``table`` (one per grouping); for create_all and the migration."""
    return [f"CREATE SCHEMA IF NOT EXISTS {SCHEMA}"] + [
        f"CREATE TABLE IF NOT EXISTS {SCHEMA}.{table}_{g} PARTITION OF {table} "
        f"FOR VALUES IN ('{g}')"
        for g in GROUPING_VALUES
    ]


def _group_columns() -> list[Column[str]]:
    return [
        Column(
            "grouping", String(16), primary_key=True, comment="hall | department | window | staff"
        ),
        Column("department", String(128), primary_key=True, comment="'' when not grouped by it"),
        Column("window", String(16), primary_key=True),
        Column("staff", String(16), primary_key=True),
    ]


def _value_columns() -> list[Column[float] | Column[int]]:
    return [
        *(Column(f"{p}_{side}", Float, nullable=False) for p in PAIRS for side in ("n", "d")),
        Column("overdue_completed", Integer, nullable=False),
        *(Column(f"bad_{k}", Integer, nullable=False) for k in BAD_KEYS),
        Column(
            "evaluated",
            Integer,
            nullable=False,
            server_default="0",
            comment="评价率's numerator: cases accepted that day and evaluated on it (the rest "
            "stay in rollup_evaluated)",
        ),
        Column(
            "appeal_excluded",
            Integer,
            nullable=False,
            server_default="0",
            comment=APPEAL_EXCLUDED_COMMENT,
        ),
    ]


def _rollup_table(name: str, day: str) -> Table:
    """A rollup table keyed by hall, ``day`` and group; one table per grouping on PostgreSQL."""
    table = Table(
        name,
        metadata,
        Column("hall_id", String(64), primary_key=True),
        Column(day, Date, primary_key=True),
        *_group_columns(),
        *_value_columns(),
        Index(f"ix_{name}_grouping_{day.removeprefix('business_')}", "grouping", day),
        postgresql_partition_by="LIST (grouping)",
    )
    for statement in partition_statements(name):
        ddl = DDL(statement)  # type: ignore[no-untyped-call]  # untyped in SQLAlchemy
        event.listen(table, "after_create", ddl.execute_if(dialect="postgresql"))
    return table


indicator_rollups = _rollup_table("indicator_rollups", "business_day")
# the same summed per calendar month (``month`` its first day): a year is twelve rows a group
indicator_rollups_monthly = _rollup_table("indicator_rollups_monthly", "month")

# 在岗率覆盖's denominator counts every window a range saw in a hall: per hall and month, the
# windows of its window rollup rows (with their roster department) and the days of the month
# they had a row, as bits (bit d-1 for day d). A year's window set is ~13 small rows per window
# instead of the window rows of every day.
rollup_window_days = Table(
    "rollup_window_days",
    metadata,
    Column("hall_id", String(64), primary_key=True),
    Column("month", Date, primary_key=True, comment="first day of the month"),
    Column("window", String(16), primary_key=True),
    Column("department", String(128), primary_key=True, comment="the roster's, '' if none"),
    Column("days", Integer, nullable=False, comment="bit d-1 set: a window row on day d"),
    Index("ix_rollup_window_days_month", "month"),
)

# 评价率's numerator: cases accepted on a day, by the nearest days around it on which a counted
# evaluation covered them (a case counts in a range that holds one of those days). A case with
# an evaluation on its acceptance day counts in every range holding that day: it is folded into
# the day's indicator_rollups row (``evaluated``) and is here only while that row is missing.
rollup_evaluated = Table(
    "rollup_evaluated",
    metadata,
    Column("hall_id", String(64), nullable=False),
    Column("accepted_day", Date, nullable=False),
    Column("grouping", String(16), nullable=False),
    Column("department", String(128), nullable=False),
    Column("window", String(16), nullable=False),
    Column("staff", String(16), nullable=False),
    Column("before_day", Date, comment="last evaluation day before the acceptance day"),
    Column("after_day", Date, comment="first evaluation day on or after the acceptance day"),
    Column("cases", Integer, nullable=False),
    Index("ix_rollup_evaluated_hall_day", "hall_id", "accepted_day"),
    Index("ix_rollup_evaluated_grouping_day", "grouping", "accepted_day"),
)

# the same per month, for ranges that hold the whole month: an evaluation day inside the month
# is then inside the range too, so it is kept as the month's first (before) or last (after) day
rollup_evaluated_monthly = Table(
    "rollup_evaluated_monthly",
    metadata,
    Column("hall_id", String(64), nullable=False),
    Column("month", Date, nullable=False),
    Column("grouping", String(16), nullable=False),
    Column("department", String(128), nullable=False),
    Column("window", String(16), nullable=False),
    Column("staff", String(16), nullable=False),
    Column("before_day", Date),
    Column("after_day", Date),
    Column("cases", Integer, nullable=False),
    Index("ix_rollup_evaluated_monthly_hall_month", "hall_id", "month"),
    Index("ix_rollup_evaluated_monthly_grouping_month", "grouping", "month"),
)

# which cases a hall-day's counted evaluations covered: finds a case's evaluation days without
# reading every result
rollup_case_evaluations = Table(
    "rollup_case_evaluations",
    metadata,
    Column("hall_id", String(64), primary_key=True),
    Column("business_day", Date, primary_key=True),
    Column("case_no", String(64), primary_key=True),
    Index("ix_rollup_case_evaluations_case_no", "case_no"),
)
