"""A benchmark's figures: printed, and kept by name in a JSON file under test-output/."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

OUTPUT = Path(__file__).resolve().parents[2] / "test-output"


def record_ms(results: Path, name: str, seconds: float, unit: str = "ms", digits: int = 1) -> None:
    results.parent.mkdir(exist_ok=True)
    data = json.loads(results.read_text()) if results.exists() else {}
    data[name] = {
        "value": round(seconds * 1000, digits),
        "unit": unit,
        "at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }
    results.write_text(json.dumps(data, indent=2, ensure_ascii=False))
    print(f"\nBENCH {name}: {seconds * 1000:,.{digits}f} {unit}")


def record(results: Path, name: str, value: float, unit: str, floor: str = "") -> None:
    """A figure in its own unit (events/s, s, a ratio), with the floor or target it is read
    against."""
    results.parent.mkdir(exist_ok=True)
    data = json.loads(results.read_text()) if results.exists() else {}
    data[name] = {
        "value": round(value, 2),
        "unit": unit,
        "floor": floor,
        "at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }
    results.write_text(json.dumps(data, indent=2, ensure_ascii=False))
    print(f"\nBENCH {name}: {value:,.2f} {unit}  {floor}")
