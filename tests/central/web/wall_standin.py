"""A wall snapshot shaped like GET /api/v1/wall/snapshot for any number of halls, for the page's
layout at scales a test store does not hold (2,000 halls, six-digit counts, full 红黑榜, long
names)."""

from __future__ import annotations

import datetime as dt
from typing import Any

CITIES = ["杭州", "宁波", "温州", "嘉兴", "湖州", "绍兴", "金华", "衢州", "舟山", "台州", "丽水"]
STATES = ["green", "green", "green", "blue", "blue", "yellow", "red", "offline", "idle"]


def _hall(hall_id: str, name: str, level: str, parent: str | None, i: int) -> dict[str, Any]:
    state = STATES[i % len(STATES)]
    return {
        "hall_id": hall_id,
        "name": name,
        "level": level,
        "parent": parent,
        "state": state,
        "lights": {"blue": i % 7, "yellow": int(state == "yellow"), "red": int(state == "red")},
        "cards": {"yellow": i % 3 == 0, "red": int(state == "red")},
        "letters": int(i % 17 == 0),
        "online": state != "offline",
        "evaluations_today": 40 + i % 50,
        "bad_today": i % 4,
        "satisfaction_today": None if state == "idle" else 90.0 + i % 10,
    }


def halls(counties_per_city: int, townships_per_county: int) -> list[dict[str, Any]]:
    """A province, its cities, their counties and townships, in tree order."""
    out = [_hall("ZJ330000", "浙江省政务服务中心", "province", None, 0)]
    for c, city in enumerate(CITIES):
        city_id = f"ZJ33{c + 1:02d}00"
        out.append(_hall(city_id, f"{city}市民中心", "city", "ZJ330000", c + 1))
        for k in range(counties_per_city):
            county_id = f"{city_id[:6]}{k + 1:02d}"
            out.append(_hall(county_id, f"{city}第{k + 1}区县行政服务中心", "county", city_id, k))
            for w in range(townships_per_county):
                out.append(
                    _hall(
                        f"{county_id}T{w + 1:02d}",
                        f"{city}{k + 1}区第{w + 1}街道便民服务中心",
                        "township",
                        county_id,
                        k * 7 + w,
                    )
                )
    return out


def _rank(kind: str, i: int, hall: dict[str, Any], value: float) -> dict[str, Any]:
    names = {"halls": hall["name"], "departments": "市场监督管理局", "windows": f"{i + 3}号窗口"}
    return {
        "id": f"{kind}-{i}",
        "name": names[kind],
        "hall_id": hall["hall_id"],
        "hall_name": hall["name"],
        "value": round(value * 100, 1),
        "n": 120 + i,
        "basis": "satisfaction",
    }


def snapshot(hall_rows: list[dict[str, Any]], today: dt.date) -> dict[str, Any]:
    days = [(today - dt.timedelta(days=29 - i)).isoformat() for i in range(30)]
    rankings = {
        kind: {
            "red": [_rank(kind, i, hall_rows[i], 0.99 - i / 100) for i in range(5)],
            "black": [_rank(kind, i, hall_rows[-1 - i], 0.71 + i / 50) for i in range(5)],
        }
        for kind in ("halls", "departments", "windows")
    }
    return {
        "generated_at": dt.datetime.now(dt.UTC).isoformat().replace("+00:00", "Z"),
        "version": f"standin-{len(hall_rows)}",
        "scope": {"label": "全省"},
        "halls": hall_rows,
        "totals": {
            "halls": len(hall_rows),
            "offline": sum(1 for h in hall_rows if not h["online"]),
            "lights": {
                c: sum(h["lights"][c] for h in hall_rows) for c in ("blue", "yellow", "red")
            },
            "cards": {c: sum(h["cards"][c] for h in hall_rows) for c in ("yellow", "red")},
            "letters": sum(h["letters"] for h in hall_rows),
            "evaluations_today": sum(h["evaluations_today"] for h in hall_rows),
            "bad_today": sum(h["bad_today"] for h in hall_rows),
            "satisfaction_today": 95.3,
            "ontime_rate_30d": 98.7,
        },
        "trends": {
            "days": days,
            "satisfaction": [None if i == 3 else 90.0 + i % 7 for i in range(30)],
            "ontime": [95.0 + i % 5 for i in range(30)],
        },
        "rankings": rankings,
        "worst": [h["hall_id"] for h in hall_rows if h["state"] == "red"][:5],
    }


def hall_detail(hall: dict[str, Any]) -> dict[str, Any]:
    departments = ["市场监督管理局", "公安局", "人力资源和社会保障局", "自然资源和规划局", "税务局"]
    return {
        "hall_id": hall["hall_id"],
        "name": hall["name"],
        "state": hall["state"],
        "departments": [
            {
                "id": f"D{i}",
                "name": name,
                "state": STATES[i * 2 % len(STATES)],
                "lights": {"blue": i, "yellow": i % 2, "red": int(i == 1)},
                "cards": {"yellow": 0, "red": int(i == 1)},
                "satisfaction_30d": 93.0 + i % 5,
                "ontime_30d": 90.0 + 2 * (i % 5),
            }
            for i, name in enumerate(departments * 3)
        ],
        "windows": [
            {
                "window": w,
                "staff_name": ["王芳", "李强", None][w % 3],
                "state": STATES[w % len(STATES)],
                "evaluations_today": 10 + w,
                "bad_today": w % 3,
            }
            for w in range(1, 25)
        ],
        "cases_overdue": [
            {"case_no": f"SJ-2026-{i:04d}", "item": "食品经营许可（新办）", "light": "red_card"}
            for i in range(12)
        ],
    }
