"""The 大屏's shaping on plain values: the state rule, the tree order, 红黑榜, ticks from changes,
trends and the snapshot's version."""

from __future__ import annotations

import datetime as dt

from central.reporting.registry import HallEntry, Level
from central.reporting.wall import (
    Candidate,
    HallLive,
    HallState,
    KeyCounts,
    WallFigures,
    changes,
    hall_state,
    is_open,
    rankings,
    snapshot,
    tree_order,
    worst_halls,
)
from central.reporting.wall_store import parse_opening
from central.rules.indicators import OpeningPeriod, Ratio

NOW = dt.datetime(2026, 12, 7, 2, 30, tzinfo=dt.UTC)  # 10:30 in Beijing, a Monday
TODAY = dt.date(2026, 12, 7)


def _entry(hall: str, name: str, level: Level, parent: str | None = None) -> HallEntry:
    return HallEntry(hall_id=hall, name=name, level=level, parent_id=parent, region_code="330000")


def test_the_state_rule_is_never_green_beside_a_letter_or_without_a_gateway() -> None:
    def up(stages: dict[str, int]) -> HallState:
        return hall_state(stages, gateways=1, online=1, open_now=True)

    assert up({"supervision_letter": 1}) is HallState.RED
    assert up({"red_card": 1, "blue": 4}) is HallState.RED
    assert up({"red_light": 1}) is HallState.RED
    assert up({"yellow_card": 1}) is HallState.YELLOW
    assert up({"yellow_light": 2, "blue": 1}) is HallState.YELLOW
    assert up({"blue": 3}) is HallState.BLUE
    assert up({}) is HallState.GREEN
    assert up({"suspended": 2, "done_on_time": 1}) is HallState.GREEN
    # no gateway at all, or none online, while open: offline, above blue
    assert hall_state({"blue": 3}, gateways=0, online=0, open_now=True) is HallState.OFFLINE
    assert hall_state({}, gateways=2, online=0, open_now=True) is HallState.OFFLINE
    # closed: nothing to report unless cases are lit
    assert hall_state({}, gateways=0, online=0, open_now=False) is HallState.IDLE
    assert hall_state({"blue": 1}, gateways=0, online=0, open_now=False) is HallState.BLUE
    assert hall_state({"red_card": 1}, gateways=0, online=0, open_now=False) is HallState.RED


def test_opening_hours_in_beijing_time_on_working_days() -> None:
    hours = parse_opening("09:00-12:00，13:00-17:00")
    assert hours == (
        OpeningPeriod(start=dt.time(9), end=dt.time(12)),
        OpeningPeriod(start=dt.time(13), end=dt.time(17)),
    )
    assert is_open(hours, NOW, workday=True)
    assert not is_open(hours, NOW, workday=False)
    assert not is_open(hours, NOW.replace(hour=4, minute=30), workday=True)  # 12:30 lunch
    assert parse_opening("") == ()


def test_the_tree_puts_parents_first_and_unregistered_halls_last() -> None:
    registry = {
        "P": _entry("P", "浙江省", Level.PROVINCE),
        "C2": _entry("C2", "宁波市", Level.CITY, "P"),
        "C1": _entry("C1", "杭州市", Level.CITY, "P"),
        "X": _entry("X", "西湖区", Level.COUNTY, "C1"),
    }
    order = tree_order({"X", "C1", "C2", "P", "Z9"}, registry)
    assert order == ["P", "C1", "X", "C2", "Z9"] or order == ["P", "C2", "C1", "X", "Z9"]
    assert order.index("C1") < order.index("X") and order[-1] == "Z9"
    # a subtree without its parent: the county starts its own tree
    assert tree_order({"X"}, registry) == ["X"]


def test_rankings_need_enough_figures_and_nobody_is_on_both_lists() -> None:
    def c(name: str, good: int, n: int) -> Candidate:
        return Candidate(name, name, "H", "大厅", Ratio(good, n), "satisfaction")

    lists = rankings(
        [c("a", 95, 100), c("b", 50, 100), c("c", 80, 100), c("tiny", 1, 1), c("d", 160, 200)],
        min_n=10,
        size=2,
    )
    assert [r["id"] for r in lists["red"]] == ["a", "d"]  # ties: the larger n first
    assert [r["id"] for r in lists["black"]] == ["b", "c"]
    assert lists["red"][0]["value"] == 95.0 and lists["red"][0]["n"] == 100
    few = rankings([c("a", 9, 10), c("b", 1, 10)], min_n=10, size=5)
    assert [r["id"] for r in few["red"]] == ["a", "b"] and few["black"] == []


def test_ticks_come_from_what_grew_or_flipped() -> None:
    before = {
        "H1": HallLive(stages={"red_card": 1}, gateways=1, online=1),
        "H2": HallLive(gateways=1, online=1),
    }
    after = {
        "H1": HallLive(stages={"red_card": 3, "supervision_letter": 1}, gateways=1, online=1),
        "H2": HallLive(gateways=1, online=0),
    }
    ticks = changes(before, after, {"H1": "一号大厅"}, NOW)
    assert [(t.kind, t.hall_id) for t in ticks] == [
        ("red_card", "H1"),
        ("letter", "H1"),
        ("offline", "H2"),
    ]
    assert ticks[0].text == "一号大厅 新增红牌 2 件"
    back = changes(after, before, {}, NOW)
    assert [t.kind for t in back] == ["online"]  # fewer cards are no news


def test_snapshot_totals_trends_and_version() -> None:
    fig = WallFigures(
        today=TODAY,
        live={
            "H1": HallLive(
                stages={"supervision_letter": 1, "blue": 2},
                gateways=1,
                online=1,
                today=KeyCounts(10, 9, 1),
                open_now=True,
            ),
            "H2": HallLive(gateways=0, online=0, today=KeyCounts(4, 2, 2), open_now=True),
        },
        registry={"H1": _entry("H1", "市民中心", Level.CITY)},
        day_keys={
            ("H1", TODAY): KeyCounts(10, 9, 1),
            ("H2", TODAY): KeyCounts(4, 2, 2),
            ("H1", TODAY - dt.timedelta(days=1)): KeyCounts(20, 10, 10),
            ("H1", TODAY - dt.timedelta(days=40)): KeyCounts(5, 0, 5),  # out of the 30 days
        },
        day_ontime={("H1", TODAY): Ratio(3, 4)},
    )
    doc = snapshot(fig, None, "全部大厅", NOW)
    states = {h["hall_id"]: h["state"] for h in doc["halls"]}
    assert states == {"H1": "red", "H2": "offline"}
    assert doc["halls"][0]["name"] == "市民中心" and doc["halls"][1]["name"] == "H2"
    assert doc["totals"]["satisfaction_today"] == round(11 / 14 * 100, 1)
    assert doc["totals"]["offline"] == 1 and doc["totals"]["letters"] == 1
    assert doc["trends"]["satisfaction"][-2:] == [50.0, round(11 / 14 * 100, 1)]
    assert doc["trends"]["ontime"][-1] == 75.0 and doc["trends"]["ontime"][0] is None
    assert doc["worst"] == ["H1", "H2"]
    assert doc["rankings"]["halls"]["red"][0]["id"] == "H1"  # 30 days: 19/30 over 10
    one = snapshot(fig, frozenset({"H2"}), "H2", NOW)
    assert [h["hall_id"] for h in one["halls"]] == ["H2"] and one["totals"]["halls"] == 1
    later = snapshot(fig, None, "全部大厅", NOW + dt.timedelta(minutes=1))
    assert later["version"] == doc["version"]  # only the time moved
    fig.live["H2"] = HallLive(gateways=1, online=1, open_now=True)
    assert snapshot(fig, None, "全部大厅", NOW)["version"] != doc["version"]


def test_worst_halls_are_red_then_yellow_then_offline_by_alarms() -> None:
    states = {
        "A": (HallState.YELLOW, 5),
        "B": (HallState.RED, 1),
        "C": (HallState.RED, 4),
        "D": (HallState.OFFLINE, 0),
        "E": (HallState.GREEN, 0),
    }
    assert worst_halls(states) == ["C", "B", "A", "D"]
