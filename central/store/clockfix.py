"""Event time as central trusts it: the gateway's clock, repaired when it was not synced."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def corrected_utc(utc: datetime, synced: bool, mono_ns: int, offset_us: int | None
                  ) -> datetime | None:
    """A synced stamp as is; an unsynced one from the same boot's offset (boot_clocks); None
    when the boot never synchronised (the stamp cannot be trusted)."""
    if synced:
        return utc
    if offset_us is None:
        return None
    return EPOCH + timedelta(microseconds=mono_ns // 1000 + offset_us)
