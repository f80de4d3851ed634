"""Supervised asyncio tasks: nothing long-running dies silently.

``Supervisor.spawn(name, factory)`` runs ``factory()`` as a task. An exception is logged with
its traceback, counted and kept as the task's last error; the task is started again after a
backoff (1, 2, 4 … up to ``max_delay_s``). A run that lasted ``healthy_after_s`` resets the
backoff. After ``give_up_after`` failures in a row the task is ``failed`` and ``on_failed`` is
called: the services stop with a clear error rather than run on without a part.

Work that is not an asyncio task (a worker process, a network thread) reports through
``Supervisor.record(name)`` so that ``status()`` shows everything in one place.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from hallkit.clock import utc_now
from protocols.strict import clean_text

log = logging.getLogger(__name__)

MAX_ERROR_CHARS = 300
_CREDENTIALS = re.compile(r"(//[^/\s:@]+):[^@\s/]+@")  # user:password@ in a URL


class TaskState(StrEnum):
    RUNNING = "running"
    RESTARTING = "restarting"  # failed, waiting for the backoff to start it again
    FAILED = "failed"  # given up
    STOPPED = "stopped"  # returned or cancelled


def describe(exc: BaseException) -> str:
    """One line for an operator: the type and the message, without credentials."""
    text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    return clean_text(_CREDENTIALS.sub(r"\1:***@", text), MAX_ERROR_CHARS)


@dataclass
class TaskRecord:
    name: str
    state: TaskState = TaskState.RUNNING
    restarts: int = 0
    last_error: str | None = None
    error_at: datetime | None = None
    failures_in_row: int = field(default=0, repr=False)

    def failed_with(self, error: str) -> None:
        # one line of storable text: it travels in the gateway's state message
        self.last_error, self.error_at = clean_text(error, MAX_ERROR_CHARS), utc_now()
        self.failures_in_row += 1

    def as_dict(self) -> dict[str, Any]:
        return {
            "state": self.state.value,
            "restarts": self.restarts,
            "last_error": self.last_error,
            "error_at": self.error_at.isoformat() if self.error_at else None,
        }


class Supervisor:
    def __init__(
        self,
        *,
        on_failed: Callable[[str, str], None] | None = None,
        first_delay_s: float = 1.0,
        max_delay_s: float = 60.0,
        healthy_after_s: float = 60.0,
        give_up_after: int | None = 10,
    ) -> None:
        self.on_failed = on_failed
        self.first_delay_s = first_delay_s
        self.max_delay_s = max_delay_s
        self.healthy_after_s = healthy_after_s
        self.give_up_after = give_up_after
        self.records: dict[str, TaskRecord] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}

    # -- tasks -----------------------------------------------------------------------------

    def spawn(
        self, name: str, factory: Callable[[], Awaitable[None]], *, retry_forever: bool = False
    ) -> asyncio.Task[None]:
        """Run ``factory()`` under supervision (``retry_forever``: never give it up; for
        parts the service is better off running without, such as a status page)."""
        limit = None if retry_forever else self.give_up_after
        record = self.records[name] = TaskRecord(name)
        task = asyncio.create_task(self._run(record, factory, limit), name=name)
        self._tasks[name] = task
        return task

    async def _run(
        self, record: TaskRecord, factory: Callable[[], Awaitable[None]], limit: int | None
    ) -> None:
        while True:
            started = time.monotonic()
            record.state = TaskState.RUNNING
            try:
                await factory()
            except asyncio.CancelledError:
                record.state = TaskState.STOPPED
                raise
            except Exception as exc:
                if time.monotonic() - started >= self.healthy_after_s:
                    record.failures_in_row = 0  # it ran a good while: not a crash loop
                record.failed_with(describe(exc))
                if limit is not None and record.failures_in_row >= limit:
                    record.state = TaskState.FAILED
                    log.critical(
                        "%s failed %d times in a row; giving up",
                        record.name,
                        record.failures_in_row,
                        exc_info=exc,
                    )
                    if self.on_failed is not None:
                        self.on_failed(record.name, record.last_error or "")
                    return
                delay = min(
                    self.max_delay_s, self.first_delay_s * 2 ** (record.failures_in_row - 1)
                )
                record.state = TaskState.RESTARTING
                log.error("%s failed; restarting in %.0f s", record.name, delay, exc_info=exc)
                await asyncio.sleep(delay)
                record.restarts += 1
            else:
                record.state = TaskState.STOPPED
                return

    async def cancel(self, name: str) -> None:
        """Stop one task (a device restarted by command, a part being closed)."""
        task = self._tasks.pop(name, None)
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def stop(self, timeout_s: float = 5.0) -> list[str]:
        """Cancel every task; returns the names that did not end within ``timeout_s``."""
        tasks = list(self._tasks.items())
        self._tasks.clear()
        for _, task in tasks:
            task.cancel()
        if not tasks:
            return []
        _, pending = await asyncio.wait([t for _, t in tasks], timeout=timeout_s)
        stuck = [name for name, task in tasks if task in pending]
        if stuck:
            log.error(
                "tasks still running after %.0f s, abandoned: %s", timeout_s, ", ".join(stuck)
            )
        return stuck

    # -- state -----------------------------------------------------------------------------

    def record(self, name: str) -> TaskRecord:
        """A record for work this supervisor does not run itself (processes, threads)."""
        return self.records.setdefault(name, TaskRecord(name))

    def status(self) -> dict[str, dict[str, Any]]:
        return {name: record.as_dict() for name, record in sorted(self.records.items())}

    def overall(self) -> str:
        """ok, degraded (something restarting) or failed (something given up)."""
        states = {record.state for record in self.records.values()}
        if TaskState.FAILED in states:
            return "failed"
        return "degraded" if TaskState.RESTARTING in states else "ok"


def healthz(supervisor: Supervisor | None) -> tuple[int, dict[str, Any]]:
    """The ``/healthz`` answer of a service: (HTTP status, document). 503 once a task is
    given up, so that a monitor that only reads status codes sees it too."""
    if supervisor is None:
        return 200, {"status": "ok", "tasks": {}}
    status = supervisor.overall()
    return (503 if status == "failed" else 200), {"status": status, "tasks": supervisor.status()}
