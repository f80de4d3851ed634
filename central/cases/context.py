"""What every case entry point needs besides the database: the applicant masker (its salt from
central's data directory), the working-day calendar and the ladder thresholds.

The aggregator binds one context to its engine at start (``bind``); the API finds it through the
engine it serves, or through ``app.state.cases`` when a caller set one explicitly (tests, or an
app built without an aggregator).
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncEngine

from central.cases.masking import ApplicantMasker, load_or_create_salt
from central.config import CentralConfig
from central.rules.timelimit import LadderConfig
from central.rules.workdays import WorkCalendar, load_overrides


@dataclass(frozen=True, slots=True)
class CaseContext:
    masker: ApplicantMasker
    calendar: WorkCalendar
    ladder: LadderConfig

    @classmethod
    def from_config(cls, config: CentralConfig) -> CaseContext:
        """Reads the salt (creating it once) and the calendar override file; raises
        CalendarConfigError for a bad override file."""
        overrides = config.rules.calendar_overrides
        return cls(
            masker=ApplicantMasker(load_or_create_salt(config.data_dir)),
            calendar=WorkCalendar(load_overrides(overrides) if overrides else None),
            ladder=config.rules.ladder,
        )


_bound: weakref.WeakKeyDictionary[AsyncEngine, CaseContext] = weakref.WeakKeyDictionary()


def bind(engine: AsyncEngine, context: CaseContext) -> None:
    _bound[engine] = context


def bound(engine: AsyncEngine) -> CaseContext | None:
    return _bound.get(engine)
