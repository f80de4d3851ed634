"""The six evaluator keys on the national five-level 好差评 scale, and the export row.

The national scale (国办发〔2019〕51号, 政务服务“好差评”): 非常满意 5, 满意 4, 基本满意 3,
不满意 2, 非常不满意 1; 不满意 and 非常不满意 are 差评 and must be followed up.

The hall's six-key evaluator (FF 68 bus, KEY 1–6) maps as follows:

| key | device label | national level | reason (差评原因) | offline dimension |
|---|---|---|---|---|
| 1 | 非常满意 | 5 非常满意 | — | — |
| 2 | 基本满意 | 4 满意 | — | — |
| 3 | 服务态度不好 | 2 不满意 | 服务态度不好 | 服务态度 |
| 4 | 办理时间太长 | 2 不满意 | 办理时间太长 | 服务效率 |
| 5 | 业务不熟 | 2 不满意 | 业务不熟 | 服务水平 |
| 6 | 其他 | 2 不满意 | 其他 | 整体满意度 |

Why these choices:
- Key 2 is the device's ordinary "I am satisfied" press (one of only two positive keys), so it
  is the national 满意; the national 基本满意 (3) has no key.
- Keys 3–5 name a shortcoming, not how strongly it was felt: one press cannot tell 不满意
  from 非常不满意, and exporting every complaint as the extreme level would overstate the
  hall's dissatisfaction on the provincial platform. Both levels are 差评, so the follow-up
  duty is the same either way; 非常不满意 is left to channels that ask for it.
- Key 6 sits among the complaint keys on the device and the hall treats it as a bad review
  (it opens a follow-up item), so it is 不满意 with the reason 其他.

Levels and reason tags (服务态度, 办理时限, 业务水平, 其他) are versioned (``MappingVersion``): a
province that changes them adds a version with its ``effective_from`` date in the configuration
(``haocha.mapping_versions``); an evaluation is mapped by the version in force on its business
day, and every exported or reported record names the version it used, so a change never
rewrites what was mapped before it. This module is the one definition: the CSV export and the
feed to the upper platform both map through a ``MappingBook``. The device's own reason text and
the offline dimension belong to the key, not to a version.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from enum import IntEnum, StrEnum

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    field_serializer,
    model_validator,
)

from central.rules.workdays import BUSINESS_TZ, business_date


class DeviceKey(IntEnum):
    """KEY values of the evaluator bus; anything else is a hardware fault."""

    VERY_SATISFIED = 1
    SATISFIED = 2
    BAD_ATTITUDE = 3
    TOO_SLOW = 4
    UNFAMILIAR = 5
    OTHER = 6

    @property
    def label(self) -> str:
        return _KEY_LABELS[self]


_KEY_LABELS = {
    DeviceKey.VERY_SATISFIED: "非常满意",
    DeviceKey.SATISFIED: "基本满意",
    DeviceKey.BAD_ATTITUDE: "服务态度不好",
    DeviceKey.TOO_SLOW: "办理时间太长",
    DeviceKey.UNFAMILIAR: "业务不熟",
    DeviceKey.OTHER: "其他",
}


class NationalLevel(IntEnum):
    VERY_SATISFIED = 5
    SATISFIED = 4
    BASICALLY_SATISFIED = 3
    DISSATISFIED = 2
    VERY_DISSATISFIED = 1

    @property
    def label(self) -> str:
        return _LEVEL_LABELS[self]

    @property
    def is_bad(self) -> bool:
        """差评: 不满意 or 非常不满意."""
        return self <= NationalLevel.DISSATISFIED


_LEVEL_LABELS = {
    NationalLevel.VERY_SATISFIED: "非常满意",
    NationalLevel.SATISFIED: "满意",
    NationalLevel.BASICALLY_SATISFIED: "基本满意",
    NationalLevel.DISSATISFIED: "不满意",
    NationalLevel.VERY_DISSATISFIED: "非常不满意",
}


class Tag(StrEnum):
    """差评原因 tags of the national platforms."""

    ATTITUDE = "服务态度"
    TIME_LIMIT = "办理时限"
    SKILL = "业务水平"
    OTHER = "其他"


class KeyRule(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    level: NationalLevel = Field(description="5 非常满意 … 1 非常不满意")
    tag: Tag | None = Field(default=None, description="差评原因 tag; only for 不满意 and below")


class MappingVersion(BaseModel):
    """One version of the key → level and tag mapping, in force from ``effective_from``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    version: str = Field(min_length=1, max_length=32, pattern=r"^[0-9A-Za-z._-]+$")
    effective_from: dt.date = Field(description="first business day (Asia/Shanghai) it applies")
    keys: dict[int, KeyRule] = Field(description="every key 1–6")

    @model_validator(mode="after")
    def _whole(self) -> MappingVersion:
        if set(self.keys) != {int(k) for k in DeviceKey}:
            raise ValueError("映射必须覆盖按键 1–6 / a mapping names every key 1–6, no other")
        for key, rule in self.keys.items():
            if rule.level.is_bad != (rule.tag is not None):
                raise ValueError(
                    f"按键 {key}：差评必须有原因标签，好评不得有 / key {key}: a bad level needs a "
                    "tag and only a bad level may have one"
                )
        return self


DEFAULT_MAPPING = MappingVersion(
    version="2019",
    effective_from=dt.date(2019, 12, 1),  # 国办发〔2019〕51号, 政务服务“好差评”
    keys={
        DeviceKey.VERY_SATISFIED: KeyRule(level=NationalLevel.VERY_SATISFIED),
        DeviceKey.SATISFIED: KeyRule(level=NationalLevel.SATISFIED),
        DeviceKey.BAD_ATTITUDE: KeyRule(level=NationalLevel.DISSATISFIED, tag=Tag.ATTITUDE),
        DeviceKey.TOO_SLOW: KeyRule(level=NationalLevel.DISSATISFIED, tag=Tag.TIME_LIMIT),
        DeviceKey.UNFAMILIAR: KeyRule(level=NationalLevel.DISSATISFIED, tag=Tag.SKILL),
        DeviceKey.OTHER: KeyRule(level=NationalLevel.DISSATISFIED, tag=Tag.OTHER),
    },
)


class MappingBook:
    """The configured versions; ``at`` picks the one in force on a moment's business day (the
    first version for anything before it)."""

    def __init__(self, versions: Sequence[MappingVersion] = (DEFAULT_MAPPING,)) -> None:
        if not versions:
            raise ValueError("至少需要一个映射版本 / at least one mapping version")
        self.versions = tuple(sorted(versions, key=lambda v: v.effective_from))
        names = [v.version for v in self.versions]
        days = [v.effective_from for v in self.versions]
        if len(set(names)) != len(names) or len(set(days)) != len(days):
            raise ValueError(
                "映射版本号和生效日期不得重复 / mapping versions need distinct names and dates"
            )

    def at(self, when: dt.datetime) -> MappingVersion:
        day = business_date(when)
        found = self.versions[0]
        for version in self.versions:
            if version.effective_from <= day:
                found = version
        return found


DEFAULT_BOOK = MappingBook()


@dataclass(frozen=True, slots=True)
class NationalRating:
    level: NationalLevel
    reason: str | None  # 差评原因 as the device says it, None for a good review
    dimension: str | None  # the national offline indicator the reason falls under
    tag: Tag | None = None  # 差评原因 tag of the mapping version
    version: str = DEFAULT_MAPPING.version  # the mapping version used


# what belongs to the key whatever the version: the device's words and the offline dimension
_REASONS: dict[DeviceKey, tuple[str, str]] = {
    DeviceKey.BAD_ATTITUDE: ("服务态度不好", "服务态度"),
    DeviceKey.TOO_SLOW: ("办理时间太长", "服务效率"),
    DeviceKey.UNFAMILIAR: ("业务不熟", "服务水平"),
    DeviceKey.OTHER: ("其他", "整体满意度"),
}

SATISFIED_KEYS = frozenset({DeviceKey.VERY_SATISFIED, DeviceKey.SATISFIED})
BAD_REVIEW_KEYS = frozenset(
    DeviceKey(k) for k, rule in DEFAULT_MAPPING.keys.items() if rule.level.is_bad
)


def device_key(key: int) -> DeviceKey:
    try:
        return DeviceKey(key)
    except ValueError:
        raise ValueError(
            f"评价键值 {key} 无效（硬件故障，不作为评价） / key {key} is not 1–6: a hardware "
            "fault, never an evaluation"
        ) from None


def to_national(
    key: int, at: dt.datetime | None = None, book: MappingBook = DEFAULT_BOOK
) -> NationalRating:
    """The rating of ``key`` under the version in force at ``at`` (None: the latest)."""
    k = device_key(key)
    version = book.versions[-1] if at is None else book.at(at)
    rule = version.keys[int(k)]
    reason, dimension = _REASONS.get(k, (None, None)) if rule.level.is_bad else (None, None)
    return NationalRating(rule.level, reason, dimension, rule.tag, version.version)


def is_bad_review(key: int) -> bool:
    return device_key(key) in BAD_REVIEW_KEYS


class ExportRow(BaseModel):
    """One evaluation as exported to the 好差评 platform (field names are ours; a provincial
    interface adapter renames them)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    evaluation_id: str
    case_no: str | None = Field(description="办件编号; None for a key pressed with no case")
    hall: str
    hall_name: str = Field(description="大厅名称 (the registry of halls; the hall id if none)")
    department: str | None
    window: str
    staff: str | None
    staff_name: str | None = Field(default=None, description="工作人员姓名 (hall setup)")
    channel: str = Field(default="线下-窗口评价器", description="评价渠道")
    level: int = Field(ge=1, le=5, description="评价等级 5 非常满意 … 1 非常不满意")
    level_name: str
    bad_review: bool = Field(description="差评 (level 1 or 2)")
    reasons: list[str] = Field(description="差评原因")
    dimension: str | None
    tags: list[str] = Field(default_factory=list, description="差评原因标签 (mapping version)")
    mapping_version: str = Field(default=DEFAULT_MAPPING.version, description="映射版本")
    device_key: int = Field(ge=1, le=6)
    device_key_name: str
    evaluated_at: AwareDatetime

    @field_serializer("evaluated_at")
    def _shanghai(self, value: dt.datetime) -> str:
        return value.astimezone(BUSINESS_TZ).isoformat()


def export_row(
    *,
    evaluation_id: str,
    key: int,
    evaluated_at: dt.datetime,
    hall: str,
    window: str,
    staff: str | None,
    case_no: str | None = None,
    department: str | None = None,
    staff_name: str | None = None,
    hall_name: str | None = None,
    book: MappingBook = DEFAULT_BOOK,
) -> ExportRow:
    k = device_key(key)
    rating = to_national(k, evaluated_at, book)
    return ExportRow(
        evaluation_id=evaluation_id,
        case_no=case_no,
        hall=hall,
        hall_name=hall if hall_name is None else hall_name,
        department=department,
        window=window,
        staff=staff,
        staff_name=staff_name,
        level=int(rating.level),
        level_name=rating.level.label,
        bad_review=rating.level.is_bad,
        reasons=[rating.reason] if rating.reason else [],
        dimension=rating.dimension,
        tags=[rating.tag] if rating.tag else [],
        mapping_version=rating.version,
        device_key=int(k),
        device_key_name=k.label,
        evaluated_at=evaluated_at,
    )


__all__ = [
    "BAD_REVIEW_KEYS",
    "DEFAULT_BOOK",
    "DEFAULT_MAPPING",
    "SATISFIED_KEYS",
    "DeviceKey",
    "ExportRow",
    "KeyRule",
    "MappingBook",
    "MappingVersion",
    "NationalLevel",
    "NationalRating",
    "Tag",
    "device_key",
    "export_row",
    "is_bad_review",
    "to_national",
]
