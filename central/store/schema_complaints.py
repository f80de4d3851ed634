"""Complaints (网上投诉) and their history.

A complaint is worked on, so its row changes (state, department, reply); every step is also
appended to ``complaint_events``, which is never changed. The complainant's phone number is
kept only while the complaint is open (the reply SMS needs it) and erased when it is closed or
not accepted; every view shows the masked form. Migration ``complaints`` creates them."""

from __future__ import annotations

from sqlalchemy import Boolean, Column, Date, Index, Integer, String, Table, Text

from central.store.metadata import metadata
from central.store.types import UTCDateTime

complaints = Table(
    "complaints",
    metadata,
    Column("complaint_no", String(24), primary_key=True, comment="投诉编号 TS…"),
    Column("code_digest", String(64), nullable=False, comment="SHA-256 of the 查询码"),
    Column("channel", String(16), nullable=False, comment="web | phone | counter | letter"),
    Column("text", Text, nullable=False, comment="投诉内容, as typed (escaped on display)"),
    Column("hall_id", String(64), comment="tied hall; NULL: unknown"),
    Column("window", Integer),
    Column("staff", String(6), comment="tied staff number"),
    Column("staff_name_given", String(32), comment="the name the complainant gave"),
    Column("case_ref", String(64), comment="办件编号 as the complainant gave it"),
    Column("case_no", String(64), comment="the case it is tied to, when that number exists"),
    Column("happened_on", Date),
    Column("department", String(128), comment="归口 department; NULL: supervisors' triage queue"),
    Column("complainant", String(32), comment="称呼"),
    Column("phone", String(16), comment="erased once closed or rejected"),
    Column("phone_masked", String(16)),
    Column("consent", Boolean, nullable=False, comment="同意短信/电话联系"),
    Column("state", String(16), nullable=False),
    Column("received_at", UTCDateTime, nullable=False),
    Column("received_on", Date, nullable=False, comment="business date received"),
    Column("ack_due", Date, nullable=False),
    Column("reply_due", Date, nullable=False),
    Column("accepted_at", UTCDateTime),
    Column("replied_at", UTCDateTime),
    Column("replied_on", Date, comment="business date of the reply"),
    Column("closed_at", UTCDateTime),
    Column("reply", Text, comment="答复, shown to the complainant"),
    Column("reject_reason", Text),
    Column("escalation_level", Integer, nullable=False, server_default="0"),
    Column("entered_by", String(160), comment="staff who entered a phone/counter complaint"),
    Column("updated_at", UTCDateTime, nullable=False),
    Index("ix_complaints_hall", "hall_id", "received_on"),
    Index("ix_complaints_department", "department", "received_on"),
    Index("ix_complaints_case", "case_no"),
    Index("ix_complaints_state", "state", "reply_due"),
)

complaint_events = Table(
    "complaint_events",
    metadata,
    Column("complaint_no", String(24), primary_key=True),
    Column("seq", Integer, primary_key=True, autoincrement=False),
    Column("at", UTCDateTime, nullable=False),
    Column("action", String(16), nullable=False, comment="received | accept | … | escalate"),
    Column("state", String(16), nullable=False, comment="the state after it"),
    Column("actor", String(160), comment="role:label; NULL for the public form and the clock"),
    Column("note", Text, nullable=False, server_default=""),
)
