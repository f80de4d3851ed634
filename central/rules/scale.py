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
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from enum import IntEnum

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_serializer

from central.rules.workdays import BUSINESS_TZ


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


@dataclass(frozen=True, slots=True)
class NationalRating:
    level: NationalLevel
    reason: str | None  # 差评原因, None for a good review
    dimension: str | None  # the national offline indicator the reason falls under


_MAPPING = {
    DeviceKey.VERY_SATISFIED: NationalRating(NationalLevel.VERY_SATISFIED, None, None),
    DeviceKey.SATISFIED: NationalRating(NationalLevel.SATISFIED, None, None),
    DeviceKey.BAD_ATTITUDE: NationalRating(NationalLevel.DISSATISFIED, "服务态度不好", "服务态度"),
    DeviceKey.TOO_SLOW: NationalRating(NationalLevel.DISSATISFIED, "办理时间太长", "服务效率"),
    DeviceKey.UNFAMILIAR: NationalRating(NationalLevel.DISSATISFIED, "业务不熟", "服务水平"),
    DeviceKey.OTHER: NationalRating(NationalLevel.DISSATISFIED, "其他", "整体满意度"),
}

SATISFIED_KEYS = frozenset({DeviceKey.VERY_SATISFIED, DeviceKey.SATISFIED})
BAD_REVIEW_KEYS = frozenset(k for k, r in _MAPPING.items() if r.level.is_bad)


def device_key(key: int) -> DeviceKey:
    try:
        return DeviceKey(key)
    except ValueError:
        raise ValueError(
            f"评价键值 {key} 无效（硬件故障，不作为评价） / key {key} is not 1–6: a hardware "
            "fault, never an evaluation"
        ) from None


def to_national(key: int) -> NationalRating:
    return _MAPPING[device_key(key)]


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
) -> ExportRow:
    k = device_key(key)
    rating = _MAPPING[k]
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
        device_key=int(k),
        device_key_name=k.label,
        evaluated_at=evaluated_at,
    )


__all__ = [
    "BAD_REVIEW_KEYS",
    "SATISFIED_KEYS",
    "DeviceKey",
    "ExportRow",
    "NationalLevel",
    "NationalRating",
    "device_key",
    "export_row",
    "is_bad_review",
    "to_national",
]
