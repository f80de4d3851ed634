"""The dashboard's tables: login accounts, and supervisors' reviews of evaluation flags.

Accounts are the one mutable thing here (a password changes, an account is disabled). Reviews
are records: a supervisor's decision on a flag is a new row that points at the review it
replaces, never an edit; ``generation`` numbers the reviews of one flag so two supervisors
deciding at the same moment cannot both extend the same one.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
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
from central.store.types import UTCDateTime

users = Table(
    "users",
    metadata,
    Column("name", String(64), primary_key=True),
    Column(
        "password_hash", String(256), nullable=False, comment="scrypt$N$r$p$salt$digest (base64)"
    ),
    Column(
        "role",
        String(32),
        nullable=False,
        comment="supervisor | department_leader | hall_manager | technician",
    ),
    Column("hall_id", String(64), comment="hall_manager: the hall"),
    Column("department", String(128), comment="department_leader: the department"),
    Column("disabled", Boolean, nullable=False, default=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
)

# 复核: a supervisor confirms or dismisses one flag of one evaluation (evaluator.key event)
evaluation_reviews = Table(
    "evaluation_reviews",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("gateway_id", String(64), nullable=False),
    Column("seq", BigInteger, nullable=False, comment="gateway seq of the evaluator.key event"),
    Column("hall_id", String(64), nullable=False),
    Column("flag", String(64), nullable=False, comment="the flag reviewed, e.g. NO_SESSION"),
    Column("decision", String(16), nullable=False, comment="confirmed | dismissed"),
    Column("note", Text, nullable=False),
    Column(
        "generation",
        Integer,
        nullable=False,
        comment="1 for the first review of this flag, n + 1 for the one replacing n",
    ),
    Column(
        "supersedes",
        Integer,
        ForeignKey("evaluation_reviews.id"),
        comment="the review this one replaces",
    ),
    Column(
        "evaluation_version", Integer, comment="the correlation result version the reviewer saw"
    ),
    Column("reviewer", String(200), nullable=False),
    Column("reviewer_role", String(32), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    UniqueConstraint(
        "gateway_id", "seq", "flag", "generation", name="uq_evaluation_reviews_generation"
    ),
    Index("ix_evaluation_reviews_hall_created", "hall_id", "created_at"),
)

# 大屏 devices: a wall display enrolled once through a one-time link, then known by a long-lived
# cookie. Only hashes are stored; revoking ends the screen's next request and its live stream.
screens = Table(
    "screens",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("hall_id", String(64), comment="the subtree it shows; NULL: every hall"),
    Column("enroll_hash", String(64), unique=True, comment="sha256 of the one-time code"),
    Column("enroll_expires_at", UTCDateTime),
    Column("cookie_hash", String(64), unique=True, comment="sha256 of the screen's cookie"),
    Column("created_at", UTCDateTime, nullable=False),
    Column("enrolled_at", UTCDateTime),
    Column("revoked_at", UTCDateTime),
)
