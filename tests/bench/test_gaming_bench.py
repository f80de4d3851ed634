"""Recall and false openings of the gaming detector over simulated province weeks, per pattern
and strength (figures printed and kept in test-output/gaming-bench.json; nothing asserted).

Run: .venv/bin/pytest -m bench -s tests/bench/test_gaming_bench.py
"""

from __future__ import annotations

import datetime as dt
import json
import time
from collections import Counter

import pytest

from central.gaming.model import Pattern
from tests.bench.figures import OUTPUT
from tests.central.gaming.scenario import STRONG, WEAK, Score, province, run

BUSY_HALLS, QUIET_HALLS = 6, 12  # a prefecture's halls: a few busy city halls, many county ones


def _table(name: str, score: Score) -> dict[str, object]:
    rows = {}
    print(f"\n{name}: recall {score.recall:.1%} of {sum(score.seeded.values())} seeded; "
          f"clean window-weeks falsely opened {len(score.false_windows)}/{score.clean} "
          f"= {score.false_rate:.2%}")  # fmt: skip
    for (pattern, strength, size), n in sorted(score.seeded.items(), key=str):
        found = score.found[(pattern, strength, size)]
        rows[f"{pattern.value} {size} {strength:g}"] = {"found": found, "seeded": n}
        print(f"  {pattern.value:27} {size:5} {strength:>6g}  {found:3}/{n:<3} {found / n:6.1%}")
    per = 1000 * score.detect_seconds / max(1, score.hall_weeks)
    print(f"  the detector alone: {per:.0f} ms a hall-week ({score.hall_weeks} hall-weeks)")
    by_pattern = Counter(a.pattern.value for a in score.falsely)
    for opened, count in sorted(by_pattern.items()):
        print(f"  false: {opened:27} {count}")
    return {
        "recall": round(score.recall, 4),
        "seeded": sum(score.seeded.values()),
        "clean_window_weeks": score.clean,
        "falsely_opened": len(score.false_windows),
        "false_rate": round(score.false_rate, 5),
        "false_by_pattern": dict(by_pattern),
        "rows": rows,
        "detect_ms_per_hall_week": round(1000 * score.detect_seconds / score.hall_weeks, 1),
    }


@pytest.mark.bench
def test_gaming_recall_and_false_openings() -> None:
    specs = province(BUSY_HALLS, QUIET_HALLS)
    figures: dict[str, object] = {}
    t0 = time.perf_counter()
    figures["strong"] = _table("held strengths", run(specs, 12, seed=101))
    figures["weak"] = _table("weaker strengths", run(specs, 6, seed=202, strengths=WEAK))
    clean = run(specs, 6, seed=303, gamed_per_hall={"busy": 0, "quiet": 0})
    figures["clean"] = _table("clean weeks only", clean)
    seconds = time.perf_counter() - t0
    hall_weeks = (12 + 6 + 6) * len(specs)
    print(f"\n{hall_weeks} hall-weeks simulated and judged in {seconds:.1f} s")
    figures["hall_weeks"] = hall_weeks
    figures["seconds"] = round(seconds, 1)
    figures["patterns"] = [p.value for p in Pattern]
    figures["held"] = {p.value: dict(v) for p, v in STRONG.items()}
    figures["at"] = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    OUTPUT.mkdir(exist_ok=True)
    (OUTPUT / "gaming-bench.json").write_text(json.dumps(figures, indent=2, ensure_ascii=False))
