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

from central.rules.timelimit import CaseClock, LadderStage, stage_on
from central.rules.workdays import WorkCalendar, business_date, day_start
from central.spine.ingest import Ingestor
from central.spine.reading import Incoming
from hallkit.clock import utc_now
from protocols import topics
from protocols.envelope import GatewayState
from tests.support.hallevents import Gateway, key_press, queue

BEIJING = dt.timezone(dt.timedelta(hours=8))
MARKET, SOCIAL, POLICE, TAX = "市场监管局", "人社局", "公安局", "税务局"
# (hall, window) → department: the rosters the seed's cases imply
ROSTER = {
    ("H1", 1): MARKET,
    ("H1", 2): MARKET,
    ("H1", 3): SOCIAL,
    ("H2", 1): POLICE,
    ("H2", 2): TAX,
}
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
    batches: list[Incoming] = field(default_factory=list)

    def cases_of(self, department: str) -> list[str]:
        return [c["case_no"] for c in self.cases if c["department"] == department]


def _at(day: dt.date, hour: int, minute: int = 0) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(hour, minute), tzinfo=BEIJING)


def _accepted_for(
    stage: LadderStage, today: dt.date, promised: int, calendar: WorkCalendar
) -> dt.datetime:
    """An acceptance time that puts a running case with this promise on ``stage`` today."""
    for back in range(1, 60):
        accepted = _at(today - dt.timedelta(days=back), 10)
        clock = CaseClock(accepted_at=accepted, legal_days=20, promised_days=promised)
        if stage_on(clock, today, calendar) is stage:
            return accepted
    raise AssertionError(f"no acceptance day gives {stage} today")


def _row(
    no: str, hall: str, window: int, staff: str, accepted: dt.datetime, **extra: Any
) -> dict[str, Any]:
    row = {
        "case_no": no,
        "item_code": f"ITEM-{window:02d}",
        "item_name": {
            MARKET: "企业设立登记",
            SOCIAL: "社会保险参保登记",
            POLICE: "居民身份证换领",
            TAX: "发票领用",
        }[ROSTER[(hall, window)]],
        "department": ROSTER[(hall, window)],
        "hall": hall,
        "window": window,
        "staff": staff,
        "accepted_at": accepted.isoformat(),
        "legal_days": 20,
        "promised_days": 5,
        "status": "running",
        "applicant": {"name": "张三丰", "phone": "13812345678"},
    }
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
        seed.cases.append(_row(no, hall, window, staff, _accepted_for(stage, today, 5, calendar)))
        seed.stages[no] = stage
    # completed this month (or today, early in a month): one on time, one late
    first = today.replace(day=1)
    done_day = today if today == first else today - dt.timedelta(days=1)
    latest = now - dt.timedelta(minutes=1)  # nothing may be completed in the future
    on_time_done = min(_at(done_day, 9, 40), latest)
    late_done = min(_at(done_day, 11), latest)
    late_accepted = _accepted_for(LadderStage.RED_CARD, done_day, 5, calendar)
    seed.cases.append(
        _row(
            "SJ-101",
            "H1",
            1,
            "100231",
            on_time_done - dt.timedelta(minutes=30),
            status="completed",
            completed_at=on_time_done.isoformat(),
        )
    )
    seed.stages["SJ-101"] = LadderStage.DONE_ON_TIME
    seed.cases.append(
        _row(
            "RS-101",
            "H1",
            3,
            "100241",
            late_accepted,
            status="completed",
            completed_at=late_done.isoformat(),
        )
    )
    seed.stages["RS-101"] = LadderStage.DONE_LATE
    _today(seed)
    return seed


def _today_times(seed: Seed, n: int) -> list[dt.datetime]:
    """n instants in order, all today (Beijing) and not after now."""
    start = day_start(seed.today)
    span = max(seed.now - start, dt.timedelta(minutes=1))
    return [start + span * (i + 1) / (n + 2) for i in range(n)]


@dataclass
class _Hall:
    gateway: Gateway
    events: list[tuple[str, dict[str, Any], dt.datetime]] = field(default_factory=list)
    mseq: int = 0
    token: int = 0

    def queue(self, kind: str, at: dt.datetime, **fields: Any) -> int:
        self.mseq += 1
        self.events.append(("queue.event", queue(self.mseq, kind, **fields), at))
        return self.mseq

    def service(
        self,
        window: int,
        staff: str,
        ticket: str,
        key: int | None,
        at: dt.datetime,
        step: dt.timedelta,
    ) -> tuple[dt.datetime, dt.datetime]:
        """TK → CL → ST → FN → invitation → key press; returns the service interval."""
        self.queue("TK", at, ticket=ticket, service=ticket[0])
        self.queue("CL", at + step, ticket=ticket, window=window, staff=staff)
        self.queue("ST", at + 2 * step, ticket=ticket, window=window, staff=staff)
        finish = self.queue("FN", at + 5 * step, ticket=ticket, window=window, staff=staff)
        if key is not None:
            self.token += 1
            invitation = {
                "session": self.token,
                "ticket": ticket,
                "staff": staff,
                "invited_mono_ns": 1,
                "qm_mseq": finish,
            }
            self.events.append(
                (
                    "evaluator.invite",
                    {
                        "window": window,
                        "addr": window,
                        "invitation": invitation,
                        "timeout_s": 30,
                        "status": "ok",
                    },
                    at + 5 * step,
                )
            )
            press = key_press(window, key, session=self.token, ticket=ticket, staff=staff)
            press["invitation"]["qm_mseq"] = finish
            self.events.append(("evaluator.key", press, at + 5 * step + step / 4))
        return at + 2 * step, at + 5 * step


def _case_today(no: str, hall: str, window: int, staff: str, at: dt.datetime) -> dict[str, Any]:
    return _row(no, hall, window, staff, at)


def _today(seed: Seed) -> None:
    """Today's services with their evaluations (and presses the gateway flagged), a camera
    verdict, and the cases accepted during the services."""
    h1, h2 = _Hall(Gateway("H1", "gw1")), _Hall(Gateway("H2", "gw2"))
    slots = iter(_today_times(seed, 8))
    first = next(slots)
    step = max((seed.now - first) / 400, dt.timedelta(seconds=1))
    for hall, window, staff in (
        (h1, 1, "100231"),
        (h1, 3, "100241"),
        (h2, 1, "200101"),
        (h2, 2, "200201"),
    ):
        hall.queue("LI", first, window=window, staff=staff)
    plan = [  # hall, window, staff, ticket, key, case
        (h1, 1, "100231", "A001", 1, "SJ-201"),
        (h1, 1, "100231", "A002", 2, "SJ-202"),
        (h1, 1, "100231", "A003", 3, "SJ-203"),
        (h1, 3, "100241", "B001", 1, "RS-201"),
        (h1, 3, "100241", "B002", 4, None),
        (h2, 1, "200101", "C001", 2, "GA-201"),
        (h2, 1, "200101", "C002", 5, "GA-202"),
        (h2, 2, "200201", "D001", 1, None),
    ]
    for i, (hall, window, staff, ticket, key, case_no) in enumerate(plan):
        at = first + step * (10 * i + 1)
        start, end = hall.service(window, staff, ticket, key, at, step)
        if case_no is not None:
            name = "H1" if hall is h1 else "H2"
            seed.cases.append(_case_today(case_no, name, window, staff, start + (end - start) / 2))
            seed.stages[case_no] = LadderStage.BLUE
    later = first + step * 100
    # pressed with no invitation open, at an idle window: flagged by the gateway
    h1.events.append(("evaluator.key", key_press(2, 1, session=0, marks=["NO_SESSION"]), later))
    no_session = len(h1.events)
    # the device repeating that key: never an evaluation, never listed
    h1.events.append(
        (
            "evaluator.key",
            key_press(2, 1, session=0, marks=["NO_SESSION", "RETRANSMIT"]),
            later + step / 8,
        )
    )
    verdict = {
        "window": 2,
        "verdict": "absent",
        "confidence": 0.92,
        "reason": "座位前无人 / nobody in front of the window",
        "camera": "cam-w2",
        "at_mono_ns": 1,
        "frames": 12,
        "occupied_frames": 0,
        "snapshot": "2026/w2/press-0001.jpg",
        "snapshot_sha256": SNAPSHOT_SHA,
        "snapshot_offset_ms": 120,
        "manifest_seq": 4,
        "manifest_head": "ab" * 32,
        "addr": 2,
        "dev_seq": 0,
        "key_seq": no_session,
    }
    h1.events.append(("camera.verdict", verdict, later + step / 4))
    # D001's citizen pressed again on the same invitation: the gateway marks the repeat
    repeat = key_press(
        2, 1, session=h2.token, ticket="D001", staff="200201", marks=["SESSION_REPEAT"]
    )
    h2.events.append(("evaluator.key", repeat, later + step / 2))
    repeat_seq = len(h2.events)
    seed.batches = [h1.gateway.batch(h1.events), h2.gateway.batch(h2.events)]
    seed.flagged = {
        "no_session": ("gw1", no_session),
        "repeat": ("gw2", repeat_seq),
        "retransmit": ("gw1", no_session + 1),
    }


async def ingest(engine: Any, seed: Seed) -> None:
    """The seed's events through the real Ingestor, and gateway states: gw1 and gw2 online,
    gw3 never heard from (its hall shows offline)."""
    ingestor = Ingestor(engine)
    await ingestor.ingest(seed.batches)
    for hall_id, gateway in (("H1", "gw1"), ("H2", "gw2")):
        state = GatewayState(
            hall=hall_id,
            gateway=gateway,
            boot="ef" * 16,
            online=True,
            utc=seed.now,
            synced=True,
            software="test",
        )
        await ingestor.ingest_state(
            Incoming(
                topics.topic(hall_id, gateway, topics.Channel.STATE),
                state.model_dump_json().encode(),
                seed.now,
            )
        )


def cases_body(seed: Seed) -> bytes:
    return json.dumps({"cases": seed.cases}, ensure_ascii=False).encode()
