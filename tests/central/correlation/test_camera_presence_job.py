"""Cameras narrow 在岗 end to end: queue login periods and camera.presence events stored the real
way, the correlation job run, the stored presence periods cut to what the camera saw."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from central.correlation.job import run_once
from central.spine.registry import register
from central.store.schema_correlation import presence_periods
from tests.central.correlation.journal import DAY, Journal, at


def _camera(j: Journal, when: str, window: int, staff: str) -> None:
    moment = at(DAY, when)
    j._add(
        when,
        "camera.presence",
        {
            "camera": "cam-1",
            "window": window,
            "staff": staff,
            "since": moment.astimezone(dt.UTC).isoformat(),
            "since_mono_ns": 1,
            "confidence": 0.9,
        },
    )


async def test_staff_away_from_the_seat_is_not_counted_as_staffed(engine: AsyncEngine) -> None:
    await register(engine, "H9", "gw9")
    j = Journal("H9", "gw9", DAY)
    j.q("09:00", "LI", window=1, staff="000101", machine_time=None)
    j.q("09:00", "LI", window=2, staff="000202", machine_time=None)
    _camera(j, "09:00", 1, "present")
    _camera(j, "10:00", 1, "away")  # the clerk at window 1 leaves the seat for an hour
    _camera(j, "11:00", 1, "present")
    j.q("12:00", "LO", window=1, staff="000101", machine_time=None)
    j.q("12:00", "LO", window=2, staff="000202", machine_time=None)  # window 2: no camera
    await j.deliver(engine)
    await run_once(engine, now=at(DAY, "18:00"))
    async with engine.connect() as conn:
        rows = (
            await conn.execute(
                select(presence_periods)
                .where(presence_periods.c.hall_id == "H9")
                .order_by(presence_periods.c.window, presence_periods.c.start)
            )
        ).all()
    spans = [
        (
            r.window,
            r.start.astimezone(at(DAY, "00:00").tzinfo).strftime("%H:%M"),
            r.end.astimezone(at(DAY, "00:00").tzinfo).strftime("%H:%M"),
        )
        for r in rows
    ]
    # window 1: 09–10 and 11–12 (3 h logged in, 2 h seen at the seat); window 2: queue only
    assert spans == [(1, "09:00", "10:00"), (1, "11:00", "12:00"), (2, "09:00", "12:00")]
