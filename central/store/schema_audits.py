"""抽查: the monthly samples of finished cases, their tasks and the call-back records.

A sample is drawn once a month (its seed kept, so anyone can draw it again and compare); its
tasks are the cases drawn. Call-backs are records: a second call (the citizen did not answer the
first time) is a new row, the latest one counts, nothing is edited.
Migration ``audits`` creates them."""

from __future__ import annotations

from sqlalchemy import (
    Boolean,
    Column,
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

audit_samples = Table(
    "audit_samples",
    metadata,
    Column("month", String(7), primary_key=True, comment="YYYY-MM (Beijing)"),
    Column("seed", String(64), nullable=False),
    Column(
        "departments",
        JSONDoc,
        nullable=False,
        comment="department → {population, size, count, percent} as drawn",
    ),
    Column("drawn_at", UTCDateTime, nullable=False),
    Column("drawn_by", String(128), nullable=False),
)

audit_tasks = Table(
    "audit_tasks",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("month", String(7), ForeignKey("audit_samples.month"), nullable=False),
    Column("case_no", String(64), ForeignKey("cases.case_no"), nullable=False),
    Column("department", String(128), nullable=False),
    Column("hall_id", String(64), nullable=False),
    Column("position", Integer, nullable=False, comment="draw order within the department"),
    Column("case_revision", Integer, nullable=False, comment="the case revision drawn"),
    UniqueConstraint("month", "case_no", name="uq_audit_tasks_month_case"),
    Index("ix_audit_tasks_month_department", "month", "department"),
)

audit_callbacks = Table(
    "audit_callbacks",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("task_id", Integer, ForeignKey("audit_tasks.id"), nullable=False, index=True),
    Column("reached", Boolean, nullable=False),
    Column("handled", String(8), comment="yes | no | unsure: handled as recorded"),
    Column("timing", String(8), comment="… at the recorded time"),
    Column("evaluation", String(8), comment="… the recorded evaluation was theirs"),
    Column("satisfied", String(8), comment="… satisfied"),
    Column("note", Text, nullable=False),
    Column("discrepancies", JSONDoc, nullable=False, comment="where they contradict the record"),
    Column("entered_by", String(128), nullable=False),
    Column("entered_at", UTCDateTime, nullable=False),
)
