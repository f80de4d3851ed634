"""The ladder's tables for cases (办件): the steps as they happened, and where each case stands.

Defined on central's one ``metadata`` (``central.store.metadata``);
migration ``0003_case_ladder`` creates them."""

from __future__ import annotations

from sqlalchemy import Boolean, Column, Date, ForeignKey, Index, Integer, String, Table

from central.store.metadata import metadata
from central.store.schema import cases
from central.store.types import UTCDateTime

# Append-only: one row per ladder step (蓝灯 → 黄灯 → 红灯 → 黄牌 → 红牌 → 监察建议书, 暂停计时,
# 按时/超时办结) when the ladder job first sees it. The key makes re-running a day a no-op.
case_steps = Table(
    "case_steps",
    metadata,
    Column("case_no", String(64), ForeignKey("cases.case_no"), primary_key=True),
    Column("at", UTCDateTime, primary_key=True, comment="when the case entered the stage"),
    Column("stage", String(32), primary_key=True, comment="LadderStage value"),
    Column("on_date", Date, nullable=False, comment="business date (Asia/Shanghai) of at"),
    Column(
        "days_over",
        Integer,
        nullable=False,
        comment="counted working days − limit when it happened",
    ),
    Column("revision", Integer, nullable=False, comment="case revision it was derived from"),
    Column("recorded_at", UTCDateTime, nullable=False),
    Index("ix_case_steps_on_date_stage", "on_date", "stage"),
)

# Where each case stands as of the ladder job's last run (a projection, rewritten by the job):
# what the case list filters on (stage, overdue) and what tells the job which cases are done.
case_ladder = Table(
    "case_ladder",
    metadata,
    Column("case_no", String(64), ForeignKey("cases.case_no"), primary_key=True),
    Column("revision", Integer, nullable=False, comment="case revision the stage is for"),
    Column("rules_digest", String(16), nullable=False, comment="calendar + thresholds used"),
    Column("as_of", Date, nullable=False, comment="business date the stage is for"),
    Column("stage", String(32), comment="LadderStage value; NULL once withdrawn (撤件)"),
    Column("deadline", Date, comment="NULL while the clock is stopped"),
    Column("days_over", Integer, comment="counted working days − limit on as_of"),
    Column("overdue", Boolean, nullable=False),
    Column("settled", Boolean, nullable=False, comment="completed or withdrawn: nothing to add"),
    Column("updated_at", UTCDateTime, nullable=False),
    Index("ix_case_ladder_stage", "stage"),
    Index("ix_case_ladder_open", "settled", "as_of"),  # the nightly run's open cases
)

# the ladder job's every-few-minutes run: cases created or revised since its last run
Index("ix_cases_received_at", cases.c.received_at)
# the cases open at a range's end (超时未办结 over the rollups): open now or completed after it
Index("ix_cases_completed_at", cases.c.completed_at)
