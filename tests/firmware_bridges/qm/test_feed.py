"""QueueFeed against the simulated machine over a real pty and a real TCP socket."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import AsyncIterator, Callable, Mapping
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from firmware_bridges.qm.codec import (
    Called,
    FeedItem,
    Heartbeat,
    ServiceFinished,
    TicketIssued,
    Unusable,
    encode,
    encode_line,
)
from firmware_bridges.qm.driver import QueueFeed, parse_transport
from firmware_bridges.qm.simulator import HallScenario, MachineClock, QueueMachineSimulator

pytestmark = pytest.mark.timeout(60)


async def until(condition: Callable[[], bool], timeout: float = 15.0) -> None:
    """Wait for a condition the test is about; fail (not hang) if it never comes."""
    async with asyncio.timeout(timeout):
        while not condition():  # noqa: ASYNC110 - polling state owned by other objects
            await asyncio.sleep(0.02)


class Gateway:
    """What the edge service does with the feed: journal by mseq (duplicates change
    nothing), then acknowledge, since a journaled message is safe."""

    def __init__(
        self, feed: QueueFeed, *, acking: bool = True, commit_every: float | None = None
    ) -> None:
        self.feed = feed
        self.acking = acking
        self.journal: dict[int, FeedItem] = {}
        self.deliveries: list[int] = []
        self._uncommitted: list[int] = []
        self._tasks = [asyncio.create_task(self._consume())]
        if commit_every is not None:  # a group commit: acks go out in batches, later
            self._tasks.append(asyncio.create_task(self._commit_loop(commit_every)))

    async def _consume(self) -> None:
        async for item in self.feed.messages():
            self.deliveries.append(item.mseq)
            self.journal.setdefault(item.mseq, item)
            if len(self._tasks) > 1:
                self._uncommitted.append(item.mseq)
            elif self.acking:
                await self.feed.ack(item.mseq)

    async def _commit_loop(self, every: float) -> None:
        while True:
            await asyncio.sleep(every)
            batch, self._uncommitted = self._uncommitted, []
            for mseq in batch:
                await self.feed.ack(mseq)

    def times_delivered(self, mseq: int) -> int:
        return self.deliveries.count(mseq)

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


def machine_kwargs(kind: str, tmp_path: Path) -> dict[str, object]:
    return {"pty_dir": tmp_path} if kind == "pty" else {"tcp_port": 0}


@contextlib.asynccontextmanager
async def hall(
    kind: str,
    tmp_path: Path,
    *,
    acking: bool = True,
    commit_every: float | None = None,
    feed_options: Mapping[str, object] | None = None,
    **machine_options: object,
) -> AsyncIterator[tuple[QueueMachineSimulator, QueueFeed, Gateway]]:
    machine_options.setdefault("heartbeat_interval", None)
    async with (
        QueueMachineSimulator(**machine_kwargs(kind, tmp_path), **machine_options) as machine,  # type: ignore[arg-type]
        QueueFeed(machine.address, **(feed_options or {})) as feed,  # type: ignore[arg-type]
    ):
        gateway = Gateway(feed, acking=acking, commit_every=commit_every)
        await until(lambda: feed.connected)
        try:
            yield machine, feed, gateway
        finally:
            await gateway.stop()


both = pytest.mark.parametrize("kind", ["pty", "tcp"])


# --- the ordinary day ------------------------------------------------------------------------


@both
async def test_messages_arrive_and_acks_empty_the_buffer(kind: str, tmp_path: Path) -> None:
    async with hall(kind, tmp_path, resend_interval=0.5) as (machine, feed, gateway):
        machine.login(5, "100001")
        issued = machine.issue_ticket("A01", "不动产登记")
        machine.call(issued.ticket, 5)
        await until(lambda: len(gateway.journal) == 3 and not machine.pending)
        assert list(gateway.journal.values()) == list(machine.messages)
        assert machine.acked == {1, 2, 3}
        stats = feed.stats()
        assert stats.connected and stats.messages >= 3 and stats.bad_lines == 0
        assert stats.acks_sent >= 3


@both
async def test_unacknowledged_messages_come_again_on_the_fixed_2s_tick(
    kind: str, tmp_path: Path
) -> None:
    async with hall(kind, tmp_path, acking=False) as (machine, feed, gateway):
        first = machine.heartbeat()
        await asyncio.sleep(0.7)
        second = machine.heartbeat()
        await until(lambda: gateway.times_delivered(second.mseq) >= 3)
        ticks = {
            m: [s.at for s in machine.sent if s.mseq == m and s.cause == "tick"]
            for m in (first.mseq, second.mseq)
        }
        # One fixed tick for the whole buffer: both go out at the same instants, and the
        # second one again at the first tick after it was sent, even if that came soon.
        shared = [
            t for t in ticks[first.mseq] if any(abs(t - u) < 0.05 for u in ticks[second.mseq])
        ]
        assert len(shared) >= 2
        gaps = [b - a for a, b in itertools.pairwise(shared)]
        assert all(1.5 < gap < 3.5 for gap in gaps), gaps
        assert gateway.times_delivered(first.mseq) >= 3  # duplicates on a healthy line

        gateway.acking = True
        await feed.ack(first.mseq)
        await feed.ack(second.mseq)
        await until(lambda: not machine.pending)
        acked_at = max(at for at, m in machine.ack_log if m == second.mseq)
        sends_before = len([s for s in machine.sent if s.mseq == second.mseq])
        await asyncio.sleep(2.5)  # a full tick later: nothing more for an acked message
        assert len([s for s in machine.sent if s.mseq == second.mseq]) == sends_before
        assert all(s.at < acked_at for s in machine.sent if s.mseq == second.mseq)


async def test_a_reconnect_replays_the_whole_buffer(tmp_path: Path) -> None:
    async with hall("tcp", tmp_path, acking=False, resend_interval=60) as (machine, feed, gateway):
        sent = [machine.heartbeat() for _ in range(3)]
        await until(lambda: len(gateway.deliveries) == 3)
        machine.drop_connection()
        await until(lambda: feed.stats().connects == 2 and len(gateway.deliveries) == 6)
        assert gateway.deliveries == [m.mseq for m in sent] * 2
        replayed = [s.mseq for s in machine.sent if s.cause == "reconnect"]
        assert replayed == [m.mseq for m in sent]  # no tick yet: it was the reconnect
        gateway.acking = True
        machine.drop_connection()
        await until(lambda: not machine.pending)
        assert machine.acked == {m.mseq for m in sent}


# --- links that go away ----------------------------------------------------------------------


async def test_unplugged_adapter_recovers_on_replug(tmp_path: Path) -> None:
    async with hall("pty", tmp_path, resend_interval=0.5) as (machine, feed, gateway):
        machine.login(2, "200002")
        await until(lambda: 1 in gateway.journal)
        await machine.unplug()
        await until(lambda: not feed.connected)
        assert not machine.path.exists()
        # the machine keeps working while the cable is out
        queued = [machine.issue_ticket("B01") for _ in range(3)]
        await until(lambda: feed.stats().connect_failures >= 1)
        await machine.replug()
        assert machine.path.is_symlink()
        await until(lambda: all(m.mseq in gateway.journal for m in queued) and not machine.pending)
        stats = feed.stats()
        assert stats.connects >= 2 and stats.disconnects >= 1
        assert "hung up" in (stats.last_error or "") or "No such file" in (stats.last_error or "")


async def test_refused_connects_back_off_and_recover(tmp_path: Path) -> None:
    options = {"backoff_initial": 0.05, "backoff_max": 0.4}
    async with hall("tcp", tmp_path, feed_options=options) as (machine, feed, gateway):
        await machine.unplug()  # the machine stops listening: connects are refused
        await until(lambda: feed.stats().connect_failures >= 3)
        assert not feed.connected
        assert "Connect" in (feed.stats().last_error or "")
        call = machine.call("A001", 1)
        await machine.replug()
        await until(lambda: call.mseq in gateway.journal and not machine.pending)


async def test_a_new_tcp_connection_replaces_the_old_one(tmp_path: Path) -> None:
    async with hall("tcp", tmp_path, acking=False, resend_interval=60) as (machine, feed, gateway):
        waiting = machine.heartbeat()
        await until(lambda: len(gateway.deliveries) == 1)
        transport = parse_transport(machine.address)
        assert isinstance(transport, tuple)
        host, port = transport
        reader, writer = await asyncio.open_connection(host, port)
        # the intruder takes the line and gets the buffer; our feed is cut and comes back,
        # replacing the intruder in turn
        assert await reader.readuntil(b"\n") == encode(waiting)
        async with asyncio.timeout(10):
            while await reader.read(4096):
                pass
        writer.close()
        await until(
            lambda: feed.stats().connects == 2 and gateway.times_delivered(waiting.mseq) == 2
        )
        gateway.acking = True
        await feed.ack(waiting.mseq)
        after = machine.call("A002", 3)
        await until(lambda: after.mseq in gateway.journal and not machine.pending)
        assert machine.acked >= {waiting.mseq, after.mseq}


async def test_a_silent_link_is_reopened(tmp_path: Path) -> None:
    async with hall("tcp", tmp_path, feed_options={"idle_timeout": 0.3}) as (_, feed, _):
        await until(lambda: feed.stats().idle_timeouts >= 1 and feed.stats().connects >= 2)
        assert "nothing received" in (feed.stats().last_error or "")


async def test_ack_without_a_link_is_dropped_and_counted(tmp_path: Path) -> None:
    async with hall("tcp", tmp_path) as (machine, feed, _):
        await machine.unplug()
        await until(lambda: not feed.connected)
        await feed.ack(42)
        assert feed.stats().acks_dropped == 1


async def test_the_serial_port_is_opened_exclusively(tmp_path: Path) -> None:
    async with hall("pty", tmp_path) as (machine, feed, _):
        async with QueueFeed(machine.address, backoff_max=0.2) as intruder:
            await until(lambda: intruder.stats().connect_failures >= 2)
            assert not intruder.connected
        assert feed.connected


# --- what must not be acknowledged, and what must ----------------------------------------------


@both
async def test_bad_checksum_lines_are_not_acked_and_come_again(kind: str, tmp_path: Path) -> None:
    async with hall(kind, tmp_path, resend_interval=0.5) as (machine, feed, gateway):
        machine.send_raw(b"$QM,500,CL,A031,5,20261121092210*00\r\n")  # noise, never resent
        machine.corrupt_next(1)
        called = machine.call("A031", 5)
        await until(lambda: called.mseq in gateway.journal and not machine.pending)
        sends = [s for s in machine.sent if s.mseq == called.mseq]
        assert sends[0].corrupted and sends[0].cause == "new"
        clean = next(s for s in sends if not s.corrupted)
        assert clean.cause == "tick"
        assert min(at for at, m in machine.ack_log if m == called.mseq) > clean.at
        assert 500 not in machine.acked and 500 not in gateway.journal
        assert feed.stats().bad_lines == 2
        assert all("checksum" in r.reason for r in feed.rejected)


@both
async def test_unusable_lines_are_delivered_as_unusable_and_acked(
    kind: str, tmp_path: Path
) -> None:
    async with hall(kind, tmp_path, resend_interval=0.5) as (machine, feed, gateway):
        mseq = machine.take_mseq()
        line = encode_line(f"QM,{mseq},ZZ,hello,20261121092210")
        machine.send_raw(line, mseq=mseq)
        await until(lambda: mseq in gateway.journal and not machine.pending)
        item = gateway.journal[mseq]
        assert isinstance(item, Unusable) and item.raw == line[:-2]
        assert "unknown message type" in item.reason
        assert mseq in machine.acked and feed.stats().unusable >= 1


async def test_gb2312_service_names_over_the_wire(tmp_path: Path) -> None:
    async with hall("pty", tmp_path, encoding="gb2312", feed_options={"encoding": "gb2312"}) as (
        machine,
        _,
        gateway,
    ):
        issued = machine.issue_ticket("A01", "不动产登记")
        await until(lambda: issued.mseq in gateway.journal)
        received = gateway.journal[issued.mseq]
        assert isinstance(received, TicketIssued) and received.service_name == "不动产登记"


async def test_a_feed_set_to_the_wrong_encoding_still_acks(tmp_path: Path) -> None:
    async with hall("tcp", tmp_path, encoding="gb2312") as (machine, feed, gateway):
        issued = machine.issue_ticket("A01", "不动产登记")
        await until(lambda: issued.mseq in gateway.journal and not machine.pending)
        received = gateway.journal[issued.mseq]
        assert isinstance(received, TicketIssued)
        assert received.service_name == "不动产登记"  # read as GB 18030 after UTF-8 failed
        assert feed.stats().text_replaced >= 1


# --- the machine's buffer and numbering ------------------------------------------------------


async def test_the_machine_keeps_only_its_last_1000_unacknowledged(tmp_path: Path) -> None:
    async with QueueMachineSimulator(tcp_port=0, heartbeat_interval=None) as machine:
        made = [machine.heartbeat() for _ in range(1005)]  # nobody connected yet
        assert machine.evicted == [1, 2, 3, 4, 5]
        assert machine.pending == [m.mseq for m in made[5:]]
        async with QueueFeed(machine.address) as feed:
            gateway = Gateway(feed)
            await until(lambda: not machine.pending)
            await gateway.stop()
        assert sorted(gateway.journal) == list(range(6, 1006))


async def test_the_buffer_survives_a_machine_restart(tmp_path: Path) -> None:
    state = tmp_path / "qm-state"
    async with QueueMachineSimulator(
        tcp_port=0, heartbeat_interval=None, state_file=state
    ) as machine:
        before = [machine.call(f"A00{n}", n) for n in range(1, 4)]
    # a new process, the same flash
    async with QueueMachineSimulator(
        tcp_port=0, heartbeat_interval=None, state_file=state
    ) as machine:
        assert machine.pending == [1, 2, 3] and machine.next_mseq == 4
        async with QueueFeed(machine.address) as feed:
            gateway = Gateway(feed)
            await until(lambda: not machine.pending)
            later = machine.heartbeat()
            await until(lambda: later.mseq in gateway.journal)
            await gateway.stop()
        assert later.mseq == 4
        assert [gateway.journal[m.mseq] for m in before] == before


async def test_reboot_keeps_the_buffer_and_may_lose_the_time(tmp_path: Path) -> None:
    async with hall(
        "tcp", tmp_path, acking=False, state_file=tmp_path / "state", resend_interval=60
    ) as (machine, feed, gateway):
        kept = machine.heartbeat()
        await until(lambda: len(gateway.deliveries) == 1)
        await machine.reboot(down_for=0.3, clock=datetime(2000, 1, 1, 0, 0, 0))
        await until(lambda: gateway.times_delivered(kept.mseq) == 2)  # replayed after boot
        gateway.acking = True
        await feed.ack(kept.mseq)
        after = machine.heartbeat()
        await until(lambda: after.mseq in gateway.journal and not machine.pending)
        received = gateway.journal[after.mseq]
        assert isinstance(received, Heartbeat) and received.machine_time is not None
        assert received.machine_time < datetime(2000, 1, 1, 0, 1)
        assert after.mseq == kept.mseq + 1


async def test_the_state_file_stays_small(tmp_path: Path) -> None:
    state = tmp_path / "state"
    async with hall("tcp", tmp_path, state_file=state, buffer_size=10) as (machine, _, gateway):
        for _ in range(300):
            machine.heartbeat()
            await asyncio.sleep(0)
        await until(lambda: len(gateway.journal) == 300 and not machine.pending)
    assert len(state.read_text().splitlines()) <= 4 * 10 + 100 + 1
    reloaded = QueueMachineSimulator(tcp_port=0, state_file=state)
    assert reloaded.pending == [] and reloaded.next_mseq == 301


async def test_mseq_wraps_from_999999_to_1(tmp_path: Path) -> None:
    async with hall("tcp", tmp_path, first_mseq=999_998) as (machine, _, gateway):
        numbers = [machine.heartbeat().mseq for _ in range(3)]
        await until(lambda: not machine.pending and len(gateway.journal) == 3)
        assert numbers == [999_998, 999_999, 1]
        assert machine.acked == set(numbers)


# --- the machine's clock ---------------------------------------------------------------------


async def test_the_machines_skewed_clock_reaches_the_gateway(tmp_path: Path) -> None:
    skew = timedelta(hours=3, minutes=12)
    clock = MachineClock(skew=skew)
    async with hall("tcp", tmp_path, clock=clock) as (machine, _, gateway):
        called = machine.call("A031", 5)
        await until(lambda: called.mseq in gateway.journal)
        received = gateway.journal[called.mseq]
        assert isinstance(received, Called) and received.machine_time is not None
        off = received.machine_time - clock.true_local()
        assert abs(off - skew) < timedelta(seconds=5)


def test_machine_clock_drifts_and_can_be_set() -> None:
    now = [datetime.fromisoformat("2026-11-21T01:00:00+00:00")]
    elapsed = [0.0]
    clock = MachineClock(
        drift_seconds_per_hour=36.0, utc_now=lambda: now[0], monotonic=lambda: elapsed[0]
    )
    assert clock.now() == datetime(2026, 11, 21, 9, 0, 0)  # Asia/Shanghai is UTC+8
    now[0] += timedelta(hours=10)
    elapsed[0] += 36_000
    assert clock.now() == datetime(2026, 11, 21, 19, 6, 0)  # 10 h × 36 s fast
    clock.set(datetime(2000, 1, 1))
    assert clock.now() == datetime(2000, 1, 1)


async def test_heartbeats_count_everyone_waiting(tmp_path: Path) -> None:
    async with hall("tcp", tmp_path, heartbeat_interval=0.2) as (machine, _, gateway):
        machine.issue_ticket("A01")
        machine.issue_ticket("B01")
        await until(lambda: any(isinstance(i, Heartbeat) for i in gateway.journal.values()))
        beats = [i for i in gateway.journal.values() if isinstance(i, Heartbeat)]
        assert beats[-1].waiting_total == 2


# --- a realistic stream, a noisy line, a gateway that journals -------------------------------


@both
async def test_every_acked_message_is_journaled_exactly_once(kind: str, tmp_path: Path) -> None:
    finished: list[ServiceFinished] = []

    async def invite(message: ServiceFinished) -> None:  # the lead wires the evaluator here
        finished.append(message)

    async with hall(kind, tmp_path, commit_every=0.4, noise=0.15, seed=7, resend_interval=0.3) as (
        machine,
        feed,
        gateway,
    ):
        scenario = HallScenario(machine, windows=4, speed=3000, seed=11, on_service_finished=invite)
        result = await scenario.run(tickets=25)
        await machine.wait_drained(20)
        sent = {m.mseq: m for m in machine.messages}
        assert gateway.journal == sent  # every message, journaled once, equal to what was sent
        assert machine.acked == set(sent)
        assert len(gateway.deliveries) > len(sent)  # duplicates happened and changed nothing
        assert feed.stats().bad_lines > 0  # the noise was real
        assert result.issued == 25
        assert finished == [m for m in machine.messages if isinstance(m, ServiceFinished)]
        assert result.finished == len(finished) and result.finished > 0
        # every ticket's life is in order: issued, called, then started before finished
        for fin in finished:
            life = [
                type(m).__name__
                for m in machine.messages
                if getattr(m, "ticket", None) == fin.ticket
            ]
            assert life.index("TicketIssued") < life.index("Called") < life.index("ServiceFinished")


@pytest.mark.soak
@pytest.mark.timeout(600)
@both
async def test_soak_a_hall_hour_with_noise_unplugs_and_reboots(kind: str, tmp_path: Path) -> None:
    """Two real minutes at 30× (an hour of hall time): noise on the line, the cable pulled
    or the connection cut every ~10 s, the machine rebooted twice. Nothing lost, nothing
    journaled twice."""
    async with hall(
        kind,
        tmp_path,
        commit_every=0.2,
        noise=0.05,
        seed=3,
        state_file=tmp_path / "state",
        heartbeat_interval=1.0,
    ) as (machine, feed, gateway):
        scenario = HallScenario(machine, windows=8, speed=30, seed=5)
        run = asyncio.create_task(scenario.run(duration=120))
        for round_ in range(11):
            await asyncio.sleep(10)
            if round_ in (4, 8):
                await machine.reboot(down_for=1.0)
            elif kind == "pty":
                await machine.unplug()
                await asyncio.sleep(1.0)
                await machine.replug()
            else:
                machine.drop_connection()
        await run
        await machine.wait_drained(60)
        sent = {m.mseq: m for m in machine.messages}
        assert not machine.evicted
        assert gateway.journal == sent and machine.acked == set(sent)
        assert feed.stats().connects >= 10
