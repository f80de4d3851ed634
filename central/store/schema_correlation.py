"""Tables of service sessions, evaluation correlation, bad-review follow-up and hall setups.

Correlation results are records: append-only, one version per change, each pointing at the one
it supersedes and hash-chained to it. Sessions, presence periods and event times are a derived
index, rebuilt from the (append-only) events whenever their hall-day is recomputed.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Date,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Table,
    Text,
    false,
)

from central.store.metadata import metadata
from central.store.types import JSONDoc, UTCDateTime

# The corrected time and business day of every event correlation reads (queue, evaluator,
# camera verdicts). Updated when a boot's clock offset becomes known after the fact.
correlation_event_days = Table(
    "correlation_event_days",
    metadata,
    Column("gateway_id", String(64), primary_key=True),
    Column("seq", BigInteger, primary_key=True, autoincrement=False),
    Column("hall_id", String(64), nullable=False),
    Column("kind", String(64), nullable=False),
    Column("business_day", Date, nullable=False),
    Column("at", UTCDateTime, nullable=False, comment="corrected gateway time"),
    Column(
        "time_source",
        String(16),
        nullable=False,
        comment="synced | repaired | unsynced | machine_offset",
    ),
    Index("ix_correlation_event_days_hall_day", "hall_id", "business_day"),
)

# The work queue of correlation: (hall, business day) pairs with new input since they were last
# correlated. New input bumps ``generation`` (one row per hall-day however many arrivals); a
# worker claims rows with a lease and deletes one only if its generation is still the one it
# computed.
correlation_dirty = Table(
    "correlation_dirty",
    metadata,
    Column("hall_id", String(64), primary_key=True),
    Column("business_day", Date, primary_key=True),
    Column("marked_at", UTCDateTime, nullable=False, comment="dirty since"),
    Column(
        "generation",
        Integer,
        nullable=False,
        server_default="1",
        comment="bumped by each new input; a recompute clears only the generation it read",
    ),
    Column("claimed_by", String(128), comment="the worker computing it"),
    Column("lease_until", UTCDateTime, comment="free for another worker after this"),
    Index("ix_correlation_dirty_lease", "lease_until"),
)

# the case revision each case was last scanned at (a re-scan of the overlap skips it)
correlation_case_seen = Table(
    "correlation_case_seen",
    metadata,
    Column("case_no", String(64), primary_key=True),
    Column("revision", Integer, nullable=False),
)

# job bookkeeping: the received_at watermark of the last scan, keyed by name
correlation_state = Table(
    "correlation_state",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("value", JSONDoc, nullable=False),
)

# one row per correlated hall-day: when and what the last run found
correlation_days = Table(
    "correlation_days",
    metadata,
    Column("hall_id", String(64), primary_key=True),
    Column("business_day", Date, primary_key=True),
    Column("run_at", UTCDateTime, nullable=False),
    Column("sessions", Integer, nullable=False),
    Column("evaluations", Integer, nullable=False),
    Column("new_versions", Integer, nullable=False),
    Column("reporting", JSONDoc, comment="[[start, end], …] the queue feed reported (UTC ISO)"),
    Column("runs", Integer, nullable=False, server_default="1", comment="times computed"),
)

service_sessions = Table(
    "service_sessions",
    metadata,
    Column("session_id", String(160), primary_key=True, comment="gateway:seq of its first event"),
    Column("hall_id", String(64), nullable=False),
    Column("business_day", Date, nullable=False),
    Column("ticket", String(32), nullable=False),
    Column("service", String(32)),
    Column("window", Integer),
    Column("staff", String(6)),
    Column("outcome", String(16), nullable=False),
    Column("queued_at", UTCDateTime),
    Column("called_at", UTCDateTime),
    Column("started_at", UTCDateTime),
    Column("ended_at", UTCDateTime),
    Column("next_call_at", UTCDateTime, comment="next ticket called at the same window"),
    Column("machine_times", JSONDoc, nullable=False, comment="the queue machine's own clock"),
    Column("time_sources", JSONDoc, comment="stage → receive | machine_offset"),
    Column(
        "next_start_at",
        UTCDateTime,
        comment="the next session at the same window started: LATE from then on",
    ),
    Column("recalls", Integer, nullable=False),
    Column("finish_mseq", Integer),
    Column("case_nos", JSONDoc, nullable=False),
    Index("ix_service_sessions_hall_day", "hall_id", "business_day"),
)

presence_periods = Table(
    "presence_periods",
    metadata,
    Column("hall_id", String(64), primary_key=True),
    Column("window", Integer, primary_key=True, autoincrement=False),
    Column("staff", String(6), primary_key=True),
    Column("start", UTCDateTime, primary_key=True),
    Column("business_day", Date, nullable=False),
    Column("end", UTCDateTime, nullable=False),
    Column("opened_by", String(16), nullable=False, comment="LI | RS | activity"),
    Column("closed_by", String(16), nullable=False, comment="LO | PS | moved | end_of_data"),
    Index("ix_presence_periods_hall_day", "hall_id", "business_day"),
)

correlation_results = Table(
    "correlation_results",
    metadata,
    Column("gateway_id", String(64), primary_key=True),
    Column("seq", BigInteger, primary_key=True, autoincrement=False),
    Column("version", Integer, primary_key=True, autoincrement=False),
    Column("supersedes", Integer, comment="the version this one replaces"),
    Column("hall_id", String(64), nullable=False),
    Column("business_day", Date, nullable=False),
    Column("window", Integer, nullable=False),
    Column("addr", Integer, nullable=False),
    Column("dev_seq", Integer, nullable=False),
    Column("key", Integer, nullable=False),
    Column("evaluated_at", UTCDateTime, nullable=False),
    Column("time_source", String(16), nullable=False),
    Column("session_id", String(160)),
    Column("ticket", String(32)),
    Column("staff", String(6)),
    Column("case_nos", JSONDoc, nullable=False),
    Column("confidence", Float, nullable=False),
    Column("flags", JSONDoc, nullable=False),
    Column("counted", Boolean, nullable=False),
    Column("basis", String(32), nullable=False),
    Column("citizen", String(16), comment="camera verdict: present | absent | unknown"),
    Column("computed_at", UTCDateTime, nullable=False),
    Column("digest", String(64), nullable=False, comment="sha256 over content + previous digest"),
    Index("ix_correlation_results_hall_day", "hall_id", "business_day"),
    Index("ix_correlation_results_session", "session_id"),
)

# which version is current (the only mutable correlation table: a pointer, never a result)
correlation_heads = Table(
    "correlation_heads",
    metadata,
    Column("gateway_id", String(64), primary_key=True),
    Column("seq", BigInteger, primary_key=True, autoincrement=False),
    Column("version", Integer, nullable=False),
    Column("hall_id", String(64), nullable=False),
    Column("business_day", Date, nullable=False),
    Index("ix_correlation_heads_hall_day", "hall_id", "business_day"),
    Index("ix_correlation_heads_day", "business_day"),  # the 大屏's every-hall day figures
)

correlation_case_links = Table(
    "correlation_case_links",
    metadata,
    Column("gateway_id", String(64), primary_key=True),
    Column("seq", BigInteger, primary_key=True, autoincrement=False),
    Column("version", Integer, primary_key=True, autoincrement=False),
    Column("case_no", String(64), primary_key=True),
    Index("ix_correlation_case_links_case", "case_no"),
)

correlation_reissues = Table(
    "correlation_reissues",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("gateway_id", String(64), nullable=False),
    Column("seq", BigInteger, nullable=False),
    Column("from_version", Integer, nullable=False),
    Column("to_version", Integer, nullable=False),
    Column("hall_id", String(64), nullable=False),
    Column("business_day", Date, nullable=False),
    Column("changed", JSONDoc, nullable=False, comment="names of the fields that changed"),
    Column("reissued_at", UTCDateTime, nullable=False),
    Index("ix_correlation_reissues_reissued_at", "reissued_at"),
)

# 差评整改: the item's current state (mutable, like a case's status); its history is
# followup_events (append-only)
followups = Table(
    "followups",
    metadata,
    Column("item_id", String(160), primary_key=True),
    Column("gateway_id", String(64), nullable=False),
    Column("seq", BigInteger, nullable=False),
    Column("evaluation_version", Integer, nullable=False),
    Column("reason", Integer, nullable=False, comment="evaluator key 3–6"),
    Column("hall_id", String(64), nullable=False),
    Column("window", Integer, nullable=False),
    Column("staff", String(6)),
    Column("case_no", String(64)),
    Column("department", String(128)),
    Column("evaluated_at", UTCDateTime, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("due", Date, nullable=False),
    Column("state", String(16), nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    Column("assignee", String(128)),
    Column("founded", Boolean),
    Column("escalation_level", Integer, nullable=False),
    Column("closed_at", UTCDateTime),
    # 差评 work order: the rating that opened it, per-stage deadlines and ends, appeal, 回访
    Column("level", Integer, comment="national level 1–2 under the mapping version"),
    Column("tag", String(16), comment="差评原因 tag"),
    Column("mapping_version", String(32)),
    Column("stage_days", JSONDoc, comment="working days per stage when it opened"),
    Column("verify_due", Date),
    Column("rectify_due", Date),
    Column("call_back_due", Date),
    Column("verified_at", UTCDateTime),
    Column("rectified_at", UTCDateTime),
    Column("called_back_at", UTCDateTime),
    Column("answer", String(16), comment="the citizen's answer at 回访"),
    Column("appeal_ground", String(16)),
    Column("appeal_evidence", String(64), comment="sha256 in the evidence vault"),
    Column("appeal_upheld", Boolean),
    Column("excluded", Boolean, nullable=False, server_default=false()),
    Index("ix_followups_evaluation", "gateway_id", "seq", unique=True),
    Index("ix_followups_hall_state", "hall_id", "state"),
)

followup_events = Table(
    "followup_events",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("item_id", String(160), ForeignKey("followups.item_id"), nullable=False, index=True),
    Column("kind", String(32), nullable=False),
    Column("at", UTCDateTime, nullable=False),
    Column("state", String(16), nullable=False),
    Column("actor", String(200)),
    Column("note", Text, nullable=False),
    Column("level", Integer),
    Column("assignee", String(128)),
    Column("founded", Boolean),
    Column("recorded_at", UTCDateTime, nullable=False),
    Column("stage", String(16)),
    Column("ground", String(16)),
    Column("evidence_sha256", String(64)),
    Column("answer", String(16)),
)

# a hall's opening hours and window → department roster (central.rules.indicators.HallSetup)
hall_setups = Table(
    "hall_setups",
    metadata,
    Column("hall_id", String(64), primary_key=True),
    Column("setup", JSONDoc, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
)
