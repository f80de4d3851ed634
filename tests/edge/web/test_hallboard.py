"""The hall board: what the page shows, projected from journaled events and live state.

A real journal on disk feeds the replay; live events arrive through ``on_journaled`` exactly as
the supervisors send them; the uplink and clock are the gateway's own classes.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from edge.clock import Clock, Stamp
from edge.config import BrokerConfig, EvaluatorBusConfig, UplinkConfig
from edge.devices.evaluators import EvaluatorSupervisor
from edge.hallboard import SUBSCRIBER_QUEUE, BoardSources, HallBoard
from edge.hallboard_health import utc_text
from edge.journal import Journal
from edge.uplink import Uplink
from hallkit.supervise import Supervisor, TaskState
from protocols.events import GeneratorSample, validate_body

# 2026-11-21 10:00 in Beijing (UTC+8)
MORNING = datetime(2026, 11, 21, 2, 0, tzinfo=UTC)


class Now:
    """The board's wall clock, moved by the test."""

    def __init__(self, at: datetime) -> None:
        self.at = at

    def __call__(self) -> datetime:
        return self.at


def qm(code: str, mseq: int, **fields: Any) -> dict[str, Any]:
    """A queue.event body as QueueSupervisor journals it."""
    return {"mseq": mseq, "type": code, "raw": f"$QM,{mseq},{code}", **fields}


def key(window: int, value: int, *marks: str) -> dict[str, Any]:
    return {
        "window": window,
        "addr": 0x80 + window,
        "raw": "00",
        "dev_seq": 1,
        "key": value,
        "label": "",
        "session": 0,
        "invitation": None,
        "marks": list(marks),
    }


@pytest.fixture
async def journal(tmp_path: Path) -> AsyncIterator[Journal]:
    async with Journal(tmp_path / "journal.db", Clock(assume_synced=True)) as j:
        yield j


def board_over(journal: Journal, now: Now, **sources: Any) -> HallBoard:
    return HallBoard(
        BoardSources(journal, journal.clock, **sources),
        hall="H1",
        gateway="gw1",
        staff_names={"100233": "张敏"},
        now=now,
    )


async def test_a_window_through_a_morning_of_queue_events(journal: Journal) -> None:
    now = Now(MORNING)
    board = board_over(journal, now)
    feed = board.on_journaled
    feed("queue.event", qm("LI", 1, window=3, staff="100233"))
    feed(
        "queue.event",
        qm("TK", 2, ticket="A001", service="A01", service_name="不动产登记", waiting=1),
    )
    now.at += timedelta(minutes=4)
    feed("queue.event", qm("TK", 3, ticket="A002", service="A01", waiting=2))
    feed("queue.event", qm("TK", 4, ticket="B001", service="B02", waiting=1))
    tile = board.picture()["tiles"][0]
    assert (tile["window"], tile["staff"], tile["staff_name"], tile["presence"]) == (
        3,
        "100233",
        "张敏",
        "present",
    )
    queue = board.picture()["queue"]
    assert queue["waiting_total"] == 3
    assert [(s["service"], s["name"], s["waiting"]) for s in queue["services"]] == [
        ("A01", "不动产登记", 2),
        ("B02", None, 1),
    ]
    assert queue["oldest_since"] == utc_text(MORNING)  # A001 has waited longest

    feed("queue.event", qm("CL", 5, ticket="A001", window=3))
    assert board.picture()["tiles"][0]["called"] == "A001"
    now.at += timedelta(minutes=1)
    feed("queue.event", qm("ST", 6, ticket="A001", window=3, staff="100233"))
    tile = board.picture()["tiles"][0]
    assert tile["ticket"] == "A001" and tile["called"] is None
    assert tile["serving_since"] == utc_text(now.at)
    queue = board.picture()["queue"]
    assert queue["waiting_total"] == 2
    assert queue["oldest_since"] == utc_text(MORNING + timedelta(minutes=4))  # A002 now

    feed("queue.event", qm("PS", 7, window=3, staff="100233"))
    assert board.picture()["tiles"][0]["presence"] == "paused"
    feed("queue.event", qm("RS", 8, window=3, staff="100233"))
    # a transfer ends the service here and the ticket waits again in the other queue
    feed("queue.event", qm("TR", 9, ticket="A001", window=3, to_service="B02"))
    tile = board.picture()["tiles"][0]
    assert tile["ticket"] is None and tile["serving_since"] is None
    assert {s["service"]: s["waiting"] for s in board.picture()["queue"]["services"]} == {
        "A01": 1,
        "B02": 2,
    }
    feed("queue.event", qm("CL", 10, ticket="B001", window=3))
    feed("queue.event", qm("NS", 11, ticket="B001", window=3))  # 弃号: never came
    assert board.picture()["tiles"][0]["called"] is None
    feed("queue.event", qm("LO", 12, window=3, staff="100233"))
    assert board.picture()["tiles"][0]["presence"] == "away"
    assert board.picture()["queue"]["waiting_total"] == 2


async def test_waiting_the_machine_reported_before_we_listened(journal: Journal) -> None:
    board = board_over(journal, Now(MORNING))
    # the gateway started mid-morning: the machine says 5 wait, we saw one of them issued
    board.on_journaled("queue.event", qm("TK", 40, ticket="A040", service="A01", waiting=5))
    assert board.picture()["queue"]["services"][0]["waiting"] == 5
    assert board.picture()["queue"]["services"][0]["untracked"] == 4
    board.on_journaled("queue.event", qm("HB", 41, waiting=0))  # nobody waits: trust that
    assert board.picture()["queue"]["waiting_total"] == 0


async def test_todays_evaluations_count_each_key_once(journal: Journal) -> None:
    board = board_over(journal, Now(MORNING))
    for value in (1, 1, 2, 5):
        board.on_journaled("evaluator.key", key(4, value))
    board.on_journaled("evaluator.key", key(4, 1, "RETRANSMIT"))  # the same press again
    board.on_journaled(
        "evaluator.fault",
        {"window": 4, "addr": 0x84, "raw": "00", "reason": "key value outside 1–6", "value": 9},
    )
    tile = board.picture()["tiles"][0]
    assert tile["keys"] == {"1": 2, "2": 1, "3": 0, "4": 0, "5": 1, "6": 0}
    assert tile["keys_total"] == 4


async def test_a_new_day_starts_from_zero(journal: Journal) -> None:
    now = Now(datetime(2026, 11, 21, 15, 50, tzinfo=UTC))  # 23:50 in Beijing
    board = board_over(journal, now)
    board.on_journaled("evaluator.key", key(2, 1))
    board.on_journaled("queue.event", qm("TK", 1, ticket="A090", service="A01", waiting=1))
    now.at += timedelta(minutes=20)  # 00:10: yesterday's presses and tickets are history
    picture = board.picture()
    assert picture["tiles"][0]["keys_total"] == 0
    assert picture["queue"]["waiting_total"] == 0


async def test_replay_rebuilds_today_from_the_journal(journal: Journal) -> None:
    now = Now(MORNING)

    async def journaled(kind: str, body: dict[str, Any], at: datetime) -> None:
        await journal.append(kind, validate_body(kind, body), Stamp(at, 0, True))

    yesterday = MORNING - timedelta(days=1)
    await journaled("evaluator.key", key(1, 3), yesterday)  # not today's
    await journaled("queue.event", qm("TK", 1, ticket="A001", service="A01", waiting=1), yesterday)
    await journaled(
        "queue.event", qm("LI", 2, window=1, staff="100233"), MORNING - timedelta(hours=1)
    )
    await journaled(
        "queue.event",
        qm("TK", 3, ticket="A007", service="A01", waiting=1),
        MORNING - timedelta(minutes=30),
    )
    await journaled(
        "queue.event",
        qm("ST", 4, ticket="A007", window=1, staff="100233"),
        MORNING - timedelta(minutes=20),
    )
    await journaled("evaluator.key", key(1, 1), MORNING - timedelta(minutes=10))
    await journaled("evaluator.key", key(1, 1, "RETRANSMIT"), MORNING - timedelta(minutes=10))
    await journaled(
        "camera.presence",
        {
            "camera": "cam1",
            "window": 1,
            "staff": "away",
            "since": utc_text(MORNING),
            "since_mono_ns": 0,
            "confidence": 0.9,
        },
        MORNING,
    )

    board = board_over(journal, now)
    assert await board.replay() == 6  # today's only
    tile = board.picture()["tiles"][0]
    assert tile["presence"] == "present" and tile["ticket"] == "A007"
    assert tile["serving_since"] == utc_text(MORNING - timedelta(minutes=20))
    assert tile["keys"]["1"] == 1 and tile["keys"]["3"] == 0
    # journaled through its model: pydantic's ISO form
    assert tile["camera"] == {
        "staff": "away",
        "since": MORNING.isoformat().replace("+00:00", "Z"),
        "snapshot": False,
        "calibration": False,
    }
    assert board.picture()["queue"]["waiting_total"] == 0


async def test_health_says_what_is_wrong(tmp_path: Path) -> None:
    clock = Clock(assume_synced=False)
    async with Journal(tmp_path / "j.db", clock, limit_bytes=4000) as journal:
        old = datetime.now(UTC) - timedelta(minutes=12)
        await journal.append(
            "gen.sample", GeneratorSample(n=1, run="t", pad="x" * 3000), Stamp(old, 0, False)
        )
        uplink = Uplink(journal, clock, "H1", "gw1", BrokerConfig(port=1), UplinkConfig())
        board = HallBoard(
            BoardSources(journal, clock, uplink), hall="H1", gateway="gw1", data_dir=tmp_path
        )
        health = board.picture()["health"]
    codes = {p["code"]: p["params"] for p in health["problems"]}
    assert set(codes) == {"uplink_down", "backlog_stale", "clock_unsynced", "journal_full"}
    assert codes["backlog_stale"] == {"count": 1, "minutes": 12}
    assert health["ok"] is False and health["uplink"]["connected"] is False
    assert health["backlog"]["events"] == 1 and health["disk"]["fs_used_pct"] is not None
    # nothing acknowledged yet: no drain rate, no time left, no live lane
    assert (health["backlog"]["per_s"], health["backlog"]["minutes_left"]) == (0.0, None)
    assert health["backlog"]["live_ahead"] is False


async def test_health_is_green_when_all_is_well(journal: Journal) -> None:
    board = board_over(journal, Now(datetime.now(UTC)))
    health = board.picture()["health"]
    assert health["ok"] is True and health["problems"] == []


async def test_a_task_restarting_turns_the_health_panel_red(journal: Journal) -> None:
    supervisor = Supervisor()
    record = supervisor.record("uplink.send")  # as the supervisor leaves it between two runs
    record.failed_with("IndexError: deque index out of range")
    record.state = TaskState.RESTARTING
    supervisor.record("device.queue")  # running
    health = board_over(journal, Now(MORNING), supervisor=supervisor).picture()["health"]
    assert health["ok"] is False
    assert health["problems"] == [{"code": "tasks_failing", "params": {"tasks": "uplink.send"}}]


async def test_an_evaluator_bus_not_open_turns_its_windows_red(journal: Journal) -> None:
    config = EvaluatorBusConfig(
        port="/dev/ttyNONE", devices=[{"addr": 0x81, "window": 1}, {"addr": 0x82, "window": 2}]
    )
    supervisor = EvaluatorSupervisor(config, journal)  # not running: no bus
    board = board_over(journal, Now(MORNING), evaluators=[supervisor])
    picture = board.picture()
    assert [t["window"] for t in picture["tiles"]] == [1, 2]
    assert all(t["evaluator"]["state"] == "offline" for t in picture["tiles"])
    assert picture["tiles"][0]["problems"] == [{"code": "evaluator_bus_down", "params": {}}]
    assert {"code": "bus_down", "params": {"port": "/dev/ttyNONE"}} in (
        picture["health"]["problems"]
    )
    assert picture["health"]["devices"]["evaluators_offline"] == [1, 2]


async def test_subscribers_get_the_snapshot_then_what_changed(journal: Journal) -> None:
    board = board_over(journal, Now(MORNING))
    board.on_journaled("queue.event", qm("LI", 1, window=3, staff="100233"))
    board.publish_changes()
    with board.subscription() as sub:
        first = await sub.get()
        assert first is not None and first["type"] == "snapshot"
        assert first["tiles"][0]["presence"] == "present"
        board.on_journaled("evaluator.key", key(3, 2))
        update = board.publish_changes()
        assert update is not None
        assert board.publish_changes() is None  # nothing new: nothing sent
        message = await asyncio.wait_for(sub.get(), 1)
        assert message == update
        assert [t["window"] for t in message["tiles"]] == [3]
        assert message["tiles"][0]["keys"]["2"] == 1
        assert "queue" not in message and "health" not in message
    assert board.subscribers == 0


async def test_a_subscriber_that_falls_behind_is_told_to_reload(journal: Journal) -> None:
    board = board_over(journal, Now(MORNING))
    slow, fast = board.subscribe(), board.subscribe()
    for n in range(SUBSCRIBER_QUEUE + 5):
        board.on_journaled("evaluator.key", key(1, 1))
        board.publish_changes()
        if n % 50 == 0:  # the fast one keeps reading
            while fast.pending:
                await fast.get()
    assert slow.dropped and not fast.dropped
    assert board.subscribers == 1
    received = [m async for m in slow]
    assert [m["type"] for m in received] == ["reload"]


async def test_stopping_the_board_ends_every_stream(journal: Journal) -> None:
    board = board_over(journal, Now(MORNING))
    await board.start()
    sub = board.subscribe()

    async def read_all() -> list[str]:
        return [m["type"] async for m in sub]

    reader = asyncio.create_task(read_all())
    board.on_journaled("evaluator.key", key(1, 1))  # the board's own loop publishes it
    await asyncio.sleep(0.2)
    await board.stop()
    assert await asyncio.wait_for(reader, 2) == ["snapshot", "update"]


async def test_camera_presence_and_snapshot_stay_inside_the_evidence_dir(
    tmp_path: Path, journal: Journal
) -> None:
    evidence = tmp_path / "evidence"
    (evidence / "2026-11-21").mkdir(parents=True)
    (evidence / "2026-11-21" / "w5.jpg").write_bytes(b"\xff\xd8jpeg")
    (tmp_path / "secret.txt").write_text("not evidence")
    board = HallBoard(
        BoardSources(journal, journal.clock),
        hall="H1",
        gateway="gw1",
        evidence_dir=evidence,
        now=Now(MORNING),
    )

    def presence(window: int, staff: str, snapshot: str | None) -> None:
        board.on_journaled(
            "camera.presence",
            {
                "camera": f"cam{window}",
                "window": window,
                "staff": staff,
                "since": utc_text(MORNING),
                "since_mono_ns": 1,
                "confidence": 0.8,
                "snapshot": snapshot,
            },
        )

    presence(5, "present", "2026-11-21/w5.jpg")
    presence(6, "away", "../secret.txt")
    board.on_journaled(
        "camera.health", {"camera": "cam6", "state": "offline", "reason": "no frames for 10 s"}
    )
    tiles = {t["window"]: t for t in board.picture()["tiles"]}
    assert tiles[5]["camera"]["staff"] == "present" and tiles[6]["camera"]["staff"] == "away"
    assert board.snapshot_file(5) == (evidence / "2026-11-21" / "w5.jpg").resolve()
    assert board.snapshot_file(6) is None  # outside the evidence directory
    assert board.snapshot_file(7) is None
    assert {"code": "cameras_offline", "params": {"cameras": "cam6"}} in (
        board.picture()["health"]["problems"]
    )


async def test_a_broken_event_is_counted_not_raised(journal: Journal) -> None:
    board = board_over(journal, Now(MORNING))
    board.on_journaled("queue.event", {"type": "TK"})  # no ticket, service, waiting
    assert board.hook_errors == 1
    board.on_journaled("queue.event", qm("LI", 1, window=2, staff="100233"))
    assert board.picture()["tiles"][0]["presence"] == "present"
