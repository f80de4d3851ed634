"""Evaluator supervision: one FF 68 bus, its evaluators, invitations and health.

Each device event is journaled first and echoed only once the journal says it is durable; the
decision (retransmission, the invitation it answers, its marks) is made in frame order by the
bus's ``InvitationRules`` (edge/invitations.py, where the rules are written down) and queued to
the journal in that order, stamped with the moment it was made; the commit and echo run as
their own task so a burst on a full bus is group-committed, not serialised.

After a restart the journal's recent inputs (invitations, device events, queue messages) are
fed through the same rules (``InvitationRules.replay``), so a key pressed for an invitation made
before a crash is still tied to its ticket, and a KEY whose echo the crash swallowed is
recognised as the device's retransmission (journaled once more, marked, never counted twice).

The gateway journals the invitations it closes itself (``evaluator.invite_closed``: the next
service at the window started, or a new invitation replaced it) before it sends CANCEL.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any

from edge.config import EvaluatorBusConfig
from edge.invitations import (
    REPLAYED_KINDS,
    CloseDecision,
    DeviceFrame,
    FrameDecision,
    InvitationRules,
    InviteDecision,
    InviteRequest,
    QueueSignal,
)
from edge.journal import Journal, JournalError
from firmware_bridges.ff68.codec import (
    Boot,
    CallerFrame,
    Cancel,
    CancelReply,
    Invite,
    InviteReply,
    InviteTimeout,
    KeyEvent,
    StatusPoll,
    StatusReply,
)
from firmware_bridges.ff68.driver import EvaluatorBus
from hallkit.supervise import Supervisor
from protocols.body import Body
from protocols.devices import (
    KEY_LABELS,
    EvaluatorBoot,
    EvaluatorFault,
    EvaluatorHealth,
    EvaluatorInvite,
    EvaluatorInviteClosed,
    EvaluatorInviteTimeout,
    EvaluatorKey,
    Invitation,
    InviteStatus,
    ResetCause,
)

log = logging.getLogger(__name__)

RESET_CAUSES: dict[int, ResetCause] = {0: "power_on", 1: "watchdog", 2: "brown_out"}
INVITE_STATUS: dict[int, InviteStatus] = {0: "ok", 1: "busy", 2: "bad_argument"}
REPLAY_WINDOW_S = 600  # journal history replayed at start to rebuild invitation state
REPLAY_LIMIT = 5000  # per kind


@dataclass
class DeviceHealth:
    """What the last STATUS_POLL said (invitations are the rules' business)."""

    online: bool | None = None
    flags: int | None = None
    last_status: StatusReply | None = None


class EvaluatorSupervisor:
    def __init__(
        self,
        config: EvaluatorBusConfig,
        journal: Journal,
        staff_names: dict[str, str] | None = None,
        *,
        name: str = "bus-0",
    ) -> None:
        self.name = name  # the unit a remote command restarts
        self.config = config
        self.journal = journal
        self.staff_names = staff_names or {}
        self.rules = InvitationRules({d.addr: d.window for d in config.devices})
        self.device_health = {d.addr: DeviceHealth() for d in config.devices}
        self.bus: EvaluatorBus | None = None
        self.caller_frames = 0
        self.journal_failures = 0
        self._supervisor: Supervisor | None = None
        self._pending: set[asyncio.Task[Any]] = set()
        # queue messages that come while the journal is replayed: decided after it, in order
        self._early: list[dict[str, Any]] | None = []

    # -- life cycle ------------------------------------------------------------------------

    def device_ids(self) -> list[str]:
        return [self.name, *(f"evaluator-{device.window}" for device in self.config.devices)]

    async def start(self, supervisor: Supervisor) -> None:
        self._supervisor = supervisor
        supervisor.spawn(self.task_name, self.run, retry_forever=True)

    @property
    def task_name(self) -> str:
        return f"device.{self.name}"

    async def close(self) -> None:
        if self._supervisor is not None:
            await self._supervisor.cancel(self.task_name)

    async def run(self) -> None:
        if self._early is not None:  # once: a restarted run keeps the live state
            await self._replay_journal()
        async with EvaluatorBus(self.config.port, self.config.baudrate) as bus:
            self.bus = bus
            pollers = [
                asyncio.create_task(self._poll(addr, i), name=f"poll {addr:#x}")
                for i, addr in enumerate(self.device_health)
            ]
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
        for kind in REPLAYED_KINDS:
            docs += await self.journal.recent(kind, "", limit=REPLAY_LIMIT)
        early, self._early = self._early or [], None
        live = {(body.get("mseq"), body["raw"]) for body in early}
        docs = [
            d
            for d in docs
            if d["boot"] == self.journal.clock.boot_id
            and d["mono_ns"] >= since
            and not (
                d["kind"] == "queue.event" and (d["body"].get("mseq"), d["body"]["raw"]) in live
            )
        ]
        self.rules.replay(docs)
        if docs:
            log.info("evaluators: rebuilt invitation state from %d journaled events", len(docs))
        for body in early:
            self.on_queue_event(body)

    # -- device → gateway ------------------------------------------------------------------

    def _on_frame(self, frame: object) -> None:
        if isinstance(frame, CallerFrame):
            self.caller_frames += 1  # the queue system's callers share the bus; not ours
            return
        if not isinstance(frame, KeyEvent | InviteTimeout | Boot):
            return
        stamp = self.journal.clock.stamp()  # the decision's time, journaled with it
        decision = self.rules.on_frame(frame, stamp.mono_ns / 1e9)
        if decision.adopted:
            self._report_unconfigured(frame.addr)
        kind, body = frame_body(frame, decision)
        try:
            future = self.journal.append_nowait(kind, body, stamp)  # in frame order
        except JournalError as exc:
            self._not_journaled(frame, decision, kind, exc)
            return
        self._spawn(self._echo_when_durable(frame, decision, kind, future))

    def _report_unconfigured(self, addr: int) -> None:
        """An evaluator the config does not list: its events are still journaled (window 0,
        so central sees them as belonging to no window) and the technician is told."""
        log.warning(
            "evaluators: events from unconfigured address %#x on %s; journaled under "
            "window 0 — add it to the gateway config",
            addr,
            self.config.port,
        )
        self.device_health[addr] = DeviceHealth()
        with contextlib.suppress(JournalError):  # queued before the event that revealed it
            self._spawn(
                self.journal.append_nowait(
                    "evaluator.health",
                    EvaluatorHealth(
                        window=0,
                        addr=addr,
                        online=True,
                        reason="未配置的评价器地址 / unconfigured address: add it to the gateway "
                        "config",
                    ),
                )
            )

    def _spawn(self, coro: Awaitable[Any]) -> None:
        task: asyncio.Task[Any] = asyncio.ensure_future(coro)
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)
        task.add_done_callback(_log_failure)

    def _not_journaled(
        self, frame: DeviceFrame, decision: FrameDecision, kind: str, exc: Exception
    ) -> None:
        # No echo: the device will send it again, and that copy is decided afresh.
        self.journal_failures += 1
        self.rules.retract(frame, decision)
        log.error("evaluators: not echoing %s from %#x: %s", kind, frame.addr, exc)

    async def _echo_when_durable(
        self,
        frame: DeviceFrame,
        decision: FrameDecision,
        kind: str,
        future: asyncio.Future[int],
    ) -> None:
        try:
            await future
        except JournalError as exc:
            self._not_journaled(frame, decision, kind, exc)
            return
        self._echo_now(frame)

    def _echo_now(self, frame: DeviceFrame) -> None:
        if self.bus is not None:
            self._spawn(self.bus.send_echo(frame))

    # -- gateway → device ------------------------------------------------------------------

    def handles(self, window: int) -> bool:
        return self.rules.handles(window)

    def windows(self) -> list[int]:
        return [self.rules.window_of(addr) for addr in self.device_health]

    def on_queue_event(self, body: dict[str, Any]) -> None:
        """A queue message just queued to the journal (called in journal order): FN invites,
        ST closes the invitation still open at its window."""
        if self._early is not None:
            self._early.append(body)
            return
        decision = self.rules.on_queue_event(QueueSignal.from_body(body))
        if isinstance(decision, InviteRequest):
            self._spawn(
                self._invite(decision.window, decision.ticket, decision.staff, decision.qm_mseq)
            )
        elif isinstance(decision, CloseDecision):
            self._spawn(self._close(decision))

    def _close(self, decision: CloseDecision) -> Awaitable[None]:
        """Journal that the gateway closed an invitation (queued now, in decision order), then,
        once that is durable, CANCEL it on the device."""
        body = EvaluatorInviteClosed(
            window=decision.window,
            addr=decision.addr,
            session=decision.invitation.session,
            invitation=decision.invitation,
            reason=decision.reason,
            ticket=decision.ticket,
            qm_mseq=decision.qm_mseq,
        )
        try:
            future = self.journal.append_nowait("evaluator.invite_closed", body)
        except JournalError as exc:
            future = asyncio.get_running_loop().create_future()
            future.set_exception(exc)
        return self._cancel_when_durable(decision, body, future)

    async def _cancel_when_durable(
        self, decision: CloseDecision, body: EvaluatorInviteClosed, future: asyncio.Future[int]
    ) -> None:
        try:
            await future
        except JournalError as exc:
            log.error(
                "evaluators: not cancelling session %d at window %d: %s",
                decision.invitation.session,
                decision.window,
                exc,
            )
            return
        bus = self.bus
        if bus is None:
            return
        reply = await bus.request(Cancel(decision.addr, decision.invitation.session))
        if not isinstance(reply, CancelReply) or reply.status != 0:
            # answered or timed out meanwhile (status 2), or offline: nothing left to close
            log.info(
                "evaluators: CANCEL of session %d at window %d: %s",
                decision.invitation.session,
                decision.window,
                "no reply" if reply is None else f"status {getattr(reply, 'status', '?')}",
            )

    async def invite(
        self, window: int, ticket: str | None, staff: str | None, qm_mseq: int | None = None
    ) -> str:
        """Invite the citizen at ``window`` to evaluate the service that just finished."""
        return await self._invite(window, ticket, staff, qm_mseq)

    def _invite(
        self, window: int, ticket: str | None, staff: str | None, qm_mseq: int | None
    ) -> Awaitable[str]:
        """Decide now, in the order of the queue messages (an ST right behind the FN, as in the
        machine's resend after an outage, then closes this invitation); talk to the device
        in the returned coroutine."""
        decision = self.rules.invite(
            window, ticket=ticket, staff=staff, qm_mseq=qm_mseq, now_ns=time.monotonic_ns()
        )
        closing = None
        if decision.superseded is not None:  # the previous citizen left without pressing
            closing = self._close(
                CloseDecision(decision.addr, decision.window, decision.superseded, "superseded")
            )
        return self._send_and_journal_invite(decision, closing)

    async def _send_and_journal_invite(
        self, decision: InviteDecision, closing: Awaitable[None] | None
    ) -> str:
        if closing is not None:
            await closing  # CANCEL the old session before the device is asked for a new one
        invitation = decision.invitation
        status = await self._send_invite(decision.addr, invitation)
        stamp = self.journal.clock.stamp()  # the answer's time: replay drops it then too
        self.rules.invite_answered(decision.addr, invitation.session, status)
        await self.journal.append(
            "evaluator.invite",
            EvaluatorInvite(
                window=decision.window,
                addr=decision.addr,
                invitation=invitation,
                timeout_s=self.config.invite_timeout_s,
                status=status,
            ),
            stamp,
        )
        return status

    async def _send_invite(self, addr: int, invitation: Invitation) -> InviteStatus:
        bus = self.bus
        if bus is None:
            return "no_reply"
        staff = invitation.staff
        plain = staff is not None and len(staff) == 6 and staff.isascii() and staff.isdigit()
        staff_no = staff if plain and staff is not None else "000000"
        name = _fit_utf8(self.staff_names.get(staff or "", ""), 12)
        reply = await bus.request(
            Invite(addr, invitation.session, self.config.invite_timeout_s, staff_no, name)
        )
        if not isinstance(reply, InviteReply):
            return "no_reply"
        return INVITE_STATUS.get(reply.status, "bad_argument")

    async def _poll(self, addr: int, index: int) -> None:
        # stagger the devices so polls spread over the period instead of bunching up
        await asyncio.sleep(index * self.config.poll_interval_s / max(1, len(self.device_health)))
        while True:
            bus = self.bus
            if bus is not None and bus.connected:
                reply = await bus.request(StatusPoll(addr))
                await self._health(addr, reply if isinstance(reply, StatusReply) else None)
            await asyncio.sleep(self.config.poll_interval_s)

    async def _health(self, addr: int, reply: StatusReply | None) -> None:
        dev, window = self.device_health[addr], self.rules.window_of(addr)
        online = reply is not None
        flags = reply.flags if reply is not None else dev.flags
        changed = online != dev.online or (online and flags != dev.flags)
        dev.online, dev.last_status = online, reply
        if reply is not None:
            dev.flags = reply.flags
        if not changed:
            return
        body: dict[str, Any] = {
            "window": window,
            "addr": addr,
            "online": online,
            "reason": "answered STATUS_POLL"
            if online
            else "no answer to STATUS_POLL after 3 retries",
        }
        if reply is not None:
            body.update(
                stuck_key=reply.stuck_key,
                display_failed=reply.display_failed,
                keys_disabled=reply.keys_disabled,
                fw=f"{reply.fw_major}.{reply.fw_minor}",
                uptime_s=reply.uptime_s,
                key_count=reply.key_count,
            )
            if reply.stuck_key or reply.display_failed:
                log.warning(
                    "evaluator %#x (window %d): %s",
                    addr,
                    window,
                    "stuck key" if reply.stuck_key else "display failed",
                )
        else:
            log.warning("evaluator %#x (window %d) is offline", addr, window)
        with contextlib.suppress(JournalError):
            await self.journal.append("evaluator.health", EvaluatorHealth.model_validate(body))

    def health(self) -> dict[str, Any]:
        """Its part of the gateway's health (the state message)."""
        devices = self.status()
        return {
            "evaluators_offline": [d["window"] for d in devices if d["online"] is False],
            "evaluators_stuck_key": [d["window"] for d in devices if d["stuck_key"]],
            "bus": [
                {
                    "port": self.config.port,
                    "caller_frames": self.caller_frames,
                    **(self.bus.decoder.counters() if self.bus else {}),
                }
            ],
        }

    def status(self) -> list[dict[str, Any]]:
        """For the hall page and the state message."""
        out = []
        for addr, dev in self.device_health.items():
            s = dev.last_status
            out.append(
                {
                    "window": self.rules.window_of(addr),
                    "addr": addr,
                    "online": dev.online,
                    "invited": self.rules.open_invitation(addr) is not None,
                    "stuck_key": bool(s and s.stuck_key),
                    "display_failed": bool(s and s.display_failed),
                }
            )
        return out


def frame_body(frame: DeviceFrame, decision: FrameDecision) -> tuple[str, Body]:
    """The journal body of a device event, with the rules' decision about it."""
    common: dict[str, Any] = {
        "window": decision.window,
        "addr": decision.addr,
        "raw": frame.raw.hex(),
    }
    marks = list(decision.marks)
    if isinstance(frame, Boot):
        return "evaluator.boot", EvaluatorBoot(
            **common,
            fw=f"{frame.fw_major}.{frame.fw_minor}",
            marks=marks,
            reset_cause=RESET_CAUSES.get(frame.reset_cause, "unknown"),
        )
    inv = decision.invitation
    if isinstance(frame, InviteTimeout):
        return "evaluator.invite_timeout", EvaluatorInviteTimeout(
            **common, dev_seq=frame.seq, session=frame.session, invitation=inv, marks=marks
        )
    if not frame.valid_key:
        return "evaluator.fault", EvaluatorFault(
            **common, reason="key value outside 1–6", value=frame.key
        )
    return "evaluator.key", EvaluatorKey(
        **common,
        dev_seq=frame.seq,
        key=frame.key,
        label=KEY_LABELS[frame.key],
        session=frame.session,
        invitation=inv,
        marks=marks,
    )


def _log_failure(task: asyncio.Task[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        exc = task.exception()
        if isinstance(exc, JournalError):
            log.error("evaluators: %s", exc)
        else:
            log.error("evaluators: a device task failed", exc_info=exc)


def _fit_utf8(text: str, limit: int) -> str:
    while len(text.encode()) > limit:
        text = text[:-1]
    return text
