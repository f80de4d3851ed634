"""Service sessions, presence, correlation results (versioned), follow-up, hall setups.

Revision ID: 0003_correlation
Revises: 0002_cases
Create Date: 2026-11-21
"""

import sqlalchemy as sa
from alembic import op

from central.store.types import JSONDoc, UTCDateTime

revision = "0003_correlation"
down_revision = "0002_cases"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "correlation_event_days",
        sa.Column("gateway_id", sa.String(64), primary_key=True),
        sa.Column("seq", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("hall_id", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(64), nullable=False),
        sa.Column("business_day", sa.Date, nullable=False),
        sa.Column("at", UTCDateTime, nullable=False, comment="corrected gateway time"),
        sa.Column(
            "time_source", sa.String(16), nullable=False, comment="synced | repaired | unsynced"
        ),
    )
    op.create_index(
        "ix_correlation_event_days_hall_day", "correlation_event_days", ["hall_id", "business_day"]
    )
    op.create_table(
        "correlation_dirty",
        sa.Column("hall_id", sa.String(64), primary_key=True),
        sa.Column("business_day", sa.Date, primary_key=True),
        sa.Column("marked_at", UTCDateTime, nullable=False),
    )
    op.create_table(
        "correlation_case_seen",
        sa.Column("case_no", sa.String(64), primary_key=True),
        sa.Column("revision", sa.Integer, nullable=False),
    )
    op.create_table(
        "correlation_state",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("value", JSONDoc, nullable=False),
    )
    op.create_table(
        "correlation_days",
        sa.Column("hall_id", sa.String(64), primary_key=True),
        sa.Column("business_day", sa.Date, primary_key=True),
        sa.Column("run_at", UTCDateTime, nullable=False),
        sa.Column("sessions", sa.Integer, nullable=False),
        sa.Column("evaluations", sa.Integer, nullable=False),
        sa.Column("new_versions", sa.Integer, nullable=False),
    )
    op.create_table(
        "service_sessions",
        sa.Column(
            "session_id", sa.String(160), primary_key=True, comment="gateway:seq of its first event"
        ),
        sa.Column("hall_id", sa.String(64), nullable=False),
        sa.Column("business_day", sa.Date, nullable=False),
        sa.Column("ticket", sa.String(32), nullable=False),
        sa.Column("service", sa.String(32)),
        sa.Column("window", sa.Integer),
        sa.Column("staff", sa.String(6)),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("queued_at", UTCDateTime),
        sa.Column("called_at", UTCDateTime),
        sa.Column("started_at", UTCDateTime),
        sa.Column("ended_at", UTCDateTime),
        sa.Column("next_call_at", UTCDateTime, comment="next ticket called at the same window"),
        sa.Column(
            "machine_times", JSONDoc, nullable=False, comment="the queue machine's own clock"
        ),
        sa.Column("recalls", sa.Integer, nullable=False),
        sa.Column("finish_mseq", sa.Integer),
        sa.Column("case_nos", JSONDoc, nullable=False),
    )
    op.create_index("ix_service_sessions_hall_day", "service_sessions", ["hall_id", "business_day"])
    op.create_table(
        "presence_periods",
        sa.Column("hall_id", sa.String(64), primary_key=True),
        sa.Column("window", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("staff", sa.String(6), primary_key=True),
        sa.Column("start", UTCDateTime, primary_key=True),
        sa.Column("business_day", sa.Date, nullable=False),
        sa.Column("end", UTCDateTime, nullable=False),
        sa.Column("opened_by", sa.String(16), nullable=False, comment="LI | RS | activity"),
        sa.Column(
            "closed_by", sa.String(16), nullable=False, comment="LO | PS | moved | end_of_data"
        ),
    )
    op.create_index("ix_presence_periods_hall_day", "presence_periods", ["hall_id", "business_day"])
    op.create_table(
        "correlation_results",
        sa.Column("gateway_id", sa.String(64), primary_key=True),
        sa.Column("seq", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("version", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("supersedes", sa.Integer, comment="the version this one replaces"),
        sa.Column("hall_id", sa.String(64), nullable=False),
        sa.Column("business_day", sa.Date, nullable=False),
        sa.Column("window", sa.Integer, nullable=False),
        sa.Column("addr", sa.Integer, nullable=False),
        sa.Column("dev_seq", sa.Integer, nullable=False),
        sa.Column("key", sa.Integer, nullable=False),
        sa.Column("evaluated_at", UTCDateTime, nullable=False),
        sa.Column("time_source", sa.String(16), nullable=False),
        sa.Column("session_id", sa.String(160)),
        sa.Column("ticket", sa.String(32)),
        sa.Column("staff", sa.String(6)),
        sa.Column("case_nos", JSONDoc, nullable=False),
        sa.Column("confidence", sa.Float, nullable=False),
        sa.Column("flags", JSONDoc, nullable=False),
        sa.Column("counted", sa.Boolean, nullable=False),
        sa.Column("basis", sa.String(32), nullable=False),
        sa.Column("citizen", sa.String(16), comment="camera verdict: present | absent | unknown"),
        sa.Column("computed_at", UTCDateTime, nullable=False),
        sa.Column(
            "digest", sa.String(64), nullable=False, comment="sha256 over content + previous digest"
        ),
    )
    op.create_index(
        "ix_correlation_results_hall_day", "correlation_results", ["hall_id", "business_day"]
    )
    op.create_index("ix_correlation_results_session", "correlation_results", ["session_id"])
    op.create_table(
        "correlation_heads",
        sa.Column("gateway_id", sa.String(64), primary_key=True),
        sa.Column("seq", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("hall_id", sa.String(64), nullable=False),
        sa.Column("business_day", sa.Date, nullable=False),
    )
    op.create_index(
        "ix_correlation_heads_hall_day", "correlation_heads", ["hall_id", "business_day"]
    )
    op.create_table(
        "correlation_case_links",
        sa.Column("gateway_id", sa.String(64), primary_key=True),
        sa.Column("seq", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("version", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("case_no", sa.String(64), primary_key=True),
    )
    op.create_index("ix_correlation_case_links_case", "correlation_case_links", ["case_no"])
    op.create_table(
        "correlation_reissues",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("gateway_id", sa.String(64), nullable=False),
        sa.Column("seq", sa.BigInteger, nullable=False),
        sa.Column("from_version", sa.Integer, nullable=False),
        sa.Column("to_version", sa.Integer, nullable=False),
        sa.Column("hall_id", sa.String(64), nullable=False),
        sa.Column("business_day", sa.Date, nullable=False),
        sa.Column("changed", JSONDoc, nullable=False, comment="names of the fields that changed"),
        sa.Column("reissued_at", UTCDateTime, nullable=False),
    )
    op.create_index("ix_correlation_reissues_reissued_at", "correlation_reissues", ["reissued_at"])
    op.create_table(
        "followups",
        sa.Column("item_id", sa.String(160), primary_key=True),
        sa.Column("gateway_id", sa.String(64), nullable=False),
        sa.Column("seq", sa.BigInteger, nullable=False),
        sa.Column("evaluation_version", sa.Integer, nullable=False),
        sa.Column("reason", sa.Integer, nullable=False, comment="evaluator key 3–6"),
        sa.Column("hall_id", sa.String(64), nullable=False),
        sa.Column("window", sa.Integer, nullable=False),
        sa.Column("staff", sa.String(6)),
        sa.Column("case_no", sa.String(64)),
        sa.Column("department", sa.String(128)),
        sa.Column("evaluated_at", UTCDateTime, nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("due", sa.Date, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("updated_at", UTCDateTime, nullable=False),
        sa.Column("assignee", sa.String(128)),
        sa.Column("founded", sa.Boolean),
        sa.Column("escalation_level", sa.Integer, nullable=False),
        sa.Column("closed_at", UTCDateTime),
    )
    op.create_index("ix_followups_evaluation", "followups", ["gateway_id", "seq"], unique=True)
    op.create_index("ix_followups_hall_state", "followups", ["hall_id", "state"])
    op.create_table(
        "followup_events",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("item_id", sa.String(160), sa.ForeignKey("followups.item_id"), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("at", UTCDateTime, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("actor", sa.String(200)),
        sa.Column("note", sa.Text, nullable=False),
        sa.Column("level", sa.Integer),
        sa.Column("assignee", sa.String(128)),
        sa.Column("founded", sa.Boolean),
        sa.Column("recorded_at", UTCDateTime, nullable=False),
    )
    op.create_index("ix_followup_events_item_id", "followup_events", ["item_id"])
    op.create_table(
        "hall_setups",
        sa.Column("hall_id", sa.String(64), primary_key=True),
        sa.Column("setup", JSONDoc, nullable=False),
        sa.Column("updated_at", UTCDateTime, nullable=False),
    )


def downgrade() -> None:
    for name in (
        "hall_setups",
        "followup_events",
        "followups",
        "correlation_reissues",
        "correlation_case_links",
        "correlation_heads",
        "correlation_results",
        "presence_periods",
        "service_sessions",
        "correlation_days",
        "correlation_state",
        "correlation_case_seen",
        "correlation_dirty",
        "correlation_event_days",
    ):
        op.drop_table(name)
