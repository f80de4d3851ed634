"""The driver against the simulated bus, over a real pseudo-terminal: requests and replies,
the device's STATUS codes, echoes, callers on the wire, and the serial line pulled out."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import TYPE_CHECKING

import serial

from firmware_bridges.ff68.codec import (
    STATUS_BAD_ARGUMENT,
    STATUS_BUSY,
    STATUS_OK,
    Boot,
    CallerFrame,
    Cancel,
    CancelReply,
    Invite,
    InviteReply,
    InviteTimeout,
    KeyEvent,
    ShowStaff,
    ShowStaffReply,
    StatusPoll,
    StatusReply,
    build_frame,
)
from firmware_bridges.ff68.driver import EvaluatorBus, probe

if TYPE_CHECKING:
    from typing_extensions import Buffer
from firmware_bridges.ff68.simulator import (
    DROP_REBOOT,
    EvaluatorBusSimulator,
    ThreadedSimulator,
)
from tests.firmware_bridges.ff68.support import Gateway, RawLine, eventually

# ------------------------------------------------------------------------------------- polling


async def test_polls_get_replies(sim: EvaluatorBusSimulator, bus: EvaluatorBus) -> None:
    sim.add(0x81)
    sim.add(0x82, fw=(2, 7))
    sim.press(0x81, 1)
    sim.set_flags(0x82, stuck_key=True, keys_disabled=True)

    first = await bus.request(StatusPoll(0x81))
    second = await bus.request(StatusPoll(0x82))

    assert isinstance(first, StatusReply) and isinstance(second, StatusReply)
    assert (first.fw_major, first.fw_minor, first.key_count, first.flags) == (1, 4, 1, 0)
    assert (second.fw_major, second.fw_minor) == (2, 7)
    assert second.stuck_key and second.keys_disabled and not second.display_failed
    assert first.uptime_s <= 1
    assert bus.stats()["replies"] == 2


async def test_a_silent_address_yields_none_after_3_retries(
    sim: EvaluatorBusSimulator, bus: EvaluatorBus
) -> None:
    t0 = time.monotonic()
    assert await bus.request(StatusPoll(0x90)) is None
    elapsed = time.monotonic() - t0

    asked = sim.frames_to([0x90])
    assert asked == [StatusPoll(0x90)] * 4  # the first time, then asked again 3 times
    assert elapsed >= 4 * 0.150
    assert 0x90 in bus.offline
    assert (bus.retries, bus.unanswered) == (3, 1)


async def test_a_device_that_fell_silent_is_back_when_it_answers_a_poll(
    sim: EvaluatorBusSimulator, bus: EvaluatorBus
) -> None:
    device = sim.add(0x85, silent=True)
    assert await bus.request(StatusPoll(0x85), retries=1) is None
    assert 0x85 in bus.offline
    device.silent = False
    assert await bus.request(StatusPoll(0x85)) is not None
    assert 0x85 not in bus.offline


async def test_probe_lists_the_evaluators_that_answer(
    sim: EvaluatorBusSimulator, link: Path
) -> None:
    for addr in (0x81, 0x83, 0x8A):
        sim.add(addr)
    found = await probe(str(link), range(0x81, 0x8C), timeout=0.05)
    assert found == [0x81, 0x83, 0x8A]


# ---------------------------------------------------------------------------------- invitations


async def test_invite_cancel_and_show_staff_answer_with_the_spec_status_codes(
    sim: EvaluatorBusSimulator, bus: EvaluatorBus
) -> None:
    sim.add(0x83)
    invite = Invite(0x83, session=42, timeout_s=60, staff_no="000123", name="张三")

    assert await bus.request(invite) == InviteReply(0x83, 42, STATUS_OK)
    opened = sim.invitations[0x83][0]
    # The same session again (a retry after a lost reply): 0, and the timer is not restarted.
    assert await bus.request(invite) == InviteReply(0x83, 42, STATUS_OK)
    assert sim.invitations[0x83] == [opened]
    assert sim.devices[0x83].invitation is opened
    # A different invitation while this one is open: busy.
    other = Invite(0x83, session=43, timeout_s=60, staff_no="000123", name="张三")
    assert await bus.request(other) == InviteReply(0x83, 43, STATUS_BUSY)
    # CANCEL of a session that is not open: bad argument; of the open one: ok.
    assert await bus.request(Cancel(0x83, 43)) == CancelReply(0x83, 43, STATUS_BAD_ARGUMENT)
    assert await bus.request(Cancel(0x83, 42)) == CancelReply(0x83, 42, STATUS_OK)
    assert opened.closed_by == "cancel"
    assert await bus.request(Cancel(0x83, 42)) == CancelReply(0x83, 42, STATUS_BAD_ARGUMENT)

    assert await bus.request(ShowStaff(0x83, "000456", "李四")) == ShowStaffReply(0x83, 0)
    assert sim.devices[0x83].display == ("000456", "李四")
    assert (opened.staff_no, opened.name) == ("000123", "张三")


async def test_bad_arguments_on_the_wire_get_status_2_and_strangers_get_nothing(
    sim: EvaluatorBusSimulator, bus: EvaluatorBus, link: Path
) -> None:
    sim.add(0x84)
    await bus.aclose()  # a bare line instead: the driver refuses to send any of this
    raw = RawLine(str(link))
    try:

        async def replies(wire: bytes) -> list[object]:
            return [f for f in await raw.ask(wire) if not isinstance(f, Boot)]

        def invite(data: bytes) -> bytes:
            return build_frame(0x84, 0x21, data)

        assert await replies(invite(b"\x00\x1e000123")) == [InviteReply(0x84, 0, 2)]  # SESSION 0
        assert await replies(invite(b"\x05\x00000123")) == [InviteReply(0x84, 5, 2)]  # TIMEOUT 0
        assert await replies(invite(b"\x05\x1e00012x")) == [InviteReply(0x84, 5, 2)]  # staff
        assert await replies(invite(b"\x05\x1e000123" + b"x" * 13)) == [InviteReply(0x84, 5, 2)]
        assert await replies(invite(b"\x05\x1e000123\xe5\xbc")) == [InviteReply(0x84, 5, 2)]
        assert await replies(build_frame(0x84, 0x22, b"\x00")) == [CancelReply(0x84, 0, 2)]
        assert await replies(build_frame(0x84, 0x23, b"12345a")) == [ShowStaffReply(0x84, 2)]
        assert sim.invitations == {}
        # No reply to a broadcast, an unknown command, or a command with the wrong length.
        assert await replies(build_frame(0xFF, 0x30)) == []
        assert await replies(build_frame(0x84, 0x7E, b"\x01")) == []
        assert await replies(build_frame(0x84, 0x30, b"\x01")) == []
        assert await replies(build_frame(0x84, 0x23, b"12345")) == []  # too short to be one
    finally:
        raw.close()


async def test_a_press_answers_the_open_invitation_and_closes_it(
    sim: EvaluatorBusSimulator, bus: EvaluatorBus
) -> None:
    sim.add(0x81)
    async with Gateway(bus) as gateway:
        assert await bus.request(Invite(0x81, 7, 30, "000123", "")) == InviteReply(0x81, 7, 0)
        sim.press(0x81, 3)
        sim.press(0x81, 1)  # no invitation open any more: session 0
        await eventually(lambda: len(gateway.key_events()) == 2)
    assert gateway.key_events() == [KeyEvent(0x81, 1, 3, 7), KeyEvent(0x81, 2, 1, 0)]
    assert gateway.key_events()[0].label == "服务态度不好"
    assert sim.invitations[0x81][0].closed_by == "key"


async def test_an_invalid_key_closes_the_invitation_and_is_echoed_as_a_fault(
    sim: EvaluatorBusSimulator, bus: EvaluatorBus
) -> None:
    sim.add(0x81)
    async with Gateway(bus) as gateway:
        await bus.request(Invite(0x81, 9, 30, "000123", ""))
        event = sim.press(0x81, 0x4F)
        await eventually(lambda: event is not None and event.echoed_at is not None)
    (fault,) = gateway.key_events()
    assert fault == KeyEvent(0x81, 1, 0x4F, 9) and not fault.valid_key
    assert sim.invitations[0x81][0].closed_by == "key"


async def test_an_unanswered_invitation_times_out_with_an_event(
    sim: EvaluatorBusSimulator, bus: EvaluatorBus
) -> None:
    sim.add(0x86)
    async with Gateway(bus) as gateway:
        await eventually(lambda: len(gateway.journal) == 1)  # its BOOT
        assert await bus.request(Invite(0x86, 200, 1, "000123", "王五")) == InviteReply(
            0x86, 200, 0
        )
        await eventually(lambda: len(gateway.journal) == 2, timeout=3)
    assert gateway.journal[-1] == InviteTimeout(0x86, seq=1, session=200)
    assert sim.invitations[0x86][0].closed_by == "timeout"


async def test_with_the_keys_disabled_a_press_sends_nothing(
    sim: EvaluatorBusSimulator, bus: EvaluatorBus
) -> None:
    sim.add(0x81)
    sim.set_flags(0x81, keys_disabled=True)
    assert sim.press(0x81, 1) is None
    sim.set_flags(0x81, keys_disabled=False)
    async with Gateway(bus) as gateway:
        sim.press(0x81, 2)
        await eventually(lambda: len(gateway.key_events()) == 1)
    assert gateway.key_events() == [KeyEvent(0x81, 1, 2, 0)]


async def test_a_reboot_restarts_seq_and_loses_the_unechoed_events(
    sim: EvaluatorBusSimulator, bus: EvaluatorBus
) -> None:
    sim.add(0x81)
    lost = sim.press(0x81, 1)  # the driver has it, but nobody echoes it yet
    sim.reboot(0x81)
    async with Gateway(bus) as gateway:
        sim.press(0x81, 2)
        await eventually(lambda: len(gateway.key_events()) == 2)
        await eventually(lambda: not sim.unanswered_echoes())
    # SEQ 1 in both boots; the host journaled the first although the device gave it up.
    assert gateway.key_events() == [KeyEvent(0x81, 1, 1, 0), KeyEvent(0x81, 1, 2, 0)]
    assert lost is not None and lost.dropped == DROP_REBOOT
    assert [e for e in gateway.journal if isinstance(e, Boot)][-1].reset_cause == 1


# ------------------------------------------------------------------------- others on the wire


async def test_caller_frames_are_counted_and_never_answered(
    sim: EvaluatorBusSimulator, bus: EvaluatorBus
) -> None:
    sim.add(0x81)
    async with Gateway(bus) as gateway:
        for addr in (0x01, 0x05, 0x7F):
            sim.inject_caller_frame(addr, 0x41, b"A012")
        sim.inject_noise(40)
        sim.press(0x81, 1)
        await eventually(lambda: len(gateway.key_events()) == 1 and len(gateway.others) == 3)
        await asyncio.sleep(0.3)
    assert [type(f) for f in gateway.others] == [CallerFrame] * 3
    assert bus.stats()["caller_frames"] == 3
    assert sim.frames_to(range(0x01, 0x80)) == []  # the host never spoke to a caller


async def test_our_own_frames_heard_back_are_not_taken_for_the_devices(
    link: Path,
) -> None:
    async with EvaluatorBusSimulator(link, local_echo=True) as sim:
        sim.add(0x81)
        async with EvaluatorBus(str(link)) as bus, Gateway(bus) as gateway:
            for key in (1, 2, 3):
                sim.press(0x81, key)
            assert await bus.request(StatusPoll(0x81)) is not None
            await eventually(lambda: len(gateway.key_events()) == 3)
            await asyncio.sleep(0.8)  # a ping-pong of echoes would show up here
            assert bus.own_echoes == bus.tx_frames
            assert bus.echoes_sent == len(gateway.received) == 4  # BOOT + 3 keys, once each
            assert bus.foreign_frames == 0


# ----------------------------------------------------------------------------------- threading


async def test_the_simulator_also_runs_in_its_own_thread(link: Path) -> None:
    with ThreadedSimulator(EvaluatorBusSimulator(link)) as threaded:
        threaded.call(lambda s: s.add(0x8C))
        async with EvaluatorBus(str(link)) as bus, Gateway(bus) as gateway:
            assert isinstance(await bus.request(StatusPoll(0x8C)), StatusReply)
            threaded.call(lambda s: s.press(0x8C, 6))
            await eventually(lambda: len(gateway.key_events()) == 1)
            await eventually(lambda: threaded.call(lambda s: len(s.echoed)) == 2)
        assert gateway.key_events() == [KeyEvent(0x8C, 1, 6, 0)]


# ----------------------------------------------------------------------------- write timeouts


def _time_out_writes(bus: EvaluatorBus, times: int) -> list[bytes]:
    """The open port's next `times` writes raise as pyserial does when its write timeout runs
    out on a CPU-starved box (the port itself is healthy); the frames refused are returned."""
    port = bus._port
    assert port is not None
    real_write = port.write
    refused: list[bytes] = []

    def write(data: Buffer) -> int | None:
        if len(refused) < times:
            refused.append(bytes(data))
            raise serial.SerialTimeoutException("Write timeout")
        return real_write(data)

    port.write = write  # type: ignore[method-assign]  # the fault injected into a real port
    return refused


async def test_a_write_timeout_on_a_healthy_port_sends_the_frame_again_without_reconnecting(
    sim: EvaluatorBusSimulator, bus: EvaluatorBus
) -> None:
    sim.add(0x81)
    refused = _time_out_writes(bus, 2)
    reply = await bus.request(StatusPoll(0x81))
    assert isinstance(reply, StatusReply)
    assert len(refused) == 2 and sim.frames_to([0x81]) == [StatusPoll(0x81)]
    stats = bus.stats()
    assert (stats["write_timeouts"], stats["disconnects"], stats["retries"]) == (2, 0, 0)


async def test_a_port_whose_writes_keep_timing_out_is_reopened(
    sim: EvaluatorBusSimulator, bus: EvaluatorBus
) -> None:
    sim.add(0x81)
    _time_out_writes(bus, 1_000)
    assert await bus.request(StatusPoll(0x81), retries=0) is None  # it never reached the line
    await eventually(lambda: bus.stats()["disconnects"] == 1)
    assert await bus.wait_connected(5)
    assert isinstance(await bus.request(StatusPoll(0x81)), StatusReply)  # the new port writes
    assert bus.stats()["write_timeouts"] == 5
