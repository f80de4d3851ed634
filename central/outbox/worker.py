"""The delivery worker: claim due messages, apply quiet hours and rate limits, send through the
channel's adapter, record the outcome. One runs in every aggregator process (task ``outbox``);
the claims' leases keep them from sending one message at the same time."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import os
import random
import socket
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from central.outbox import store
from central.outbox.adapters import (
    Adapter,
    Email,
    Outcome,
    PlatformFile,
    PlatformHttp,
    SendError,
    Sms,
    Webhook,
)
from central.outbox.config import OutboxConfig
from central.outbox.policy import backoff_s, over_rate, quiet_until
from central.outbox.store import Channel, Message
from hallkit.clock import utc_now

log = logging.getLogger(__name__)

NOT_CONFIGURED_WAIT = dt.timedelta(minutes=10)


def adapters_for(config: OutboxConfig) -> dict[str, Adapter]:
    found: dict[str, Adapter] = {}
    if config.platform_http is not None:
        found[Channel.PLATFORM_HTTP] = PlatformHttp(config.platform_http)
    if config.platform_file is not None:
        found[Channel.PLATFORM_FILE] = PlatformFile(config.platform_file)
    if config.sms is not None:
        found[Channel.SMS] = Sms(config.sms, config.contacts)
    if config.email is not None:
        found[Channel.EMAIL] = Email(config.email, config.contacts)
    if config.webhook is not None:
        found[Channel.WEBHOOK] = Webhook(config.webhook)
    return found


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _erased(m: Message) -> Any:
    """The payload without a phone number, once it is no longer needed (None: unchanged)."""
    if isinstance(m.payload, dict) and "phone" in m.payload:
        return {k: v for k, v in m.payload.items() if k != "phone"}
    return None


class Deliverer:
    def __init__(
        self,
        engine: AsyncEngine,
        config: OutboxConfig,
        adapters: Mapping[str, Adapter] | None = None,
        *,
        worker: str | None = None,
        clock: Callable[[], dt.datetime] = utc_now,
        rng: random.Random | None = None,
    ) -> None:
        self.engine = engine
        self.config = config
        self.adapters = dict(adapters_for(config) if adapters is None else adapters)
        self.worker = worker or worker_name()
        self.clock = clock
        self.rng = rng or random.Random()

    async def run_once(self) -> int:
        """One claim and its sends; the number of messages claimed."""
        async with self.engine.begin() as conn:
            claimed = await store.claim(conn, self.worker, self.config.batch, self.config.lease_s)
        by_channel: dict[str, list[Message]] = {}
        for message in claimed:
            by_channel.setdefault(message.channel, []).append(message)
        await asyncio.gather(*(self._channel(ch, ms) for ch, ms in by_channel.items()))
        return len(claimed)

    async def _channel(self, channel: str, messages: list[Message]) -> None:
        adapter = self.adapters.get(channel)
        now = self.clock()
        if adapter is None:
            async with self.engine.begin() as conn:
                for m in messages:
                    await store.postpone(
                        conn,
                        self.worker,
                        m.id,
                        now + NOT_CONFIGURED_WAIT,
                        f"通道未配置 / channel {channel} not configured",
                    )
            return
        ready = await self._admit(channel, messages, now)
        try:
            outcomes = await adapter.deliver(ready) if ready else []
        except Exception as exc:  # an adapter's bug: retried with backoff, then given up
            log.exception("outbox: the %s adapter failed on a batch", channel)
            outcomes = [SendError(f"adapter: {type(exc).__name__}")] * len(ready)
        await self._record(ready, outcomes)

    async def _admit(
        self, channel: str, messages: list[Message], now: dt.datetime
    ) -> list[Message]:
        """Quiet hours postpone, the rate limit holds; the rest may go."""
        ready: list[Message] = []
        sending: dict[str, int] = {}  # recipient → messages of this batch let through
        async with self.engine.begin() as conn:
            for m in messages:
                until = quiet_until(now, m.audience, channel, self.config.quiet_hours)
                if until is not None:
                    await store.postpone(conn, self.worker, m.id, until, "免打扰时段 / quiet hours")
                    continue
                if channel == Channel.SMS:
                    sent = await store.sent_since(
                        conn, channel, m.recipient, now - dt.timedelta(hours=1)
                    )
                    sent += sending.get(m.recipient, 0)
                    if over_rate(sent, self.config.sms_per_recipient_per_hour):
                        await store.hold(
                            conn, self.worker, m.id, "超过每小时短信上限 / rate limit: held"
                        )
                        log.warning(
                            "outbox: SMS %d to %s held by the rate limit", m.id, m.recipient
                        )
                        continue
                    sending[m.recipient] = sending.get(m.recipient, 0) + 1
                ready.append(m)
        return ready

    async def _record(self, messages: Sequence[Message], outcomes: Sequence[Outcome]) -> None:
        now = self.clock()
        async with self.engine.begin() as conn:
            for m, outcome in zip(messages, outcomes, strict=True):
                if outcome is None:
                    if not await store.delivered(conn, self.worker, m.id, now, _erased(m)):
                        # the lease ran out mid-send and another worker took it: the receiver
                        # sees the key twice and keeps one
                        log.warning("outbox: message %d was retaken while being sent", m.id)
                    continue
                self._log_failure(m, outcome)
                if outcome.permanent or m.attempts >= self.config.max_attempts:
                    await store.fail(conn, self.worker, m.id, str(outcome), _erased(m))
                    continue
                wait = backoff_s(
                    m.attempts, self.config.backoff_s, self.config.backoff_max_s, self.rng
                )
                await store.retry(
                    conn, self.worker, m.id, now + dt.timedelta(seconds=wait), str(outcome)
                )

    def _log_failure(self, m: Message, error: SendError) -> None:
        # the reference and the error only: never a number, an address or a body
        log.warning(
            "outbox: %s message %d (%s, to %s) attempt %d failed: %s",
            m.channel,
            m.id,
            m.kind,
            m.recipient,
            m.attempts,
            error,
        )

    async def run_forever(self) -> None:
        try:
            while True:
                try:
                    busy = await self.run_once()
                except Exception:
                    log.exception("outbox: a delivery round failed; trying again")
                    busy = 0
                if busy < self.config.batch:
                    await asyncio.sleep(self.config.poll_s)
        finally:
            for adapter in self.adapters.values():
                await adapter.close()


__all__ = ["Deliverer", "adapters_for", "worker_name"]
