"""Evaluator supervision: one FF 68 bus, its evaluators, invitations and health.

Each device event is journaled first and echoed only once the journal says it is durable; the
synchronous part (retransmission check, invitation bookkeeping) runs in frame order, the commit
and echo run as their own task so a burst on a full bus is group-committed, not serialised.

Invitation state is rebuilt after a restart by replaying the journal's recent evaluator events
through the same code that handles live ones, so a key pressed for an invitation made before a
crash is still tied to its ticket, and a KEY whose echo the crash swallowed is recognised as the
device's retransmission (journaled once more, marked, never counted twice).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from edge.config import EvaluatorBusConfig
from edge.journal import Journal, JournalError
from firmware_bridges.ff68.codec import (
    Boot,
    CallerFrame,
    Cancel,
    Invite,
    InviteReply,
    InviteTimeout,
    KeyEvent,
    StatusPoll,
    StatusReply,
)
from firmware_bridges.ff68.codec import RetransmissionFilter as _Filter
from firmware_bridges.ff68.driver import EvaluatorBus
from protocols.devices import KEY_LABELS, Invitation, KeyMark

log = logging.getLogger(__name__)

RESET_CAUSES = {0: "power_on", 1: "watchdog", 2: "brown_out"}
INVITE_STATUS = {0: "ok", 1: "busy", 2: "bad_argument"}
CLOSED_SESSIONS_KEPT = 32  # per device, to recognise a second key for the same session
REPLAY_WINDOW_S = 600  # journal history replayed at start to rebuild invitation state

# Called once per new (not retransmitted) key, after it is durable: window, addr, dev_seq,
# the press on the monotonic clock (s), and the key event's gateway seq.
KeyHook = Callable[[int, int, int, float, int], Awaitable[None]]
JournaledHook = Callable[[str, dict[str, Any]], None]  # kind, body: after it is durable


@dataclass
class DeviceState:
    addr: int
    window: int
    next_session: int = 1
    open: Invitation | None = None
    closed: deque[Invitation] = field(default_factory=lambda: deque(maxlen=CLOSED_SESSIONS_KEPT))
    online: bool | None = None
    flags: int | None = None
    last_status: StatusReply | None = None
    invited_at: float | None = None

    def take_session(self) -> int:
        session = self.next_session
        self.next_session = session % 255 + 1  # 1–255; 0 means "no invitation"
        return session

    def closed_session(self, session: int) -> Invitation | None:
        return next((inv for inv in self.closed if inv.session == session), None)


class EvaluatorSupervisor:
    def __init__(self, config: EvaluatorBusConfig, journal: Journal,
                 staff_names: dict[str, str] | None = None) -> None:
        self.config = config
        self.journal = journal
        self.staff_names = staff_names or {}
        self.devices = {d.addr: DeviceState(d.addr, d.window) for d in config.devices}
        self.by_window = {d.window: d.addr for d in config.devices}
        self.filter = _Filter()
        self.bus: EvaluatorBus | None = None
        self.caller_frames = 0
        self.journal_failures = 0
        self.on_key: KeyHook | None = None
        self.on_journaled: JournaledHook = lambda kind, body: None  # the hall page's board
        self._pending: set[asyncio.Task[None]] = set()

    # -- life cycle ------------------------------------------------------------------------

    async def run(self) -> None:
        await self._replay_journal()
        async with EvaluatorBus(self.config.port, self.config.baudrate) as bus:
            self.bus = bus
            pollers = [asyncio.create_task(self._poll(dev, i), name=f"poll {dev.addr:#x}")
                       for i, dev in enumerate(self.devices.values())]
            try:
                async for frame in bus.frames():
                    self._on_frame(frame)
            finally:
                for task in pollers:
                    task.cancel()
                for task in pollers:
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
                self.bus = None

    async def _replay_journal(self) -> None:
        since = time.monotonic_ns() - REPLAY_WINDOW_S * 1_000_000_000
        docs: list[dict[str, Any]] = []
        for kind in ("evaluator.invite", "evaluator.key", "evaluator.invite_timeout",
                     "evaluator.boot"):
            docs += await self.journal.recent(kind, "", limit=5000)
        docs = [d for d in docs if d["boot"] == self.journal.clock.boot_id
                and d["mono_ns"] >= since and d["body"]["addr"] in self.devices]
        for doc in sorted(docs, key=lambda d: d["seq"]):
            body, dev = doc["body"], self.devices[doc["body"]["addr"]]
            kind = doc["kind"]
            if kind == "evaluator.invite" and body["status"] == "ok":
                dev.open = Invitation.model_validate(body["invitation"])
                dev.next_session = dev.open.session % 255 + 1
            elif kind in ("evaluator.key", "evaluator.invite_timeout"):
                frame = bytes.fromhex(body["raw"])
                self._seed_filter(frame, doc["mono_ns"] / 1e9)
                if dev.open is not None and dev.open.session == body["session"]:
                    dev.closed.append(dev.open)
                    dev.open = None
            elif kind == "evaluator.boot":
                dev.open = None
        if docs:
            log.info("evaluators: rebuilt state from %d journaled events", len(docs))

    def _seed_filter(self, raw: bytes, at: float) -> None:
        from firmware_bridges.ff68.codec import Decoder

        for frame in Decoder().feed(raw if raw[:1] == b"\xff" else b"\xff" + raw):
            if isinstance(frame, KeyEvent | InviteTimeout | Boot):
                self.filter.is_repeat(frame, at)

    # -- device → gateway ------------------------------------------------------------------

    def _on_frame(self, frame: object) -> None:
        if isinstance(frame, CallerFrame):
            self.caller_frames += 1  # the queue system's callers share the bus; not ours
            return
        if not isinstance(frame, KeyEvent | InviteTimeout | Boot):
            return
        dev = self.devices.get(frame.addr)
        if dev is None:
            dev = self._adopt_unconfigured(frame.addr)
        pressed_at = time.monotonic()
        repeat = self.filter.is_repeat(frame, pressed_at)
        kind, body = self._describe(frame, dev, repeat)
        task = asyncio.create_task(self._commit_then_echo(frame, kind, body, pressed_at))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    def _adopt_unconfigured(self, addr: int) -> DeviceState:
        """An evaluator the config does not list: its events are still journaled (window 0,
        so central sees them as belonging to no window) and the technician is told."""
        log.warning("evaluators: events from unconfigured address %#x on %s; journaled under "
                    "window 0 — add it to the gateway config", addr, self.config.port)
        dev = self.devices[addr] = DeviceState(addr, 0)
        self._spawn_journal("evaluator.health", {
            "window": 0, "addr": addr, "online": True,
            "reason": "未配置的评价器地址 / unconfigured address: add it to the gateway config"})
        return dev

    def _spawn_journal(self, kind: str, body: dict[str, Any]) -> None:
        task = asyncio.create_task(self._journal_quietly(kind, body))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _journal_quietly(self, kind: str, body: dict[str, Any]) -> None:
        with contextlib.suppress(JournalError):
            await self.journal.append(kind, body)

    def _describe(self, frame: KeyEvent | InviteTimeout | Boot, dev: DeviceState,
                  repeat: bool) -> tuple[str, dict[str, Any]]:
        marks: list[KeyMark] = ["RETRANSMIT"] if repeat else []
        common = {"window": dev.window, "addr": dev.addr, "raw": frame.raw.hex()}
        if isinstance(frame, Boot):
            if not repeat:
                dev.open = None  # a rebooted device has forgotten its invitation
            return "evaluator.boot", {
                **common, "fw": f"{frame.fw_major}.{frame.fw_minor}", "marks": marks,
                "reset_cause": RESET_CAUSES.get(frame.reset_cause, "unknown")}
        invitation = self._match_session(dev, frame.session, marks, close=not repeat)
        inv = invitation.model_dump() if invitation is not None else None
        if isinstance(frame, InviteTimeout):
            return "evaluator.invite_timeout", {
                **common, "dev_seq": frame.seq, "session": frame.session, "invitation": inv,
                "marks": marks}
        if not frame.valid_key:
            return "evaluator.fault", {**common, "reason": "key value outside 1–6",
                                       "value": frame.key}
        return "evaluator.key", {
            **common, "dev_seq": frame.seq, "key": frame.key, "label": KEY_LABELS[frame.key],
            "session": frame.session, "invitation": inv, "marks": marks}

    def _match_session(self, dev: DeviceState, session: int, marks: list[KeyMark],
                       *, close: bool) -> Invitation | None:
        if session == 0:
            marks.append("NO_SESSION")
            return None
        if dev.open is not None and dev.open.session == session:
            invitation = dev.open
            if close:  # the first KEY (or the timeout) closes the invitation
                dev.closed.append(invitation)
                dev.open = None
            return invitation
        earlier = dev.closed_session(session)
        if earlier is not None:
            if "RETRANSMIT" not in marks:
                marks.append("SESSION_REPEAT")
            return earlier
        marks.append("UNKNOWN_SESSION")
        return None

    async def _commit_then_echo(self, frame: KeyEvent | InviteTimeout | Boot, kind: str,
                                body: dict[str, Any], pressed_at: float) -> None:
        try:
            seq = await self.journal.append(kind, body)
        except JournalError as exc:
            # No echo: the device will send it again, and we try again then.
            self.journal_failures += 1
            log.error("evaluators: not echoing %s from %#x: %s", kind, frame.addr, exc)
            return
        self._echo_now(frame)
        self.on_journaled(kind, body)
        if (kind == "evaluator.key" and "RETRANSMIT" not in body["marks"]
                and self.on_key is not None):
            await self.on_key(body["window"], body["addr"], body["dev_seq"], pressed_at, seq)

    def _echo_now(self, frame: KeyEvent | InviteTimeout | Boot) -> None:
        if self.bus is not None:
            task = asyncio.create_task(self.bus.send_echo(frame))
            self._pending.add(task)
            task.add_done_callback(self._pending.discard)

    # -- gateway → device ------------------------------------------------------------------

    def handles(self, window: int) -> bool:
        return window in self.by_window

    async def invite(self, window: int, ticket: str | None, staff: str | None,
                     qm_mseq: int | None = None) -> str:
        """Invite the citizen at ``window`` to evaluate the service that just finished."""
        dev = self.devices[self.by_window[window]]
        bus = self.bus
        if bus is None:
            status = "no_reply"
            invitation = Invitation(session=dev.take_session(), ticket=ticket, staff=staff,
                                    invited_mono_ns=time.monotonic_ns(), qm_mseq=qm_mseq)
        else:
            if dev.open is not None:  # the previous citizen left without pressing
                await bus.request(Cancel(dev.addr, dev.open.session))
                dev.closed.append(dev.open)
                dev.open = None
            invitation = Invitation(session=dev.take_session(), ticket=ticket, staff=staff,
                                    invited_mono_ns=time.monotonic_ns(), qm_mseq=qm_mseq)
            dev.open = invitation  # before sending: the KEY can follow the reply closely
            plain = staff is not None and len(staff) == 6 and staff.isascii() and staff.isdigit()
            staff_no = staff if plain and staff is not None else "000000"
            name = _fit_utf8(self.staff_names.get(staff or "", ""), 12)
            reply = await bus.request(Invite(dev.addr, invitation.session,
                                             self.config.invite_timeout_s, staff_no, name))
            status = ("no_reply" if not isinstance(reply, InviteReply)
                      else INVITE_STATUS.get(reply.status, "bad_argument"))
            if status != "ok" and dev.open is invitation:
                dev.open = None
        dev.invited_at = time.monotonic()
        await self.journal.append("evaluator.invite", {
            "window": dev.window, "addr": dev.addr, "invitation": invitation.model_dump(),
            "timeout_s": self.config.invite_timeout_s, "status": status})
        self.on_journaled("evaluator.invite", {"window": dev.window, "status": status})
        return status

    async def _poll(self, dev: DeviceState, index: int) -> None:
        # stagger the devices so polls spread over the period instead of bunching up
        await asyncio.sleep(index * self.config.poll_interval_s / max(1, len(self.devices)))
        while True:
            bus = self.bus
            if bus is not None and bus.connected:
                reply = await bus.request(StatusPoll(dev.addr))
                await self._health(dev, reply if isinstance(reply, StatusReply) else None)
            await asyncio.sleep(self.config.poll_interval_s)

    async def _health(self, dev: DeviceState, reply: StatusReply | None) -> None:
        online = reply is not None
        flags = reply.flags if reply is not None else dev.flags
        changed = online != dev.online or (online and flags != dev.flags)
        dev.online, dev.last_status = online, reply
        if reply is not None:
            dev.flags = reply.flags
        if not changed:
            return
        body: dict[str, Any] = {"window": dev.window, "addr": dev.addr, "online": online,
                                "reason": "answered STATUS_POLL" if online
                                else "no answer to STATUS_POLL after 3 retries"}
        if reply is not None:
            body.update(stuck_key=reply.stuck_key, display_failed=reply.display_failed,
                        keys_disabled=reply.keys_disabled,
                        fw=f"{reply.fw_major}.{reply.fw_minor}", uptime_s=reply.uptime_s,
                        key_count=reply.key_count)
            if reply.stuck_key or reply.display_failed:
                log.warning("evaluator %#x (window %d): %s", dev.addr, dev.window,
                            "stuck key" if reply.stuck_key else "display failed")
        else:
            log.warning("evaluator %#x (window %d) is offline", dev.addr, dev.window)
        with contextlib.suppress(JournalError):
            await self.journal.append("evaluator.health", body)
            self.on_journaled("evaluator.health", body)

    def status(self) -> list[dict[str, Any]]:
        """For the hall page and the state message."""
        out = []
        for dev in self.devices.values():
            s = dev.last_status
            out.append({"window": dev.window, "addr": dev.addr, "online": dev.online,
                        "invited": dev.open is not None,
                        "stuck_key": bool(s and s.stuck_key),
                        "display_failed": bool(s and s.display_failed)})
        return out


def _fit_utf8(text: str, limit: int) -> str:
    while len(text.encode()) > limit:
        text = text[:-1]
    return text
