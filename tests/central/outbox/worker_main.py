"""A delivery worker process for the kill test: ``python -m tests.central.outbox.worker_main
DATABASE_URL PLATFORM_URL``; runs until killed."""

from __future__ import annotations

import asyncio
import sys

from central.outbox.config import HttpTarget, OutboxConfig
from central.outbox.worker import Deliverer
from central.store.db import make_engine


def worker_config(platform_url: str) -> OutboxConfig:
    return OutboxConfig(
        platform_http=HttpTarget(url=platform_url, timeout_s=1.0),
        lease_s=2.0,
        batch=10,
        poll_s=0.1,
        backoff_s=0.05,
        backoff_max_s=0.2,
    )


async def main(database_url: str, platform_url: str) -> None:
    await Deliverer(make_engine(database_url), worker_config(platform_url)).run_forever()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))
