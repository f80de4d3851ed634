"""The aggregator's outbox tasks: delivery, the 好差评 feed, the ladder warnings and the 差评
work-order notices."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncEngine

from central.config import CentralConfig
from central.haocha import feed
from central.haocha.config import bind_book
from central.outbox import progress, warnings, workorders
from central.outbox.worker import Deliverer
from hallkit.supervise import Supervisor

DELIVERY_TASK, FEED_TASK, WARNINGS_TASK = "outbox", "haocha.feed", "outbox.warnings"
WORKORDERS_TASK = "outbox.workorders"
APOLOGIES_TASK = "outbox.apologies"


def start(engine: AsyncEngine, config: CentralConfig, supervisor: Supervisor) -> None:
    """Bind the mapping book (the API's export finds it) and start what is configured."""
    book = config.haocha.book()
    bind_book(engine, book)
    box = config.outbox
    if not box.enabled:
        return
    if box.applicant_sms and box.sms is not None:
        progress.enable(engine)  # the case feed enqueues progress SMS from now on
        supervisor.spawn(APOLOGIES_TASK, lambda: progress.run_forever(engine))
    supervisor.spawn(DELIVERY_TASK, lambda: Deliverer(engine, box).run_forever())
    if config.haocha.feed.channel is not None:
        supervisor.spawn(FEED_TASK, lambda: feed.run_forever(engine, book, config.haocha.feed))
    if box.contacts or box.webhook is not None:
        supervisor.spawn(WARNINGS_TASK, lambda: warnings.run_forever(engine, box))
        supervisor.spawn(WORKORDERS_TASK, lambda: workorders.run_forever(engine, box))


__all__ = ["start"]
