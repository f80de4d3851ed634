"""Six evaluator keys → the national five-level 好差评 scale."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from central.rules.scale import (
    BAD_REVIEW_KEYS,
    DeviceKey,
    NationalLevel,
    export_row,
    is_bad_review,
    to_national,
)

# key → (level, level name, reason, dimension), written from the table in scale.py's docstring
EXPECTED = {
    1: (5, "非常满意", None, None),
    2: (4, "满意", None, None),
    3: (2, "不满意", "服务态度不好", "服务态度"),
    4: (2, "不满意", "办理时间太长", "服务效率"),
    5: (2, "不满意", "业务不熟", "服务水平"),
    6: (2, "不满意", "其他", "整体满意度"),
}


@pytest.mark.parametrize("key", sorted(EXPECTED))
def test_mapping(key: int) -> None:
    rating = to_national(key)
    assert (int(rating.level), rating.level.label, rating.reason, rating.dimension) == EXPECTED[key]
    assert is_bad_review(key) is (key >= 3)


def test_bad_reviews_are_the_national_bad_levels() -> None:
    assert {int(k) for k in BAD_REVIEW_KEYS} == {3, 4, 5, 6}
    assert [lv.label for lv in sorted(NationalLevel, reverse=True)] == [
        "非常满意", "满意", "基本满意", "不满意", "非常不满意"
    ]  # fmt: skip
    assert [lv.is_bad for lv in sorted(NationalLevel)] == [True, True, False, False, False]


@pytest.mark.parametrize("key", [0, 7, 255, -1])
def test_invalid_keys_are_hardware_faults(key: int) -> None:
    with pytest.raises(ValueError, match="hardware fault"):
        to_national(key)


def test_export_row() -> None:
    row = export_row(
        evaluation_id="ev-1",
        key=4,
        evaluated_at=dt.datetime(2026, 10, 9, 8, 5, tzinfo=dt.UTC),
        hall="H1",
        window="W2",
        staff="000123",
        case_no="c3",
        department="人社",
    )
    data = json.loads(row.model_dump_json())
    assert data["level"] == 2 and data["level_name"] == "不满意" and data["bad_review"] is True
    assert data["reasons"] == ["办理时间太长"] and data["dimension"] == "服务效率"
    assert data["device_key"] == 4 and data["device_key_name"] == "办理时间太长"
    assert data["evaluated_at"] == "2026-10-09T16:05:00+08:00"  # exported in Beijing time
    good = export_row(
        evaluation_id="ev-2",
        key=DeviceKey.VERY_SATISFIED,
        evaluated_at=dt.datetime(2026, 10, 9, 9, tzinfo=dt.UTC),
        hall="H1",
        window="W1",
        staff=None,
    )
    assert (good.level, good.bad_review, good.reasons, good.case_no) == (5, False, [], None)
