"""The draw without a database: reproducible from its seed, stable under the order cases come
in, sizes by count, percentage and per-department override; the call-back's findings."""

from __future__ import annotations

import hashlib

import pytest
from pydantic import ValidationError

from central.audits.callback import Answer, CallbackIn, Discrepancy, discrepancies
from central.audits.config import AuditConfig, SampleSize
from central.audits.sample import check_seed, draw, pick

CASES = {
    "市场监管局": [f"SJ-{i:03d}" for i in range(40)],
    "人社局": [f"RS-{i:03d}" for i in range(7)],
    "税务局": [f"SW-{i:03d}" for i in range(3)],
}


def by_hand(seed: str, numbers: list[str], n: int) -> list[str]:
    """The documented order: SHA-256 of seed, U+001F, case number."""
    return sorted(numbers, key=lambda no: hashlib.sha256(f"{seed}\x1f{no}".encode()).hexdigest())[
        :n
    ]


def test_same_seed_same_sample_whatever_the_order_of_the_cases() -> None:
    config = AuditConfig(sample=SampleSize(count=5))
    first = draw("2026-11-a", CASES, config)
    shuffled = {d: list(reversed(v)) for d, v in reversed(list(CASES.items()))}
    assert draw("2026-11-a", shuffled, config) == first
    picked = {d.department: list(d.picked) for d in first}
    assert picked["市场监管局"] == by_hand("2026-11-a", CASES["市场监管局"], 5)
    other = draw("2026-11-b", CASES, config)
    assert [d.picked for d in other] != [d.picked for d in first]


def test_picking_chunk_by_chunk_gives_the_whole_pick() -> None:
    numbers = CASES["市场监管局"]
    kept: list[str] = []
    for start in range(0, len(numbers), 7):
        kept = pick("chunks", [*kept, *numbers[start : start + 7]], 5, str)
    assert kept == by_hand("chunks", numbers, 5)


def test_a_case_added_later_changes_the_sample_only_where_it_sorts_in() -> None:
    config = AuditConfig(sample=SampleSize(count=5))
    before = draw("s1", {"d": CASES["市场监管局"]}, config)[0].picked
    after = draw("s1", {"d": [*CASES["市场监管局"], "SJ-LATE"]}, config)[0].picked
    if "SJ-LATE" in after:
        assert [n for n in after if n != "SJ-LATE"] == list(before[:4])
    else:
        assert after == before


def test_sizes_count_percent_the_larger_and_the_department_override() -> None:
    config = AuditConfig(
        sample=SampleSize(count=2, percent=10),  # 40 → max(2, 4) = 4; 7 → max(2, 1) = 2
        departments={"税务局": SampleSize(count=10)},  # never more than it finished: 3
    )
    sizes = {d.department: (d.population, d.size) for d in draw("x", CASES, config)}
    assert sizes == {"市场监管局": (40, 4), "人社局": (7, 2), "税务局": (3, 3)}
    assert SampleSize(percent=12.5).of(9) == 2  # rounded up
    with pytest.raises(ValidationError):
        SampleSize()


def test_seed_and_answers_are_checked() -> None:
    assert check_seed("abc_1-2") == "abc_1-2"
    with pytest.raises(ValueError):
        check_seed("a b")
    with pytest.raises(ValidationError):
        CallbackIn(reached=False, handled=Answer.NO)


def test_only_a_reached_citizen_contradicting_the_record_is_a_finding() -> None:
    said = CallbackIn(
        reached=True,
        handled=Answer.NO,
        timing=Answer.UNSURE,
        evaluation=Answer.NO,
        satisfied=Answer.NO,
    )
    assert discrepancies(said, [1]) == [
        Discrepancy.HANDLING,
        Discrepancy.EVALUATION,
        Discrepancy.SATISFACTION,
    ]
    # no evaluation recorded: "not mine" and "not satisfied" contradict nothing
    assert discrepancies(said, []) == [Discrepancy.HANDLING]
    assert discrepancies(said, [4]) == [Discrepancy.HANDLING, Discrepancy.EVALUATION]
    assert discrepancies(CallbackIn(reached=False), [1]) == []
