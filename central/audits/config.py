"""``audits:`` in central.yaml: how many finished cases of each department are sampled a month.

Bound to the engine at start (like the case context) so that the API draws with the site's
rules; an app without a binding draws with the defaults."""

from __future__ import annotations

import math
import weakref

from pydantic import BaseModel, ConfigDict, Field, model_validator
from sqlalchemy.ext.asyncio import AsyncEngine


class SampleSize(BaseModel):
    """A count, a percentage of the department's finished cases, or both (the larger wins);
    never more than the department finished."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    count: int | None = Field(default=None, ge=0, le=10_000, description="cases a month")
    percent: float | None = Field(
        default=None, gt=0, le=100, description="% of the month's finished cases, rounded up"
    )

    @model_validator(mode="after")
    def _something(self) -> SampleSize:
        if self.count is None and self.percent is None:
            raise ValueError("give count, percent or both")
        return self

    def of(self, population: int) -> int:
        by_share = math.ceil(population * self.percent / 100) if self.percent else 0
        return min(population, max(self.count or 0, by_share))


class AuditConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    sample: SampleSize = Field(
        default=SampleSize(count=5), description="every department's monthly sample"
    )
    departments: dict[str, SampleSize] = Field(
        default_factory=dict, description="实施部门 → its own size, replacing `sample`"
    )

    def size_for(self, department: str) -> SampleSize:
        return self.departments.get(department, self.sample)


_bound: weakref.WeakKeyDictionary[AsyncEngine, AuditConfig] = weakref.WeakKeyDictionary()


def bind(engine: AsyncEngine, config: AuditConfig) -> None:
    _bound[engine] = config


def bound(engine: AsyncEngine) -> AuditConfig:
    return _bound.get(engine) or AuditConfig()
