"""The demo's ground-truth comparison on plain values: which central result belongs to which
simulated press, and what counts as a disagreement."""

from __future__ import annotations

import datetime as dt
from typing import Any

from firmware_bridges.hallsim import compare

T0 = dt.datetime(2026, 12, 7, 2, 0, tzinfo=dt.UTC)


def press(at: float, addr: int, key: int, counted: bool, *flags: str) -> dict[str, Any]:
    return {
        "kind": "press",
        "at": T0.timestamp() + at,
        "window": addr - 0x80,
        "addr": addr,
        "key": key,
        "why": "invited" if counted else "stray",
        "ticket": None,
        "dev_seq": 1,
        "session": 1,
        "counted": counted,
        "flags": list(flags),
    }


def result(
    at: float, addr: int, key: int, counted: bool, *flags: str, seq: int = 1
) -> dict[str, Any]:
    return {
        "gateway": "gw",
        "seq": seq,
        "addr": addr,
        "key": key,
        "counted": counted,
        "flags": list(flags),
        "evaluated_at": (T0 + dt.timedelta(seconds=at)).isoformat(),
    }


def test_agreement_and_each_kind_of_disagreement() -> None:
    truth = [
        press(0.0, 0x81, 1, True),
        press(1.2, 0x81, 2, False, "OUT_OF_SESSION", "DUPLICATE", "RAPID_REPEAT"),
        press(5.0, 0x82, 1, True),  # central disagrees: LATE
        press(9.0, 0x83, 4, True),  # never reached central
        press(12.0, 0x84, 1, True),
        {"kind": "service", "window": 1},
    ]
    central = [
        result(0.1, 0x81, 1, True, seq=1),
        result(1.3, 0x81, 2, False, "DUPLICATE", "OUT_OF_SESSION", "RAPID_REPEAT", seq=2),
        result(5.1, 0x82, 1, False, "LATE", seq=3),
        result(9.2, 0x83, 5, True, seq=4),  # another key: not this press
        result(12.1, 0x84, 1, True, "CASE_AMBIGUOUS", seq=5),  # about cases, not compared
    ]
    check = compare(truth, central)
    assert (check.presses, check.matched) == (5, 4)
    assert (check.counted_truth, check.counted_central) == (4, 2)
    assert check.flags_truth["DUPLICATE"] == check.flags_central["DUPLICATE"] == 1
    assert (check.flags_truth["LATE"], check.flags_central["LATE"]) == (0, 1)
    assert len(check.mismatches) == 2, check.mismatches
    assert any("窗口3" in m and "not at central" in m for m in check.mismatches)
    assert any("窗口2" in m and "LATE" in m for m in check.mismatches)
    assert abs(check.counted_error - 0.5) < 1e-9


def test_one_result_answers_one_press_and_until_leaves_out_recent_presses() -> None:
    truth = [
        press(0.0, 0x81, 1, True),
        press(0.9, 0x81, 1, False, "OUT_OF_SESSION"),
        press(100.0, 0x81, 1, True),
    ]
    central = [
        result(0.2, 0x81, 1, True, seq=1),
        result(1.0, 0x81, 1, False, "OUT_OF_SESSION", seq=2),
    ]
    check = compare(truth, central, until=T0.timestamp() + 50)
    assert (check.presses, check.matched, check.mismatches) == (2, 2, [])
    assert compare(truth, central[:1]).matched == 1
