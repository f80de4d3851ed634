"""The queue machine's messages reduced to window states and the tickets still waiting.

Sans-I/O: ``queue.event`` bodies (as journaled, in journal order) go in with a stamp of when the
gateway received each; what comes out is each window's state (staff, presence, the ticket
called and the one being served) and the tickets waiting, each with its service and the stamp
of when it began to wait. The stamp is the caller's: the hall page uses UTC text, central's
time-series sink a clock reading it can subtract.

The hall page and the time-series sink read the same rules with two differences, kept as
``QueueRules``: which messages end a ticket's wait, and whether a heartbeat saying nobody waits
forgets the tickets still held.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

Stamp = TypeVar("Stamp")  # when the gateway received a message, in the caller's terms

PRESENT, PAUSED, AWAY = "present", "paused", "away"


@dataclass
class WindowState(Generic[Stamp]):
    """One window (窗口) as the queue machine describes it."""

    window: int
    staff: str | None = None
    presence: str | None = None  # present | paused | away; None: the machine has not said
    ticket: str | None = None  # being served (办理中)
    called: str | None = None  # called to the window, service not started yet
    serving_since: Stamp | None = None  # when ST arrived


@dataclass(frozen=True, slots=True)
class Waiting(Generic[Stamp]):
    """A ticket in a service's queue since a stamp (issued, or transferred into it)."""

    service: str | None
    since: Stamp


@dataclass(frozen=True, slots=True)
class Step(Generic[Stamp]):
    """What one message did to the waiting tickets."""

    left: Waiting[Stamp] | None = None  # the wait this message ended (the ticket was held)
    joined: Waiting[Stamp] | None = None  # the wait it began


@dataclass(frozen=True, slots=True)
class QueueRules:
    kept: int  # tickets held at most; the longest held is forgotten first
    wait_ends_on: frozenset[str] = frozenset({"CL", "NS"})  # besides TR, which moves it
    empty_heartbeat_forgets: bool = False  # HB with waiting 0 forgets every ticket held


class QueueReducer(Generic[Stamp]):
    def __init__(self, rules: QueueRules) -> None:
        self.rules = rules
        self.windows: dict[int, WindowState[Stamp]] = {}
        self.waiting: OrderedDict[str, Waiting[Stamp]] = OrderedDict()  # ticket → its wait

    def window(self, number: int) -> WindowState[Stamp]:
        state = self.windows.get(number)
        if state is None:
            state = self.windows[number] = WindowState(number)
        return state

    def forget_waiting(self) -> None:
        self.waiting.clear()

    def apply(self, body: Mapping[str, Any], at: Stamp) -> Step[Stamp]:
        """One ``queue.event`` body, received at ``at``."""
        code = body.get("type")
        ticket = body.get("ticket") or None
        number = body.get("window")
        window = self.window(number) if number is not None else None
        step: Step[Stamp] = Step()
        if code == "TK":
            if ticket is not None and body.get("service"):
                step = Step(joined=self._join(ticket, body["service"], at))
        elif code == "TR":
            # ends the service at the window; the same ticket waits again in the new queue
            if ticket is not None:
                left = self.waiting.pop(ticket, None)
                step = Step(left, self._join(ticket, body.get("to_service"), at))
        elif code in self.rules.wait_ends_on and ticket is not None:
            step = Step(left=self.waiting.pop(ticket, None))
        elif code == "HB" and body.get("waiting") == 0 and self.rules.empty_heartbeat_forgets:
            self.forget_waiting()  # the machine says nobody waits: forget what we missed
        if window is not None:
            _move_window(window, code, ticket, body.get("staff"), at)
        return step

    def _join(self, ticket: str, service: str | None, at: Stamp) -> Waiting[Stamp]:
        waiting = Waiting(service, at)
        self.waiting[ticket] = waiting
        self.waiting.move_to_end(ticket)
        while len(self.waiting) > self.rules.kept:
            self.waiting.popitem(last=False)
        return waiting


def _move_window(
    window: WindowState[Stamp], code: object, ticket: str | None, staff: str | None, at: Stamp
) -> None:
    if code in ("CL", "RC"):
        window.called = ticket
    elif code == "NS":
        if window.called == ticket:
            window.called = None
    elif code == "ST":
        window.staff, window.presence = staff or window.staff, PRESENT
        window.ticket, window.called, window.serving_since = ticket, None, at
    elif code in ("FN", "TR"):
        if window.ticket == ticket:
            window.ticket = window.serving_since = None
    elif code in ("LI", "RS"):
        window.staff, window.presence = staff, PRESENT
    elif code == "PS":
        window.presence = PAUSED
    elif code == "LO":
        window.presence, window.ticket, window.called = AWAY, None, None
        window.serving_since = None
