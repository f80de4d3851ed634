"""The hall board's health panel: uplink, backlog, clock, disk, tasks and devices, each problem
with the code the page translates (edge/web/messages.json)."""

from __future__ import annotations

import math
import shutil
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from edge.clock import Clock
    from edge.devices.evaluators import EvaluatorSupervisor
    from edge.devices.queue_machine import QueueSupervisor
    from edge.journal import Journal
    from edge.uplink import Uplink
    from hallkit.supervise import Supervisor

BACKLOG_ALERT_S = 300  # unacknowledged data older than this is a problem, not a hiccup
DISK_ALERT_PCT = 90
JOURNAL_ALERT_PCT = 80  # the journal trims acknowledged data at 100%; 80% means acks stall

Message = dict[str, Any]
EvaluatorTable = dict[int, tuple[dict[str, Any], bool, str]]  # window → status, bus up, port


class LiveParts(Protocol):
    """What the panel reads on every refresh (the board's sources are one)."""

    @property
    def journal(self) -> Journal: ...
    @property
    def clock(self) -> Clock: ...
    @property
    def uplink(self) -> Uplink | None: ...
    @property
    def queue(self) -> QueueSupervisor | None: ...
    @property
    def supervisor(self) -> Supervisor | None: ...


def utc_text(moment: datetime) -> str:
    """The journal's own UTC format, so replayed and live times compare as text."""
    return moment.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def _draining(uplink: Uplink | None, backlog: int) -> Message:
    """补传中: how fast central takes the backlog now, the minutes left at that pace, and
    whether the hall's new events go ahead of it (the uplink's live lane)."""
    rate = uplink.drain.per_second(time.monotonic()) if uplink is not None else 0.0
    return {
        "per_s": round(rate, 1),
        "minutes_left": math.ceil(backlog / rate / 60) if backlog and rate > 0 else None,
        "live_ahead": bool(uplink is not None and uplink.window.live_from is not None),
    }


def evaluator_table(evaluators: Sequence[EvaluatorSupervisor]) -> EvaluatorTable:
    """window → (device status, its bus connected, the bus port)."""
    out: EvaluatorTable = {}
    for supervisor in evaluators:
        bus = supervisor.bus
        connected = bus is not None and bus.connected
        for status in supervisor.status():
            out[status["window"]] = (status, connected, supervisor.config.port)
    return out


def health_panel(
    sources: LiveParts,
    evaluators: EvaluatorTable,
    cameras: dict[str, str],
    data_dir: Path | None,
    now: datetime,
) -> Message:
    """The health part of the picture; ``problems`` say what is wrong, in the page's codes."""
    src = sources
    problems: list[Message] = []
    uplink = {
        "connected": bool(src.uplink and src.uplink.connected),
        "error": src.uplink.last_error if src.uplink else None,
    }
    if src.uplink is not None and not src.uplink.connected:
        problems.append({"code": "uplink_down", "params": {}})
    journal = src.journal.state()
    oldest = utc_text(journal.oldest_unacked_utc) if journal.oldest_unacked_utc else None
    if journal.oldest_unacked_utc is not None and journal.backlog:
        age = (now - journal.oldest_unacked_utc).total_seconds()
        if age > BACKLOG_ALERT_S:
            problems.append(
                {
                    "code": "backlog_stale",
                    "params": {"count": journal.backlog, "minutes": int(age // 60)},
                }
            )
    if journal.dropped_unacked:
        problems.append({"code": "data_lost", "params": {"count": journal.dropped_unacked}})
    if src.journal.write_errors:
        problems.append({"code": "journal_errors", "params": {"count": src.journal.write_errors}})
    synced = src.clock.synchronised()
    if not synced:
        problems.append({"code": "clock_unsynced", "params": {}})
    journal_pct = (
        round(100 * journal.disk_bytes / journal.limit_bytes) if journal.limit_bytes else 0
    )
    if journal_pct >= JOURNAL_ALERT_PCT:
        problems.append({"code": "journal_full", "params": {"pct": journal_pct}})
    fs_pct = _fs_used_pct(data_dir)
    if fs_pct is not None and fs_pct >= DISK_ALERT_PCT:
        problems.append({"code": "disk_full", "params": {"pct": fs_pct}})
    failing = sorted(
        name
        for name, task in (src.supervisor.status().items() if src.supervisor is not None else ())
        if task["state"] in ("restarting", "failed")
    )
    if failing:
        problems.append({"code": "tasks_failing", "params": {"tasks": "、".join(failing)}})
    devices = _devices(sources, evaluators, cameras, problems)
    return {
        "ok": not problems,
        "problems": problems,
        "uplink": uplink,
        "backlog": {
            "events": journal.backlog,
            "oldest_utc": oldest,
            "dropped": journal.dropped_unacked,
            **_draining(src.uplink, journal.backlog),
        },
        "clock": {"synchronised": synced},
        "disk": {
            "journal_bytes": journal.disk_bytes,
            "journal_limit": journal.limit_bytes,
            "journal_pct": journal_pct,
            "fs_used_pct": fs_pct,
        },
        "devices": devices,
    }


def _devices(
    sources: LiveParts, evaluators: EvaluatorTable, cameras: dict[str, str], problems: list[Message]
) -> Message:
    buses_down = sorted({port for _, connected, port in evaluators.values() if not connected})
    for port in buses_down:
        problems.append({"code": "bus_down", "params": {"port": port}})
    offline = sorted(
        w for w, (s, connected, _) in evaluators.items() if connected and s["online"] is False
    )
    stuck = sorted(
        w
        for w, (s, connected, _) in evaluators.items()
        if connected and s["online"] is not False and s["stuck_key"]
    )
    display = sorted(
        w
        for w, (s, connected, _) in evaluators.items()
        if connected and s["online"] is not False and s["display_failed"]
    )
    for code, windows in (
        ("evaluators_offline", offline),
        ("evaluators_stuck", stuck),
        ("evaluators_display", display),
    ):
        if windows:
            problems.append(
                {
                    "code": code,
                    "params": {"windows": "、".join(map(str, windows)), "count": len(windows)},
                }
            )
    queue_machine = None
    if sources.queue is not None:
        feed = sources.queue.feed
        queue_machine = "connected" if feed is not None and feed.connected else "disconnected"
        if queue_machine == "disconnected":
            problems.append({"code": "queue_machine_down", "params": {}})
    cameras_offline = sorted(c for c, state in cameras.items() if state != "online")
    down = [c for c in cameras_offline if cameras[c] in ("offline", "stalled")]
    if down:
        problems.append({"code": "cameras_offline", "params": {"cameras": "、".join(down)}})
    for camera in cameras_offline:
        if camera not in down:
            # online but unable to judge: its own problem, saying what to do
            problems.append({"code": f"camera_{cameras[camera]}", "params": {"camera": camera}})
    unavailable = {
        w for w, (s, connected, _) in evaluators.items() if not connected or s["online"] is False
    }
    return {
        "evaluators_total": len(evaluators),
        "evaluators_offline": sorted(unavailable),
        "buses_down": buses_down,
        "queue_machine": queue_machine,
        "cameras_total": len(cameras),
        "cameras_offline": cameras_offline,
    }


def _fs_used_pct(data_dir: Path | None) -> int | None:
    if data_dir is None:
        return None
    try:
        usage = shutil.disk_usage(data_dir)
    except OSError:
        return None
    return round(100 * usage.used / usage.total) if usage.total else None
