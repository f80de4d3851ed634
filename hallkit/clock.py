"""The UTC clock both sides stamp records with: one place to ask "what time is it, in UTC".

``protocols`` keeps no clock of its own (it is pure); a gateway's event stamps also carry the
monotonic time and the sync state (``edge/clock.py``), built on this."""

from __future__ import annotations

from datetime import UTC, datetime


def utc_now() -> datetime:
    """The wall clock as an aware datetime in UTC."""
    return datetime.now(UTC)
