"""The 大屏 (wall) on plain values: a hall's state, the tree order, trends, 红黑榜 and ticks.

Pure: ``central.reporting.wall_store`` loads the figures (aggregated in SQL) and
``central.api.wall`` caches and serves what these functions shape. The state rule is the one
the overview's cards use as well (``hall_state``).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from central.reporting.registry import HallEntry
from central.rules.indicators import OpeningPeriod, Ratio
from central.rules.scale import DeviceKey
from central.rules.timelimit import LadderStage
from central.rules.workdays import BUSINESS_TZ

RANK_SIZE = 5  # 红榜 and 黑榜: five each
WORST_SIZE = 10  # halls the drill-down rotates through


class HallState(StrEnum):
    """Worst first: a hall shows the first that holds."""

    RED = "red"  # a red light, a red card or a 监察建议书
    YELLOW = "yellow"  # a yellow light or a yellow card
    OFFLINE = "offline"  # open, and no gateway reporting (or no gateway at all)
    BLUE = "blue"  # open cases, all within their limits
    GREEN = "green"  # open, reporting, nothing running late
    IDLE = "idle"  # closed, nothing lit


SEVERITY = {state: rank for rank, state in enumerate(HallState)}


def hall_state(
    stages: Mapping[str, int], *, gateways: int, online: int, open_now: bool
) -> HallState:
    """The one state rule of a hall: open cases by ladder stage (``LadderStage`` values),
    its registered gateways and how many are online, and whether it is open now. A hall with
    no gateway at all is offline while open: nothing watches it."""

    def lit(*which: LadderStage) -> bool:
        return any(stages.get(s.value, 0) > 0 for s in which)

    if lit(LadderStage.RED_LIGHT, LadderStage.RED_CARD, LadderStage.SUPERVISION_LETTER):
        return HallState.RED
    if lit(LadderStage.YELLOW_LIGHT, LadderStage.YELLOW_CARD):
        return HallState.YELLOW
    if open_now and (gateways == 0 or online == 0):
        return HallState.OFFLINE
    if lit(LadderStage.BLUE):
        return HallState.BLUE
    return HallState.GREEN if open_now else HallState.IDLE


def is_open(opening: Sequence[OpeningPeriod], now: dt.datetime, workday: bool) -> bool:
    """Within the hall's opening hours (Beijing time) on a working day."""
    clock = now.astimezone(BUSINESS_TZ).time()
    return workday and any(p.start <= clock < p.end for p in opening)


def lights_doc(stages: Mapping[str, int]) -> dict[str, dict[str, int] | int]:
    """The wall's counts from ladder stages: lights, cards, 监察建议书."""

    def n(stage: LadderStage) -> int:
        return int(stages.get(stage.value, 0))

    return {
        "lights": {
            "blue": n(LadderStage.BLUE),
            "yellow": n(LadderStage.YELLOW_LIGHT),
            "red": n(LadderStage.RED_LIGHT),
        },
        "cards": {"yellow": n(LadderStage.YELLOW_CARD), "red": n(LadderStage.RED_CARD)},
        "letters": n(LadderStage.SUPERVISION_LETTER),
    }


@dataclass(frozen=True, slots=True)
class KeyCounts:
    """Counted evaluations (after correlation) and of them 满意 (keys 1–2) and 差评 (3–6)."""

    counted: int = 0
    satisfied: int = 0
    bad: int = 0

    @property
    def satisfaction(self) -> Ratio:
        return Ratio(self.satisfied, self.counted)

    def __add__(self, other: KeyCounts) -> KeyCounts:
        return KeyCounts(
            self.counted + other.counted, self.satisfied + other.satisfied, self.bad + other.bad
        )


@dataclass(frozen=True, slots=True)
class HallLive:
    """What changes during the day, per hall."""

    stages: Mapping[str, int] = field(default_factory=dict)  # open cases by ladder stage
    gateways: int = 0
    online: int = 0
    today: KeyCounts = KeyCounts()
    open_now: bool = False

    @property
    def state(self) -> HallState:
        return hall_state(
            self.stages, gateways=self.gateways, online=self.online, open_now=self.open_now
        )


def rate(value: Ratio) -> float | None:
    """A share in percent with one decimal; None when there is nothing to divide by."""
    return None if value.value is None else round(value.value * 100, 1)


def add_ratios(ratios: Iterable[Ratio]) -> Ratio:
    """Σ numerators / Σ denominators (how rates add across halls and days)."""
    items = list(ratios)
    return Ratio(sum(r.numerator for r in items), sum(r.denominator for r in items))


# ----------------------------------------------------------------------------- the tree


def tree_order(halls: Iterable[str], registry: Mapping[str, HallEntry]) -> list[str]:
    """``halls`` with every parent before its children (siblings by name, then id); a hall
    whose parent is not among them starts a tree of its own; unregistered halls come last."""
    wanted = set(halls)
    children: dict[str | None, list[str]] = {}
    for hall in wanted:
        entry = registry.get(hall)
        parent = entry.parent_id if entry is not None else None
        children.setdefault(parent if parent in wanted else None, []).append(hall)

    def sort_key(hall: str) -> tuple[int, str, str]:
        entry = registry.get(hall)
        return (0, entry.name, hall) if entry is not None else (1, "", hall)

    out: list[str] = []
    todo = sorted(children.get(None, []), key=sort_key, reverse=True)
    while todo:
        hall = todo.pop()
        out.append(hall)
        todo.extend(sorted(children.get(hall, []), key=sort_key, reverse=True))
    return out


def visible_parent(hall: str, registry: Mapping[str, HallEntry], shown: set[str]) -> str | None:
    entry = registry.get(hall)
    parent = entry.parent_id if entry is not None else None
    return parent if parent in shown else None


# ----------------------------------------------------------------------------- rankings


@dataclass(frozen=True, slots=True)
class Candidate:
    id: str
    name: str
    hall_id: str
    hall_name: str
    ratio: Ratio
    basis: str  # satisfaction | ontime


def rankings(
    candidates: Iterable[Candidate], *, min_n: int, size: int = RANK_SIZE
) -> dict[str, list[dict[str, Any]]]:
    """红榜 (best first) and 黑榜 (worst first) among candidates with at least ``min_n`` in
    the denominator; nobody is on both."""
    ranked = [c for c in candidates if c.ratio.denominator >= min_n and c.ratio.value is not None]
    best = sorted(ranked, key=lambda c: (-(c.ratio.value or 0), -c.ratio.denominator, c.id))
    red = best[:size]
    on_red = {c.id for c in red}
    black = [c for c in reversed(best) if c.id not in on_red][:size]
    return {"red": [_rank(c) for c in red], "black": [_rank(c) for c in black]}


def _rank(c: Candidate) -> dict[str, Any]:
    return {
        "id": c.id,
        "name": c.name,
        "hall_id": c.hall_id,
        "hall_name": c.hall_name,
        "value": rate(c.ratio),
        "n": int(c.ratio.denominator),
        "basis": c.basis,
    }


def worst_halls(states: Mapping[str, tuple[HallState, int]], size: int = WORST_SIZE) -> list[str]:
    """The halls the drill-down rotates through: red, yellow, offline, then blue ones, the more
    alarms (red and yellow lights, cards, letters) the earlier."""
    alarming = (HallState.RED, HallState.YELLOW, HallState.OFFLINE)
    shown = [h for h, (s, _) in states.items() if s in alarming]
    return sorted(shown, key=lambda h: (SEVERITY[states[h][0]], -states[h][1], h))[:size]


def alarms(stages: Mapping[str, int]) -> int:
    """Open cases past blue: the weight of a hall among halls of the same state."""
    return sum(n for s, n in stages.items() if s not in (LadderStage.BLUE, LadderStage.SUSPENDED))


# ----------------------------------------------------------------------------- ticks

BAD_LABELS = {int(k): k.label for k in DeviceKey if k >= DeviceKey.BAD_ATTITUDE}


@dataclass(frozen=True, slots=True)
class Tick:
    kind: str  # bad_review | red_card | yellow_card | letter | offline | online
    at: dt.datetime
    hall_id: str
    text: str  # Chinese, no personal data
    window: int | None = None
    history: bool = False  # 补传: it happened long before central heard of it

    def doc(self, tick_id: str, hall_name: str) -> dict[str, Any]:
        return {
            "id": tick_id,
            "at": iso(self.at),
            "kind": self.kind,
            "hall_id": self.hall_id,
            "hall_name": hall_name,
            "window": self.window,
            "text": self.text,
            "history": self.history,
        }


def bad_review_tick(
    hall: str, hall_name: str, window: int, key: int, at: dt.datetime, *, history: bool = False
) -> Tick:
    text = f"{hall_name} {window}号窗口 差评：{BAD_LABELS[key]}"
    return Tick("bad_review", at, hall, text + ("（补传）" if history else ""), window, history)


_CHANGES = (
    ("red_card", LadderStage.RED_CARD, "红牌"),
    ("yellow_card", LadderStage.YELLOW_CARD, "黄牌"),
    ("letter", LadderStage.SUPERVISION_LETTER, "监察建议书"),
)


def changes(
    before: Mapping[str, HallLive],
    after: Mapping[str, HallLive],
    names: Mapping[str, str],
    at: dt.datetime,
) -> list[Tick]:
    """Ticks for what grew or flipped between two readings: more red or yellow cards or
    letters, a hall whose gateways all went offline or came back."""
    ticks: list[Tick] = []
    for hall in sorted(after):
        new, old = after[hall], before.get(hall, HallLive())
        name = names.get(hall, hall)
        for kind, stage, word in _CHANGES:
            grew = new.stages.get(stage.value, 0) - old.stages.get(stage.value, 0)
            if grew > 0:
                ticks.append(Tick(kind, at, hall, f"{name} 新增{word} {grew} 件"))
        was_offline, offline = _gateways_down(old), _gateways_down(new)
        if hall in before and offline != was_offline:
            if offline:
                ticks.append(Tick("offline", at, hall, f"{name} 网关离线"))
            else:
                ticks.append(Tick("online", at, hall, f"{name} 网关恢复在线"))
    return ticks


def _gateways_down(live: HallLive) -> bool:
    return live.gateways > 0 and live.online == 0


# ----------------------------------------------------------------------------- helpers


def iso(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


def version_of(doc: Mapping[str, Any]) -> str:
    """Changes when the content does (``generated_at`` aside)."""
    body = {k: v for k, v in doc.items() if k not in ("generated_at", "version")}
    text = json.dumps(body, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def days_back(today: dt.date, n: int) -> list[dt.date]:
    """``n`` business dates ending with ``today``, oldest first."""
    return [today - dt.timedelta(days=n - 1 - i) for i in range(n)]


# ----------------------------------------------------------------------------- the snapshot

MIN_RANKED = 10  # evaluations (or completed cases) a hall, department or window needs to rank
TREND_DAYS = 30
EVERY_HALL_LABEL = "全部大厅"


@dataclass
class WallFigures:
    """Every hall's figures at one moment: what each scope's snapshot is cut from."""

    today: dt.date
    live: dict[str, HallLive] = field(default_factory=dict)
    registry: Mapping[str, HallEntry] = field(default_factory=dict)
    day_keys: Mapping[tuple[str, dt.date], KeyCounts] = field(default_factory=dict)
    day_ontime: Mapping[tuple[str, dt.date], Ratio] = field(default_factory=dict)
    window_keys: Mapping[tuple[str, int], KeyCounts] = field(default_factory=dict)
    department_ontime: Mapping[tuple[str, str], Ratio] = field(default_factory=dict)

    def name(self, hall: str) -> str:
        entry = self.registry.get(hall)
        return entry.name if entry is not None else hall

    def halls(self, scope: frozenset[str] | None) -> list[str]:
        """The halls a scope shows: registered or seen in the data, within ``scope``."""
        every = set(self.live) | set(self.registry)
        every |= {h for h, _ in self.day_keys} | {h for h, _ in self.day_ontime}
        return tree_order(every if scope is None else every & scope, self.registry)


def snapshot(
    fig: WallFigures, scope: frozenset[str] | None, label: str, now: dt.datetime
) -> dict[str, Any]:
    """The contract's snapshot for one scope (every hall: ``scope`` None)."""
    order = fig.halls(scope)
    shown = set(order)
    halls: list[dict[str, Any]] = []
    states: dict[str, tuple[HallState, int]] = {}
    for hall in order:
        live = fig.live.get(hall, HallLive())
        state = live.state
        states[hall] = (state, alarms(live.stages))
        entry = fig.registry.get(hall)
        halls.append(
            {
                "hall_id": hall,
                "name": fig.name(hall),
                "level": entry.level.value if entry is not None else None,
                "parent": visible_parent(hall, fig.registry, shown),
                "state": state.value,
                **lights_doc(live.stages),
                "online": live.online > 0,
                "evaluations_today": live.today.counted,
                "bad_today": live.today.bad,
                "satisfaction_today": rate(live.today.satisfaction),
            }
        )
    days = days_back(fig.today, TREND_DAYS)
    today = sum((fig.live.get(h, HallLive()).today for h in order), KeyCounts())
    ontime_30d = add_ratios(r for (h, _), r in fig.day_ontime.items() if h in shown)
    doc: dict[str, Any] = {
        "generated_at": iso(now),
        "scope": {"label": label},
        "halls": halls,
        "totals": {
            "halls": len(halls),
            "offline": sum(1 for h in halls if h["state"] == HallState.OFFLINE.value),
            "lights": {k: sum(h["lights"][k] for h in halls) for k in ("blue", "yellow", "red")},
            "cards": {k: sum(h["cards"][k] for h in halls) for k in ("yellow", "red")},
            "letters": sum(h["letters"] for h in halls),
            "evaluations_today": today.counted,
            "bad_today": today.bad,
            "satisfaction_today": rate(today.satisfaction),
            "ontime_rate_30d": rate(ontime_30d),
        },
        "trends": trends(fig, shown, days),
        "rankings": ranking_lists(fig, shown),
        "worst": worst_halls(states),
    }
    doc["version"] = version_of(doc)
    return doc


def trends(fig: WallFigures, shown: set[str], days: list[dt.date]) -> dict[str, list[Any]]:
    sat: dict[dt.date, list[Ratio]] = {d: [] for d in days}
    ontime: dict[dt.date, list[Ratio]] = {d: [] for d in days}
    for (hall, day), counts in fig.day_keys.items():
        if hall in shown and day in sat:
            sat[day].append(counts.satisfaction)
    for (hall, day), ratio in fig.day_ontime.items():
        if hall in shown and day in ontime:
            ontime[day].append(ratio)
    return {
        "days": [d.isoformat() for d in days],
        "satisfaction": [rate(add_ratios(sat[d])) for d in days],
        "ontime": [rate(add_ratios(ontime[d])) for d in days],
    }


def ranking_lists(fig: WallFigures, shown: set[str]) -> dict[str, dict[str, list[Any]]]:
    """红黑榜 over the trend's days: halls and windows by 满意率, departments by 按时办结率."""
    per_hall: dict[str, KeyCounts] = {}
    for (hall, _), counts in fig.day_keys.items():
        if hall in shown:
            per_hall[hall] = per_hall.get(hall, KeyCounts()) + counts
    halls = [
        Candidate(h, fig.name(h), h, fig.name(h), c.satisfaction, "satisfaction")
        for h, c in per_hall.items()
    ]
    departments = [
        Candidate(f"{h}/{d}", d, h, fig.name(h), r, "ontime")
        for (h, d), r in fig.department_ontime.items()
        if h in shown
    ]
    windows = [
        Candidate(f"{h}/{w}", f"{w}号窗口", h, fig.name(h), c.satisfaction, "satisfaction")
        for (h, w), c in fig.window_keys.items()
        if h in shown
    ]
    return {
        "halls": rankings(halls, min_n=MIN_RANKED),
        "departments": rankings(departments, min_n=MIN_RANKED),
        "windows": rankings(windows, min_n=MIN_RANKED),
    }
