"""回访: what the citizen said on the phone, and where it contradicts the record.

Each question is answered yes, no or unsure (不确定). A finding (发现问题) is a call-back that
reached the citizen and where they contradict the record: the case was not handled as recorded,
not at the recorded time, the recorded evaluation was not theirs, or they say they were not
satisfied where the record holds a satisfied evaluation (key 1 非常满意 or 2 基本满意).
"Unsure" never makes a finding, nor does a call that did not reach anyone.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field, model_validator

SATISFIED_KEYS = frozenset({1, 2})  # 非常满意, 基本满意 on the six-key evaluator


class Answer(StrEnum):
    YES = "yes"
    NO = "no"
    UNSURE = "unsure"


class Discrepancy(StrEnum):
    HANDLING = "handling"  # 办理情况与记录不符
    TIME = "time"  # 办理时间与记录不符
    EVALUATION = "evaluation"  # 评价非本人所为
    SATISFACTION = "satisfaction"  # 不满意，而记录为满意


class CallbackIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reached: bool = Field(description="the citizen answered (联系上)")
    handled: Answer | None = Field(default=None, description="办理情况与记录一致？")
    timing: Answer | None = Field(default=None, description="办理时间与记录一致？")
    evaluation: Answer | None = Field(default=None, description="记录的评价是本人所为？")
    satisfied: Answer | None = Field(default=None, description="对办理结果满意？")
    note: str = Field(default="", max_length=2000, description="回访记录")

    @model_validator(mode="after")
    def _answers_need_a_call(self) -> CallbackIn:
        if "\x00" in self.note:
            raise ValueError("note: NUL not allowed")
        if not self.reached and any(
            a is not None for a in (self.handled, self.timing, self.evaluation, self.satisfied)
        ):
            raise ValueError("未联系上时不能填写群众答复 / answers need a call that reached them")
        return self


def discrepancies(answer: CallbackIn, recorded_keys: Iterable[int]) -> list[Discrepancy]:
    """Where the citizen contradicts the record; ``recorded_keys``: the case's counted
    evaluations (keys 1–6)."""
    if not answer.reached:
        return []
    keys = set(recorded_keys)
    found = []
    if answer.handled is Answer.NO:
        found.append(Discrepancy.HANDLING)
    if answer.timing is Answer.NO:
        found.append(Discrepancy.TIME)
    if answer.evaluation is Answer.NO and keys:
        found.append(Discrepancy.EVALUATION)
    if answer.satisfied is Answer.NO and keys & SATISFIED_KEYS:
        found.append(Discrepancy.SATISFACTION)
    return found
