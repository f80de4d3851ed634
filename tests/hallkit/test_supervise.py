"""The supervisor: restart with backoff, the state of each task, giving up, stopping."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

from hallkit.supervise import Supervisor, healthz


async def _until(predicate: Callable[[], object], timeout: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.01)


async def test_a_failing_task_is_restarted_and_its_error_kept() -> None:
    supervisor = Supervisor(first_delay_s=0.01)
    runs: list[int] = []
    resumed = asyncio.Event()

    async def flaky() -> None:
        runs.append(len(runs))
        if len(runs) <= 2:
            raise IndexError("deque index out of range")
        resumed.set()
        await asyncio.Event().wait()

    supervisor.spawn("uplink.send", flaky)
    await asyncio.wait_for(resumed.wait(), 10)
    state = supervisor.status()["uplink.send"]
    assert (state["state"], state["restarts"]) == ("running", 2)
    assert state["last_error"] == "IndexError: deque index out of range"
    assert healthz(supervisor) == (200, {"status": "ok", "tasks": supervisor.status()})
    assert await supervisor.stop() == []
    assert supervisor.records["uplink.send"].state == "stopped"


async def test_restarting_shows_as_degraded_with_a_growing_delay() -> None:
    supervisor = Supervisor(first_delay_s=0.05, max_delay_s=0.2, give_up_after=None)

    async def broken() -> None:
        raise OSError("port gone")

    supervisor.spawn("device.queue", broken)
    await _until(lambda: supervisor.records["device.queue"].restarts >= 3)
    assert supervisor.overall() == "degraded"
    code, doc = healthz(supervisor)
    assert code == 200 and doc["tasks"]["device.queue"]["state"] in ("restarting", "running")
    await supervisor.stop()


async def test_a_task_failing_in_a_row_is_given_up_and_reported() -> None:
    failed: list[tuple[str, str]] = []
    supervisor = Supervisor(
        first_delay_s=0.001,
        give_up_after=3,
        on_failed=lambda name, error: failed.append((name, error)),
    )

    async def broken() -> None:
        raise RuntimeError("postgresql://hall:secret@db/x unreachable")

    supervisor.spawn("ingest", broken)
    await _until(lambda: bool(failed))
    assert failed == [("ingest", "RuntimeError: postgresql://hall:***@db/x unreachable")]
    assert supervisor.status()["ingest"]["state"] == "failed"
    assert healthz(supervisor)[0] == 503


async def test_stop_does_not_wait_forever_for_a_stuck_task() -> None:
    supervisor = Supervisor()
    release = asyncio.Event()

    async def stubborn() -> None:
        while not release.is_set():
            with contextlib.suppress(asyncio.CancelledError):
                await release.wait()  # refuses to be cancelled until released

    async def polite() -> None:
        await asyncio.sleep(3600)

    stuck = supervisor.spawn("stuck", stubborn)
    supervisor.spawn("polite", polite)
    await asyncio.sleep(0)
    assert await supervisor.stop(timeout_s=0.2) == ["stuck"]
    assert supervisor.records["polite"].state == "stopped"
    release.set()
    await stuck
