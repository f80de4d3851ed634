"""A small province for the dashboard's tests: three halls, four departments, cases at every
ladder stage, today's key presses (some flagged by the gateway), a camera verdict.

Cases are plain JSON rows for POST /api/v1/cases (or ``central.cases.store.feed``); events are
batches for the real ``Ingestor``. Times are relative to today (Beijing), chosen with the real
ladder rules so each case lands on the stage it is meant to show.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from central.ingest import Incoming, Ingestor
from central.rules.timelimit import CaseClock, LadderStage, stage_on
from central.rules.workdays import WorkCalendar, business_date, day_start
from protocols import topics
from protocols.envelope import GatewayState, utc_now
from tests.support.hallevents import Gateway, key_press

BEIJING = dt.timezone(dt.timedelta(hours=8))
MARKET, SOCIAL, POLICE, TAX = "市场监管局", "人社局", "公安局", "税务局"
# (hall, window) → department: the rosters the seed's cases imply
ROSTER = {("H1", 1): MARKET, ("H1", 2): MARKET, ("H1", 3): SOCIAL, ("H2", 1): POLICE,
          ("H2", 2): TAX}
SNAPSHOT_SHA = hashlib.sha256(b"snapshot of window 2").hexdigest()

USERS = {  # name → (role, hall, department); one password for all (tests only)
    "jiancha": ("supervisor", None, None),
    "shichang-lingdao": ("department_leader", None, MARKET),
    "h2-guanli": ("hall_manager", "H2", None),
    "yunwei": ("technician", None, None),
}
PASSWORD = "监察-Test-2026"


@dataclass
class Seed:
    today: dt.date
    now: dt.datetime
    cases: list[dict[str, Any]] = field(default_factory=list)
    stages: dict[str, LadderStage] = field(default_factory=dict)  # case_no → expected stage
    flagged: dict[str, tuple[str, int]] = field(default_factory=dict)  # name → (gateway, seq)

    def cases_of(self, department: str) -> list[str]:
        return [c["case_no"] for c in self.cases if c["department"] == department]


def _at(day: dt.date, hour: int, minute: int = 0) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(hour, minute), tzinfo=BEIJING)


def _accepted_for(stage: LadderStage, today: dt.date, promised: int, calendar: WorkCalendar
                  ) -> dt.datetime:
    """An acceptance time that puts a running case with this promise on ``stage`` today."""
    for back in range(1, 60):
        accepted = _at(today - dt.timedelta(days=back), 10)
        clock = CaseClock(accepted_at=accepted, legal_days=20, promised_days=promised)
        if stage_on(clock, today, calendar) is stage:
            return accepted
    raise AssertionError(f"no acceptance day gives {stage} today")


def _row(no: str, hall: str, window: int, staff: str, accepted: dt.datetime, **extra: Any
         ) -> dict[str, Any]:
    row = {"case_no": no, "item_code": f"ITEM-{window:02d}", "item_name": {
        MARKET: "企业设立登记", SOCIAL: "社会保险参保登记", POLICE: "居民身份证换领",
        TAX: "发票领用"}[ROSTER[(hall, window)]], "department": ROSTER[(hall, window)],
        "hall": hall, "window": window, "staff": staff, "accepted_at": accepted.isoformat(),
        "legal_days": 20, "promised_days": 5, "status": "running",
        "applicant": {"name": "张三丰", "phone": "13812345678"}}
    row.update(extra)
    return row


def build(calendar: WorkCalendar | None = None, now: dt.datetime | None = None) -> Seed:
    calendar = calendar or WorkCalendar(assume_weekends=True)
    now = now or utc_now()
    today = business_date(now)
    seed = Seed(today, now)
    plan = [  # (case_no, hall, window, staff, stage)
        ("SJ-001", "H1", 1, "100231", LadderStage.BLUE),
        ("SJ-002", "H1", 1, "100231", LadderStage.YELLOW_LIGHT),
        ("SJ-003", "H1", 2, "100232", LadderStage.RED_LIGHT),
        ("SJ-004", "H1", 2, "100232", LadderStage.YELLOW_CARD),
        ("RS-001", "H1", 3, "100241", LadderStage.RED_CARD),
        ("RS-002", "H1", 3, "100241", LadderStage.BLUE),
        ("GA-001", "H2", 1, "200101", LadderStage.SUPERVISION_LETTER),
        ("GA-002", "H2", 1, "200101", LadderStage.YELLOW_LIGHT),
        ("SW-001", "H2", 2, "200201", LadderStage.BLUE),
    ]
    for no, hall, window, staff, stage in plan:
        seed.cases.append(_row(no, hall, window, staff,
                               _accepted_for(stage, today, 5, calendar)))
        seed.stages[no] = stage
    # completed this month (or today, early in a month): one on time, one late
    first = today.replace(day=1)
    done_day = today if today == first else today - dt.timedelta(days=1)
    latest = now - dt.timedelta(minutes=1)  # nothing may be completed in the future
    on_time_done = min(_at(done_day, 9, 40), latest)
    late_done = min(_at(done_day, 11), latest)
    late_accepted = _accepted_for(LadderStage.RED_CARD, done_day, 5, calendar)
    seed.cases.append(_row("SJ-101", "H1", 1, "100231", on_time_done - dt.timedelta(minutes=30),
                           status="completed", completed_at=on_time_done.isoformat()))
    seed.stages["SJ-101"] = LadderStage.DONE_ON_TIME
    seed.cases.append(_row("RS-101", "H1", 3, "100241", late_accepted, status="completed",
                           completed_at=late_done.isoformat()))
    seed.stages["RS-101"] = LadderStage.DONE_LATE
    return seed


def _today_times(seed: Seed, n: int) -> list[dt.datetime]:
    """n instants in order, all today (Beijing) and not after now."""
    start = day_start(seed.today)
    span = max(seed.now - start, dt.timedelta(minutes=1))
    return [start + span * (i + 1) / (n + 1) for i in range(n)]


async def ingest(engine: Any, seed: Seed) -> None:
    """Today's evaluations and a camera verdict through the real Ingestor, and gateway
    states: gw1 and gw2 online, gw3 never heard from (its hall shows offline)."""
    ingestor = Ingestor(engine)
    g1, g2 = Gateway("H1", "gw1"), Gateway("H2", "gw2")
    times = _today_times(seed, 12)
    h1 = [
        ("evaluator.key", key_press(1, 1, session=1, ticket="A001", staff="100231"), times[0]),
        ("evaluator.key", key_press(1, 2, session=2, ticket="A002", staff="100231"), times[1]),
        ("evaluator.key", key_press(1, 3, session=3, ticket="A003", staff="100231"), times[2]),
        ("evaluator.key", key_press(3, 1, session=4, ticket="B001", staff="100241"), times[3]),
        ("evaluator.key", key_press(3, 4, session=5, ticket="B002", staff="100241"), times[4]),
        # pressed with no invitation open: flagged by the gateway
        ("evaluator.key", key_press(2, 1, session=0, marks=["NO_SESSION"]), times[5]),
    ]
    batch = g1.batch(h1)
    no_session_seq = g1.seq
    verdict = {"window": 2, "verdict": "absent", "confidence": 0.92,
               "reason": "座位前无人 / nobody in front of the window", "camera": "cam-w2",
               "at_mono_ns": 1, "frames": 12, "occupied_frames": 0,
               "snapshot": "2026/w2/press-0001.jpg", "snapshot_sha256": SNAPSHOT_SHA,
               "snapshot_offset_ms": 120, "manifest_seq": 4, "manifest_head": "ab" * 32,
               "addr": 2, "dev_seq": 0, "key_seq": no_session_seq}
    batch2 = g1.batch([
        ("camera.verdict", verdict, times[6]),
        # the device repeating the last key: never an evaluation, never listed
        ("evaluator.key", key_press(2, 1, session=0, marks=["NO_SESSION", "RETRANSMIT"]),
         times[6]),
    ])
    h2 = [
        ("evaluator.key", key_press(1, 2, session=1, ticket="C001", staff="200101"), times[7]),
        ("evaluator.key", key_press(1, 5, session=2, ticket="C002", staff="200101"), times[8]),
        ("evaluator.key", key_press(2, 1, session=3, ticket="D001", staff="200201"), times[9]),
        ("evaluator.key", key_press(2, 1, session=3, ticket="D001", staff="200201",
                                    marks=["SESSION_REPEAT"]), times[10]),
    ]
    batch3 = g2.batch(h2)
    repeat_seq = g2.seq
    await ingestor.ingest([batch, batch2, batch3])
    seed.flagged = {"no_session": ("gw1", no_session_seq), "repeat": ("gw2", repeat_seq),
                    "retransmit": ("gw1", g1.seq)}
    for hall, gateway in (("H1", "gw1"), ("H2", "gw2")):
        state = GatewayState(hall=hall, gateway=gateway, boot="ef" * 16, online=True,
                             utc=seed.now, synced=True, software="test")
        await ingestor.ingest_state(Incoming(
            topics.topic(hall, gateway, topics.Channel.STATE),
            state.model_dump_json().encode(), seed.now))


def cases_body(seed: Seed) -> bytes:
    return json.dumps({"cases": seed.cases}, ensure_ascii=False).encode()
