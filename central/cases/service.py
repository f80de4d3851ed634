"""The aggregator's case jobs: the MQTT case feed and the ladder job."""

from __future__ import annotations

import logging

from sqlalchemy.ext.asyncio import AsyncEngine

from central.cases import ladder
from central.cases.context import CaseContext, bind
from central.cases.mqttfeed import CaseFeed
from central.config import CentralConfig
from hallkit.supervise import Supervisor, TaskState

log = logging.getLogger(__name__)

FEED_TASK, LADDER_TASK = "cases.feed", "cases.ladder"


def start(engine: AsyncEngine, config: CentralConfig, supervisor: Supervisor) -> None:
    """Bind the case context to the engine (the API finds it there) and start the jobs.

    Reading the salt or a bad calendar override file fails here, at start, not in a task."""
    context = CaseContext.from_config(config)
    bind(engine, context)
    broker = config.broker
    if broker.tls is not None and broker.feed_tls is None:
        # Over TLS the broker makes the certificate name the client id: a feed on the
        # consumer's certificate would evict the consumer about once a second, and whatever
        # gateways publish to central meanwhile (command results) would be lost.
        why = (
            "broker.feed_tls 未配置，案件订阅未启动 / the case feed needs its own "
            "certificate (broker.feed_tls); not started"
        )
        log.error("case feed: %s", why)
        record = supervisor.record(FEED_TASK)
        record.failed_with(why)
        record.state = TaskState.FAILED
    else:
        supervisor.spawn(FEED_TASK, CaseFeed(engine, context.masker, broker).run)
    supervisor.spawn(
        LADDER_TASK,
        lambda: ladder.run_forever(
            engine, context.calendar, context.ladder, every_s=config.rules.ladder_every_s
        ),
    )
