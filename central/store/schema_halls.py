"""The registry of halls: each hall's name, its place in the province → city → county →
township tree, its region code (行政区划代码), address and opening hours.

A hall is a place people manage, so this table is mutable (a hall moves, is renamed); what
happened in it stays in the append-only records, keyed by the hall id.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, Index, Integer, String, Table, Text

from central.store.metadata import metadata
from central.store.types import UTCDateTime

halls = Table(
    "halls",
    metadata,
    Column("hall_id", String(64), primary_key=True),
    Column("name", String(128), nullable=False, comment="名称"),
    Column("level", String(16), nullable=False, comment="province | city | county | township"),
    Column("parent_id", String(64), comment="the hall one level up; none for a top hall"),
    Column("region_code", String(12), nullable=False, comment="行政区划代码, 6 or 12 digits"),
    Column("address", Text, nullable=False, server_default=""),
    Column("opening_hours", String(128), nullable=False, server_default="", comment="办公时间"),
    Column("updated_at", UTCDateTime, nullable=False),
    Index("ix_halls_parent", "parent_id"),
)

# one row (id 1) whose version every registry write bumps in its own transaction: a process
# keeps the tree in memory and reads only this row per request to know it is still current
registry_version = Table(
    "registry_version",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("version", BigInteger, nullable=False),
)
