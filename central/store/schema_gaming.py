"""Tables of gaming detection (issue 17): anomaly cases, supervisors' decisions on them, and
the work queues of hall-periods the detector runs over.

A case is opened once per fingerprint (pattern, subject, period and the evidence's refs), so
re-running the detector over the same facts opens nothing new. Decisions are records: append
only, ``generation`` numbering the decisions of one case; a case's status is its latest
decision (open while it has none). A dismissed fingerprint never reopens: the case row stays.
"""

from __future__ import annotations

from sqlalchemy import (
    Column,
    Date,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Table,
    Text,
    UniqueConstraint,
)

from central.store.metadata import metadata
from central.store.types import JSONDoc, UTCDateTime

anomaly_cases = Table(
    "anomaly_cases",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("fingerprint", String(64), nullable=False, unique=True),
    Column("pattern", String(48), nullable=False),
    Column("hall_id", String(64), nullable=False),
    Column("window", Integer),
    Column("staff", String(6)),
    Column("period_start", Date, nullable=False),
    Column("period_end", Date, nullable=False),
    Column("period_kind", String(8), nullable=False, comment="day | week"),
    Column("p_value", Float),
    Column("effect", Float, nullable=False),
    Column("effect_name", String(64), nullable=False),
    Column("method", Text, nullable=False, comment="the test, in words"),
    Column("summary", Text, nullable=False),
    Column("evidence", JSONDoc, nullable=False, comment="press refs, timings, baseline, ..."),
    Column("opened_at", UTCDateTime, nullable=False),
    Index("ix_anomaly_cases_hall_period", "hall_id", "period_start"),
)

anomaly_decisions = Table(
    "anomaly_decisions",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("case_id", Integer, ForeignKey("anomaly_cases.id"), nullable=False),
    Column("generation", Integer, nullable=False, comment="1, then n + 1 for each later one"),
    Column("decision", String(16), nullable=False, comment="confirmed | dismissed"),
    Column("note", Text, nullable=False),
    Column("decided_by", String(200), nullable=False),
    Column("decider_role", String(32), nullable=False),
    Column("decided_at", UTCDateTime, nullable=False),
    UniqueConstraint("case_id", "generation", name="uq_anomaly_decisions_generation"),
)


def _period_queue(name: str, comment: str) -> Table:
    """Same shape as ``correlation_dirty``, so ``central.correlation.workqueue`` serves it."""
    return Table(
        name,
        metadata,
        Column("hall_id", String(64), primary_key=True),
        Column("business_day", Date, primary_key=True, comment=comment),
        Column("marked_at", UTCDateTime, nullable=False),
        Column("generation", Integer, nullable=False, server_default="1"),
        Column("claimed_by", String(128)),
        Column("lease_until", UTCDateTime),
        Index(f"ix_{name}_lease", "lease_until"),
    )


anomaly_day_queue = _period_queue("anomaly_day_queue", "the day to detect over")
anomaly_week_queue = _period_queue("anomaly_week_queue", "the Monday of the ISO week")
