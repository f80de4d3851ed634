"""Invitation rules of one evaluator bus, without I/O: plain values in, decisions out.

The evaluator supervisor feeds this object every device event, every invitation it makes and
every queue message of its windows, live; after a restart it feeds the journaled copies of the
same inputs through the same methods (``replay``), so the rebuilt state, and the marks of the
events that follow, are those live handling would have produced.

The rules (the device side is in the FF 68 manual, ``docs/devices/evaluator-bus-ff68.md#commands``:
an invitation closes on the first KEY, on CANCEL or with INVITE_TIMEOUT; a BOOT forgets it):

- FN at window W asks for an invitation at W's evaluator (``InviteRequest``). The invitation takes
  the device's next session token, 1–255 wrapping (0 means "no invitation"). One still open at W
  is closed first as ``superseded`` (its citizen left without pressing); the device must be sent
  CANCEL for it.
- An invitation the device did not accept (any status but ``ok``) is dropped, not closed: a key
  for its session is ``UNKNOWN_SESSION`` (central still has the ``evaluator.invite`` record).
- ST at W (the next service started) closes W's open invitation (``next_service_started``); the
  gateway journals that and sends CANCEL. A CL alone closes nothing: staff call the next number
  right after finishing and the citizen presses a few seconds later; the grace after a call is
  central's rule. ST or CL at another window changes nothing at W.
- KEY and INVITE_TIMEOUT are matched by session: 0 → ``NO_SESSION``; the open invitation → it,
  and it closes (answered); a closed invitation → it, with ``SESSION_REPEAT`` if it already had
  an answer (a KEY or its timeout), without a mark if the gateway closed it unanswered (the press
  crossed the CANCEL: central judges its time against the next service); anything else →
  ``UNKNOWN_SESSION``. A KEY with a value outside 1–6 closes the invitation like any key.
- An identical frame within the retransmission window is ``RETRANSMIT``: it changes nothing and
  is never a ``SESSION_REPEAT``.
- BOOT closes the device's open invitation (it has forgotten it).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Literal

from firmware_bridges.ff68.codec import Boot, Decoder, InviteTimeout, KeyEvent
from firmware_bridges.ff68.codec import RetransmissionFilter as _Filter
from protocols.devices import Invitation, KeyMark

CLOSED_SESSIONS_KEPT = 32  # per device, to recognise a second key for the same session

DeviceFrame = KeyEvent | InviteTimeout | Boot
CloseReason = Literal["next_service_started", "superseded"]
Effect = Literal["none", "closed_open", "answered_closed"]
# journal kinds whose bodies are inputs of these rules (evaluator.invite_closed is an output)
REPLAYED_KINDS = (
    "evaluator.invite",
    "evaluator.key",
    "evaluator.fault",
    "evaluator.invite_timeout",
    "evaluator.boot",
    "queue.event",
)


@dataclass(frozen=True, slots=True)
class QueueSignal:
    """The parts of one queue message the rules read (a queue.event body has them)."""

    type: str
    window: int | None
    ticket: str | None = None
    staff: str | None = None
    mseq: int | None = None

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> QueueSignal:
        return cls(
            body["type"],
            body.get("window"),
            body.get("ticket"),
            body.get("staff"),
            body.get("mseq"),
        )


@dataclass(frozen=True, slots=True)
class FrameDecision:
    """What a KEY, INVITE_TIMEOUT or BOOT means: its window, the invitation it answers, marks."""

    addr: int
    window: int
    repeat: bool
    invitation: Invitation | None
    marks: list[KeyMark]
    adopted: bool = False  # the first event of an address the configuration does not list
    effect: Effect = "none"  # what it changed, so that ``retract`` can take it back


@dataclass(frozen=True, slots=True)
class InviteDecision:
    addr: int
    window: int
    invitation: Invitation
    superseded: Invitation | None  # closed by this one: cancel it on the device first


@dataclass(frozen=True, slots=True)
class InviteRequest:
    """Service finished at ``window``: invite its evaluator."""

    window: int
    ticket: str | None
    staff: str | None
    qm_mseq: int | None


@dataclass(frozen=True, slots=True)
class CloseDecision:
    """The gateway closed an open invitation: journal it, then CANCEL it on the device."""

    addr: int
    window: int
    invitation: Invitation
    reason: CloseReason
    ticket: str | None = None
    qm_mseq: int | None = None


@dataclass(slots=True)
class _Closed:
    invitation: Invitation
    answered: bool  # a KEY or the timeout came for it (a later KEY is a SESSION_REPEAT)


@dataclass
class _Device:
    addr: int
    window: int
    next_session: int = 1
    open: Invitation | None = None
    closed: deque[_Closed] = field(default_factory=lambda: deque(maxlen=CLOSED_SESSIONS_KEPT))

    def close_open(self, *, answered: bool) -> Invitation | None:
        invitation, self.open = self.open, None
        if invitation is not None:
            self.closed.append(_Closed(invitation, answered))
        return invitation

    def find_closed(self, session: int) -> _Closed | None:
        return next((c for c in reversed(self.closed) if c.invitation.session == session), None)


class InvitationRules:
    """State of every evaluator on one bus; ``devices`` maps bus address → window."""

    def __init__(self, devices: Mapping[int, int]) -> None:
        self._devices = {addr: _Device(addr, window) for addr, window in devices.items()}
        self._by_window = {window: addr for addr, window in devices.items()}
        self.filter = _Filter()

    # -- reading -----------------------------------------------------------------------------

    def handles(self, window: int) -> bool:
        return window in self._by_window

    def addresses(self) -> list[int]:
        return list(self._devices)

    def window_of(self, addr: int) -> int:
        return self._devices[addr].window

    def open_invitation(self, addr: int) -> Invitation | None:
        return self._devices[addr].open

    def snapshot(self) -> dict[int, dict[str, Any]]:
        """Every device's state as plain values (tests compare live and replayed state)."""
        return {
            addr: {
                "window": d.window,
                "next_session": d.next_session,
                "open": d.open.model_dump() if d.open else None,
                "closed": [(c.invitation.session, c.answered) for c in d.closed],
            }
            for addr, d in sorted(self._devices.items())
        }

    # -- gateway → device --------------------------------------------------------------------

    def invite(
        self,
        window: int,
        *,
        ticket: str | None,
        staff: str | None,
        qm_mseq: int | None,
        now_ns: int,
        session: int | None = None,
    ) -> InviteDecision:
        """Open a new invitation at ``window`` (``session``: the journaled one, in replay)."""
        dev = self._devices[self._by_window[window]]
        superseded = dev.close_open(answered=False)
        if session is None:
            session = dev.next_session
        dev.next_session = session % 255 + 1  # 1–255; 0 means "no invitation"
        dev.open = Invitation(
            session=session, ticket=ticket, staff=staff, invited_mono_ns=now_ns, qm_mseq=qm_mseq
        )
        return InviteDecision(dev.addr, dev.window, dev.open, superseded)

    def invite_answered(self, addr: int, session: int, status: str) -> None:
        """The device's answer to INVITE: an invitation it did not take is dropped."""
        dev = self._devices[addr]
        if status != "ok" and dev.open is not None and dev.open.session == session:
            dev.open = None

    # -- device → gateway --------------------------------------------------------------------

    def on_frame(self, frame: DeviceFrame, now_s: float) -> FrameDecision:
        """A KEY, INVITE_TIMEOUT or BOOT received at ``now_s`` (monotonic seconds)."""
        dev = self._devices.get(frame.addr)
        adopted = dev is None
        if dev is None:  # journaled under window 0: central sees it belongs to no window
            dev = self._devices[frame.addr] = _Device(frame.addr, 0)
        repeat = self.filter.is_repeat(frame, now_s)
        marks: list[KeyMark] = ["RETRANSMIT"] if repeat else []
        invitation: Invitation | None = None
        effect: Effect = "none"
        if isinstance(frame, Boot):
            if not repeat:
                dev.close_open(answered=False)  # a rebooted device has forgotten it
        else:
            invitation, effect = self._match(dev, frame.session, marks, repeat=repeat)
        return FrameDecision(dev.addr, dev.window, repeat, invitation, marks, adopted, effect)

    def _match(
        self, dev: _Device, session: int, marks: list[KeyMark], *, repeat: bool
    ) -> tuple[Invitation | None, Effect]:
        if session == 0:
            marks.append("NO_SESSION")
            return None, "none"
        if dev.open is not None and dev.open.session == session:
            if repeat:
                return dev.open, "none"
            return dev.close_open(answered=True), "closed_open"
        earlier = dev.find_closed(session)
        if earlier is None:
            marks.append("UNKNOWN_SESSION")
            return None, "none"
        if repeat:
            return earlier.invitation, "none"
        if earlier.answered:
            marks.append("SESSION_REPEAT")
            return earlier.invitation, "none"
        earlier.answered = True
        return earlier.invitation, "answered_closed"

    def retract(self, frame: DeviceFrame, decision: FrameDecision) -> None:
        """Take back the decision on an event that could not be journaled (so it was not
        echoed): the device sends it again, and that copy is decided as if this one had never
        come, as a replay would (a BOOT needs nothing: deciding it twice changes nothing)."""
        if decision.repeat:
            return  # the first copy stands
        self.filter.forget(frame)
        dev, invitation = self._devices[decision.addr], decision.invitation
        if (
            decision.effect == "closed_open"
            and dev.open is None
            and dev.closed
            and dev.closed[-1].invitation is invitation
        ):
            dev.open = dev.closed.pop().invitation
        elif decision.effect == "answered_closed" and invitation is not None:
            entry = dev.find_closed(invitation.session)
            if entry is not None and entry.invitation is invitation:
                entry.answered = False

    # -- the queue machine -------------------------------------------------------------------

    def on_queue_event(self, event: QueueSignal) -> InviteRequest | CloseDecision | None:
        if event.window is None or event.window not in self._by_window:
            return None
        if event.type == "FN":
            return InviteRequest(event.window, event.ticket, event.staff, event.mseq)
        if event.type == "ST":
            dev = self._devices[self._by_window[event.window]]
            closed = dev.close_open(answered=False)
            if closed is not None:
                return CloseDecision(
                    dev.addr, dev.window, closed, "next_service_started", event.ticket, event.mseq
                )
        return None

    # -- after a restart ---------------------------------------------------------------------

    def replay(self, docs: Iterable[Mapping[str, Any]]) -> list[FrameDecision]:
        """Feed journaled inputs (journal docs: seq, mono_ns, kind, body) through the live
        methods, in the order live handling met them; returns the device events' decisions
        (their marks are those journaled live: that is what makes a replay right).

        Every input is journaled with the monotonic time its decision was made, so sorting by
        time is that order; an ``evaluator.invite`` is two steps, as it was live: the
        invitation opened before INVITE went out (``invited_mono_ns``, a KEY can follow the
        reply closely) and the device's answer when it was journaled."""
        steps: list[tuple[int, int, int, Callable[[], object]]] = []
        for doc in docs:
            kind, body, at, seq = doc["kind"], doc["body"], int(doc["mono_ns"]), doc["seq"]
            if kind == "queue.event":
                signal = QueueSignal.from_body(body)
                steps.append((at, seq, 0, partial(self.on_queue_event, signal)))
            elif kind == "evaluator.invite":
                if not self.handles(body["window"]):
                    continue  # the configuration has changed since
                inv = Invitation.model_validate(body["invitation"])
                steps.append(
                    (
                        inv.invited_mono_ns,
                        seq,
                        0,
                        partial(
                            self.invite,
                            body["window"],
                            ticket=inv.ticket,
                            staff=inv.staff,
                            qm_mseq=inv.qm_mseq,
                            now_ns=inv.invited_mono_ns,
                            session=inv.session,
                        ),
                    )
                )
                addr = self._by_window[body["window"]]
                steps.append(
                    (at, seq, 1, partial(self.invite_answered, addr, inv.session, body["status"]))
                )
            elif kind in REPLAYED_KINDS:
                frame = _decode(body["raw"])
                if frame is not None:
                    steps.append((at, seq, 0, partial(self.on_frame, frame, at / 1e9)))
        decisions = [step() for *_, step in sorted(steps, key=lambda s: s[:3])]
        return [d for d in decisions if isinstance(d, FrameDecision)]


def _decode(raw_hex: str) -> DeviceFrame | None:
    raw = bytes.fromhex(raw_hex)
    for frame in Decoder().feed(raw if raw[:1] == b"\xff" else b"\xff" + raw):
        if isinstance(frame, KeyEvent | InviteTimeout | Boot):
            return frame
    return None
