"""Six evaluator keys → the national five-level 好差评 scale."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from central.rules.scale import (
    BAD_REVIEW_KEYS,
    DEFAULT_MAPPING,
    DeviceKey,
    MappingBook,
    MappingVersion,
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


def _version(name: str, day: dt.date, key2: int, tag3: str = "服务态度") -> MappingVersion:
    keys: dict[int, dict[str, object]] = {
        k: {"level": r.level, "tag": r.tag} for k, r in DEFAULT_MAPPING.keys.items()
    }
    keys[2] = {"level": key2, "tag": None}
    keys[3] = {"level": 2, "tag": tag3}
    return MappingVersion.model_validate({"version": name, "effective_from": day, "keys": keys})


def test_default_tags() -> None:
    tags = {k: to_national(k).tag for k in range(1, 7)}
    assert tags == {1: None, 2: None, 3: "服务态度", 4: "办理时限", 5: "业务水平", 6: "其他"}
    assert {to_national(k).version for k in range(1, 7)} == {DEFAULT_MAPPING.version}


def test_a_version_applies_from_its_business_day_and_never_before() -> None:
    later = _version("2027", dt.date(2027, 1, 1), key2=3)
    book = MappingBook([later, DEFAULT_MAPPING])  # any order
    eve = dt.datetime(2026, 12, 31, 15, 59, tzinfo=dt.UTC)  # 23:59 in Beijing: still 2026
    new_year = dt.datetime(2026, 12, 31, 16, 0, tzinfo=dt.UTC)  # 00:00 on 1 January
    old, new = to_national(2, eve, book), to_national(2, new_year, book)
    assert (old.level, old.version) == (NationalLevel.SATISFIED, "2019")
    assert (new.level.label, new.version) == ("基本满意", "2027")
    early = to_national(2, dt.datetime(2018, 1, 1, tzinfo=dt.UTC), book)
    assert early.version == "2019"  # before the first version: the first
    row = export_row(
        evaluation_id="e", key=2, evaluated_at=new_year, hall="H", window="1", staff=None,
        book=book,
    )  # fmt: skip
    assert (row.level, row.mapping_version, row.tags) == (3, "2027", [])
    bad = export_row(
        evaluation_id="e", key=3, evaluated_at=eve, hall="H", window="1", staff=None, book=book
    )
    assert (bad.tags, bad.mapping_version) == (["服务态度"], "2019")


def test_mapping_versions_are_checked() -> None:
    with pytest.raises(ValueError, match="tag"):
        _version("x", dt.date(2027, 1, 1), key2=2)  # 不满意 without a tag
    with pytest.raises(ValueError, match="every key"):
        MappingVersion.model_validate(
            {"version": "x", "effective_from": "2027-01-01", "keys": {1: {"level": 5}}}
        )
    with pytest.raises(ValueError, match="distinct"):
        MappingBook([DEFAULT_MAPPING, _version("2019", dt.date(2027, 1, 1), key2=4)])
    with pytest.raises(ValueError, match="tag"):
        _version("y", dt.date(2027, 1, 1), key2=4, tag3="态度差")
