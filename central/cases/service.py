"""The aggregator's case jobs: the MQTT case feed and the ladder job, started together."""

from __future__ import annotations

import asyncio

from sqlalchemy.ext.asyncio import AsyncEngine

from central import ladder_job
from central.cases.context import CaseContext, bind
from central.cases.mqttfeed import CaseFeed
from central.config import CentralConfig


def start(engine: AsyncEngine, config: CentralConfig) -> asyncio.Task[None]:
    """Bind the case context to the engine (the API finds it there) and start the jobs.

    Reading the salt or a bad calendar override file fails here, at start, not in a task."""
    context = CaseContext.from_config(config)
    bind(engine, context)
    return asyncio.create_task(run_forever(engine, config, context), name="cases")


async def run_forever(engine: AsyncEngine, config: CentralConfig, context: CaseContext) -> None:
    async with asyncio.TaskGroup() as jobs:
        jobs.create_task(CaseFeed(engine, context.masker, config.broker).run(), name="case-feed")
        jobs.create_task(ladder_job.run_forever(engine, context.calendar, context.ladder,
                                                every_s=config.rules.ladder_every_s),
                         name="case-ladder")
