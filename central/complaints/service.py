"""The complaints' part of the aggregator: its settings bound to the engine (the API and the
public form find them there) and the escalation scan."""

from __future__ import annotations

import weakref

from sqlalchemy.ext.asyncio import AsyncEngine

from central.cases.context import bound as case_context
from central.complaints import escalation
from central.complaints.model import ComplaintsConfig
from central.config import CentralConfig
from central.rules.workdays import WorkCalendar
from hallkit.supervise import Supervisor

ESCALATION_TASK = "complaints.escalation"
_bound: weakref.WeakKeyDictionary[AsyncEngine, ComplaintsConfig] = weakref.WeakKeyDictionary()


def bind(engine: AsyncEngine, config: ComplaintsConfig) -> None:
    _bound[engine] = config


def settings(engine: AsyncEngine) -> ComplaintsConfig:
    """The bound settings, else the defaults (an app built without an aggregator)."""
    return _bound.get(engine) or ComplaintsConfig()


def start(engine: AsyncEngine, config: CentralConfig, supervisor: Supervisor) -> None:
    """After the case jobs: their context carries the site's working-day calendar."""
    bind(engine, config.complaints)
    context = case_context(engine)
    calendar = context.calendar if context is not None else WorkCalendar()
    supervisor.spawn(
        ESCALATION_TASK,
        lambda: escalation.run_forever(engine, calendar, config.complaints, config.outbox),
    )


__all__ = ["bind", "settings", "start"]
