"""Runs of simulated province weeks with gaming seeded, scored against the ground truth: the
recall of seeded gaming per pattern and strength, and the share of clean window-weeks on
which the detector opened anything. Shared by the test and the benchmark."""

from __future__ import annotations

import dataclasses
import datetime as dt
import random
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from central.gaming.context import baseline_from
from central.gaming.detector import detect_many
from central.gaming.model import Anomaly, Baseline, Facts, Pattern
from tests.central.gaming.hallweek import BUSY, QUIET, HallSpec, Seed, Truth, hall_week

MONDAY = dt.date(2026, 11, 2)

# Strengths the detector is held to (recall ≥ 95 %), per hall size. Weaker ones, where a week of
# a window cannot tell gaming from chance, are in WEAK (the benchmark reports them).
STRONG: Mapping[Pattern, Mapping[str, Sequence[float]]] = {
    Pattern.REGULAR_TIMING: {"busy": (1.0, 0.95), "quiet": (1.0,)},
    Pattern.INSTANT_PRESS: {"busy": (0.5, 0.3), "quiet": (0.5, 0.3)},
    Pattern.KEY_STREAK: {"busy": (140, 120), "quiet": ()},
    Pattern.PRESS_WITHOUT_CITIZEN: {"busy": (12, 8), "quiet": (12, 8)},
    Pattern.SELECTIVE_INVITING: {"busy": (1.0, 0.8), "quiet": (1.0, 0.8)},
    Pattern.CANCELLED_INVITATIONS: {"busy": (0.8, 0.5), "quiet": ()},
    Pattern.LOW_EVALUATION_RATE: {"busy": (0.8, 0.6), "quiet": (0.8, 0.6)},
    Pattern.MALICIOUS_SAME_APPLICANT: {"busy": (5, 3), "quiet": (5, 3)},
    Pattern.MALICIOUS_ABANDONED_CASES: {"busy": (10,), "quiet": (10,)},
    Pattern.CONTRADICTS_RECORD: {"busy": (6, 4), "quiet": (6, 4)},
    Pattern.DISTRIBUTION_SHIFT: {"busy": (1.0, 0.4, 0.25), "quiet": (0.5,)},
}
WEAK: Mapping[Pattern, Mapping[str, Sequence[float]]] = {
    Pattern.REGULAR_TIMING: {"busy": (0.8,), "quiet": (0.95,)},
    Pattern.INSTANT_PRESS: {"busy": (0.15,), "quiet": (0.15,)},
    Pattern.KEY_STREAK: {"busy": (100, 80), "quiet": (30,)},
    Pattern.PRESS_WITHOUT_CITIZEN: {"busy": (5,), "quiet": (5,)},
    Pattern.SELECTIVE_INVITING: {"busy": (0.5,), "quiet": (0.5,)},
    Pattern.CANCELLED_INVITATIONS: {"busy": (0.3,), "quiet": (0.8, 0.5)},
    Pattern.LOW_EVALUATION_RATE: {"busy": (0.4,), "quiet": (0.4,)},
    Pattern.MALICIOUS_SAME_APPLICANT: {"busy": (), "quiet": ()},
    Pattern.MALICIOUS_ABANDONED_CASES: {"busy": (6, 4), "quiet": (6, 4)},
    Pattern.CONTRADICTS_RECORD: {"busy": (3,), "quiet": (3,)},
    Pattern.DISTRIBUTION_SHIFT: {"busy": (0.15,), "quiet": (1.0, 0.4, 0.25)},
}


def size(spec: HallSpec) -> str:
    return "busy" if spec.windows > 5 else "quiet"


def province(busy: int, quiet: int) -> list[HallSpec]:
    return [HallSpec(f"B{i}", *BUSY) for i in range(busy)] + [
        HallSpec(f"Q{i}", *QUIET) for i in range(quiet)
    ]


def baselines(specs: Sequence[HallSpec]) -> dict[str, Baseline]:
    """Each hall's baseline from clean earlier weeks (more of them for a quiet hall)."""
    return {
        s.hall_id: baseline_from(
            [
                hall_week(s, MONDAY - dt.timedelta(weeks=k + 1), 1000 + k)
                for k in range(2 if size(s) == "busy" else 6)
            ]
        )
        for s in specs
    }


@dataclass
class Score:
    seeded: Counter[tuple[Pattern, float, str]] = field(default_factory=Counter)
    found: Counter[tuple[Pattern, float, str]] = field(default_factory=Counter)
    clean: int = 0  # clean window-weeks
    falsely: list[Anomaly] = field(default_factory=list)  # opened on clean window-weeks
    false_windows: set[tuple[int, str, int | None]] = field(default_factory=set)
    anomalies: list[Anomaly] = field(default_factory=list)
    hall_weeks: int = 0
    detect_seconds: float = 0.0  # in the detector alone, simulation left out

    @property
    def recall(self) -> float:
        return sum(self.found.values()) / max(1, sum(self.seeded.values()))

    @property
    def false_rate(self) -> float:
        return len(self.false_windows) / max(1, self.clean)


def run(
    specs: Sequence[HallSpec],
    weeks: int,
    seed: int,
    strengths: Mapping[Pattern, Mapping[str, Sequence[float]]] = STRONG,
    gamed_per_hall: Mapping[str, int] | None = None,
) -> Score:
    """``weeks`` province runs; in each, some windows of every hall gamed (one pattern at one
    strength each), the rest clean."""
    rng = random.Random(seed)
    per_hall = gamed_per_hall or {"busy": 3, "quiet": 1}
    base = baselines(specs)
    score = Score()
    for week in range(weeks):
        truth = Truth()
        facts: list[Facts] = []
        for spec in specs:
            kinds = [(p, s) for p, by in strengths.items() for s in by[size(spec)]]
            windows = rng.sample(range(1, spec.windows + 1), per_hall[size(spec)])
            seeds = []
            for w in windows:
                pattern, strength = rng.choice(kinds)
                mode = "good" if pattern is Pattern.DISTRIBUTION_SHIFT and strength == 1 else "bad"
                seeds.append(Seed(pattern, w, strength, mode))
            f = hall_week(spec, MONDAY, rng.randrange(10**9), seeds, truth)
            facts.append(dataclasses.replace(f, baseline=base[spec.hall_id]))
        started = time.perf_counter()
        opened = detect_many(facts)
        score.detect_seconds += time.perf_counter() - started
        score.hall_weeks += len(facts)
        score.anomalies.extend(opened)
        _score(score, week, specs, truth, opened)
    return score


def _score(
    score: Score, week: int, specs: Sequence[HallSpec], truth: Truth, opened: list[Anomaly]
) -> None:
    by_hall = {s.hall_id: s for s in specs}
    for (hall, window), s in truth.seeded.items():
        key = (s.pattern, s.strength, size(by_hall[hall]))
        score.seeded[key] += 1
        score.found[key] += any(_matches(a, hall, window, s, truth) for a in opened)
    for spec in specs:
        for w in range(1, spec.windows + 1):
            if (spec.hall_id, w) in truth.touched:
                continue
            score.clean += 1
            mine = [a for a in opened if a.hall_id == spec.hall_id and a.window == w]
            if mine:
                score.falsely.extend(mine)
                score.false_windows.add((week, spec.hall_id, w))
    for a in opened:  # an applicant-wide anomaly (no window) no seed explains
        if a.window is None and a.evidence.get("applicant_digest") not in truth.digests:
            score.falsely.append(a)
            score.false_windows.add((week, a.hall_id, None))


def _matches(a: Anomaly, hall: str, window: int, seed: Seed, truth: Truth) -> bool:
    if a.pattern is not seed.pattern or a.hall_id != hall:
        return False
    if seed.pattern is Pattern.CONTRADICTS_RECORD:
        return truth.digests.get(str(a.evidence.get("applicant_digest"))) is seed
    return a.window == window
