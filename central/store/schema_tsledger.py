"""Tables of the time-series sink and of the ledger (tamper-evident record chains).

``ledger_entries`` is append-only: one entry per evaluation record (an ``evaluator.key`` event),
per case revision and per case state, in one hash chain per hall and business day. The
``*_progress`` tables are the two jobs' watermarks; they are the only rows either job updates.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, Date, Index, Integer, String, Table

from central.store.metadata import metadata
from central.store.schema import case_revisions
from central.store.types import UTCDateTime

# how far the time-series sink has written each gateway's events (seq ≤ through_seq are written);
# the row of gateway id "*" (never a real id) holds the last sampling slot of the gateway gauges
timeseries_progress = Table(
    "timeseries_progress",
    metadata,
    Column("gateway_id", String(64), primary_key=True),
    Column("through_seq", BigInteger, nullable=False),
    Column("written_at", UTCDateTime, nullable=False),
)

ledger_entries = Table(
    "ledger_entries",
    metadata,
    Column("hall_id", String(64), primary_key=True),
    Column("day", Date, primary_key=True, comment="business day (Asia/Shanghai) of entry"),
    Column("position", Integer, primary_key=True, autoincrement=False, comment="1, 2, 3, …"),
    Column("record", String(16), nullable=False, comment="evaluation | case_revision | case"),
    Column("ref", String(64), nullable=False, comment="gateway id or case number"),
    Column("ref_no", BigInteger, nullable=False, comment="event seq or case revision"),
    Column("row_hash", String(64), nullable=False),
    Column("chain_hash", String(64), nullable=False),
    Column("entered_at", UTCDateTime, nullable=False),
    Index("ux_ledger_entries_record", "record", "ref", "ref_no", unique=True),
)

# the ledger job's watermarks: per gateway the event seq it has chained through ("events",
# gateway id); for case revisions the newest received_at it has seen ("case_revisions", "")
ledger_progress = Table(
    "ledger_progress",
    metadata,
    Column("source", String(32), primary_key=True),
    Column("ref", String(64), primary_key=True),
    Column("through_seq", BigInteger, nullable=False, default=0),
    Column("through_at", UTCDateTime),
)

# each chain's head as the ledger job sealed it every few minutes (ledger.seal_every_s), also
# appended to a file outside the database: a rewrite of today's chain no longer matches it
ledger_seals = Table(
    "ledger_seals",
    metadata,
    Column("hall_id", String(64), primary_key=True),
    Column("day", Date, primary_key=True, comment="business day of the chain"),
    Column(
        "entries",
        Integer,
        primary_key=True,
        autoincrement=False,
        comment="the chain's length when sealed",
    ),
    Column("head", String(64), nullable=False, comment="chain hash of entry number 'entries'"),
    Column("sealed_at", UTCDateTime, nullable=False),
)

# the ledger job finds new case revisions by received_at (the table's key is the case number)
Index("ix_case_revisions_received_at", case_revisions.c.received_at)
