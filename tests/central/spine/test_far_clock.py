"""A gateway clock far off is a fact central records, not a value that breaks a query.

Stamps outside the contract's calendar window are refused at the envelope; a stamp inside it
but far from the receive time is stored as sent, the events API says it is implausible, and
rules use the receive time.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
from sqlalchemy.ext.asyncio import AsyncEngine

from central.api.app import create_app
from central.correlation.model import TimeSource, event_time
from central.security.tokens import Role, create_token
from central.spine.ingest import Ingestor
from central.store.clockfix import corrected_utc
from central.store.schema import quarantine
from tests.central.spine.test_ingest import count, message
from tests.central.spine.test_ingest import engine as engine  # the fixture: a migrated store

NOW = datetime(2026, 11, 21, 2, 0, tzinfo=UTC)


def test_event_time_uses_the_receive_time_for_a_clock_far_off() -> None:
    assert event_time(NOW - timedelta(hours=1), True, 0, None, NOW) == (
        NOW - timedelta(hours=1),
        TimeSource.SYNCED,
    )
    assert event_time(datetime(2150, 1, 1, tzinfo=UTC), True, 0, None, NOW) == (
        NOW,
        TimeSource.IMPLAUSIBLE,
    )
    # repaired from a boot offset that is itself far off (a synced stamp of a wrong clock)
    offset_us = int((datetime(2031, 1, 1, tzinfo=UTC).timestamp()) * 1e6)
    assert event_time(NOW, False, 5_000_000_000, offset_us, NOW) == (NOW, TimeSource.IMPLAUSIBLE)
    # an unsynced stamp with no offset yet stays unsynced: a later sync repairs it
    assert (
        event_time(datetime(1970, 1, 1, tzinfo=UTC), False, 0, None, NOW)[1] is TimeSource.UNSYNCED
    )
    assert corrected_utc(datetime(2150, 1, 1, tzinfo=UTC), True, 0, None, NOW) is None
    assert corrected_utc(datetime(2150, 1, 1, tzinfo=UTC), True, 0, None) is not None


async def test_far_stamps_are_stored_and_the_events_api_keeps_answering(
    engine: AsyncEngine,
) -> None:
    ingestor = Ingestor(engine)
    for seq, year in ((1, 1), (2, 9999)):  # outside the calendar window: never stored
        await ingestor.ingest([message([seq], utc=datetime(year, 6, 1, tzinfo=UTC))])
    assert await count(engine) == 0
    assert await count(engine, quarantine) == 2
    far = datetime(2150, 6, 1, tzinfo=UTC)
    await ingestor.ingest([message([3, 4], utc=far)])
    assert await count(engine) == 2
    token = await create_token(engine, Role.SUPERVISOR)
    transport = httpx.ASGITransport(app=create_app(engine))
    async with httpx.AsyncClient(transport=transport, base_url="http://central") as client:
        answer = await client.get("/api/v1/events", headers={"Authorization": f"Bearer {token}"})
    assert answer.status_code == 200
    items = answer.json()["items"]
    assert [(i["seq"], i["stamp_plausible"], i["utc_corrected"]) for i in items] == [
        (3, False, None),
        (4, False, None),
    ]
    assert items[0]["utc"].startswith("2150-06-01")
