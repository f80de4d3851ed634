"""Event time as central trusts it: the gateway's clock, repaired when it was not synced."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from protocols.strict import stamp_plausible

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def corrected_utc(
    utc: datetime,
    synced: bool,
    mono_ns: int,
    offset_us: int | None,
    received_at: datetime | None = None,
) -> datetime | None:
    """A synced stamp as is; an unsynced one from the same boot's offset (boot_clocks); None
    when the boot never synchronised, or (given ``received_at``) when the result is no time
    the event can have had (a clock far off): the stamp cannot be trusted."""
    if synced:
        at = utc
    elif offset_us is None:
        return None
    else:
        at = EPOCH + timedelta(microseconds=mono_ns // 1000 + offset_us)
    if received_at is not None and not stamp_plausible(at, received_at):
        return None
    return at
