"""The invitation rules on plain values: every transition, table-driven, and the journal replay
producing the same marks and state as live handling (for every table case and a long random
hall sequence)."""

from __future__ import annotations

import random
from typing import Any

import pytest

from edge.devices.evaluators import frame_body
from edge.invitations import (
    CloseDecision,
    DeviceFrame,
    FrameDecision,
    InvitationRules,
    InviteRequest,
    QueueSignal,
)
from firmware_bridges.ff68.codec import CMD_BOOT, CMD_INVITE_TIMEOUT, CMD_KEY, Decoder, build_frame

W, A = 3, 0x83  # the window under test and its evaluator
W2, A2 = 4, 0x84  # its neighbour on the same bus
S = 1_000_000_000


def device_frame(addr: int, cmd: int, data: bytes) -> DeviceFrame:
    (frame,) = Decoder().feed(build_frame(addr, cmd, data))
    assert not isinstance(frame, bytes)
    return frame  # type: ignore[return-value]


class Hall:
    """Drives the rules as the evaluator supervisor does, journaling the same inputs with the
    moments their decisions were made (the docs a restart replays)."""

    def __init__(self) -> None:
        self.rules = InvitationRules({A: W, A2: W2})
        self.now_ns = 5_000 * S
        self.docs: list[dict[str, Any]] = []
        self.decisions: list[FrameDecision] = []
        self.last: DeviceFrame | None = None
        self.dev_seq = {A: 0, A2: 0, 0x9A: 0}
        self.mseq = 0

    def _journal(self, kind: str, body: dict[str, Any], at: int) -> None:
        self.docs.append({"seq": len(self.docs) + 1, "mono_ns": at, "kind": kind, "body": body})

    def tick(self, seconds: float = 1.0) -> None:
        self.now_ns += int(seconds * S)

    def invite(self, window: int, ticket: str, status: str = "ok") -> tuple[int, int | None]:
        decision = self.rules.invite(
            window, ticket=ticket, staff="100233", qm_mseq=self.mseq or None, now_ns=self.now_ns
        )
        self.tick(0.05)  # INVITE and its reply on the bus
        self.rules.invite_answered(decision.addr, decision.invitation.session, status)
        self._journal(
            "evaluator.invite",
            {
                "window": window,
                "addr": decision.addr,
                "invitation": decision.invitation.model_dump(),
                "timeout_s": 30,
                "status": status,
            },
            self.now_ns,
        )
        superseded = decision.superseded.session if decision.superseded else None
        return decision.invitation.session, superseded

    def frame(self, frame: DeviceFrame) -> tuple[str | None, list[str]]:
        decision = self.rules.on_frame(frame, self.now_ns / S)
        self.decisions.append(decision)
        self.last = frame
        kind, body = frame_body(frame, decision)
        self._journal(kind, body.model_dump(mode="json"), self.now_ns)
        ticket = decision.invitation.ticket if decision.invitation else None
        return ticket, list(decision.marks)

    def key(self, session: int, value: int = 1, addr: int = A) -> tuple[str | None, list[str]]:
        self.dev_seq[addr] = self.dev_seq[addr] % 255 + 1
        return self.frame(device_frame(addr, CMD_KEY, bytes((self.dev_seq[addr], value, session))))

    def unjournaled_key(self, session: int) -> tuple[str | None, list[str]]:
        """A KEY whose journal append failed: not echoed, its decision taken back."""
        self.dev_seq[A] = self.dev_seq[A] % 255 + 1
        frame = device_frame(A, CMD_KEY, bytes((self.dev_seq[A], 1, session)))
        decision = self.rules.on_frame(frame, self.now_ns / S)
        self.rules.retract(frame, decision)
        self.last = frame
        return decision.invitation.ticket if decision.invitation else None, list(decision.marks)

    def timeout(self, session: int, addr: int = A) -> tuple[str | None, list[str]]:
        self.dev_seq[addr] = self.dev_seq[addr] % 255 + 1
        return self.frame(
            device_frame(addr, CMD_INVITE_TIMEOUT, bytes((self.dev_seq[addr], session)))
        )

    def boot(self, addr: int = A) -> tuple[str | None, list[str]]:
        self.dev_seq[addr] = 0
        return self.frame(device_frame(addr, CMD_BOOT, bytes((0, 1, 4, 1))))

    def again(self) -> tuple[str | None, list[str]]:
        assert self.last is not None
        return self.frame(self.last)

    def queue(self, code: str, window: int, ticket: str) -> object:
        self.mseq += 1
        body = {
            "mseq": self.mseq,
            "type": code,
            "window": window,
            "ticket": ticket,
            "staff": "100233",
            "raw": f"$QM,{self.mseq},{code},{ticket},{window}",
        }
        self._journal("queue.event", body, self.now_ns)
        decision = self.rules.on_queue_event(QueueSignal.from_body(body))
        if isinstance(decision, InviteRequest):
            return ("invite", decision.window, decision.ticket, decision.qm_mseq)
        if isinstance(decision, CloseDecision):
            return ("close", decision.invitation.session, decision.reason, decision.ticket)
        return decision

    def open(self, addr: int = A) -> int | None:
        invitation = self.rules.open_invitation(addr)
        return invitation.session if invitation else None

    def window(self, addr: int) -> int:
        return self.rules.window_of(addr)


NONE: list[str] = []
# name → [(step, expected)]; a step is (method of Hall, *args); time advances 1 s per step
CASES: dict[str, list[tuple[tuple[Any, ...], Any]]] = {
    "invite takes session 1, then 2": [
        (("invite", W, "A001"), (1, None)),
        (("open",), 1),
        (("key", 1), ("A001", NONE)),
        (("invite", W, "A002"), (2, None)),
    ],
    "invite while one is open supersedes it (cancel it first)": [
        (("invite", W, "A001"), (1, None)),
        (("invite", W, "A002"), (2, 1)),
        (("open",), 2),
        (("key", 1), ("A001", NONE)),  # the old session: its first answer, crossed the CANCEL
        (("key", 2), ("A002", NONE)),
    ],
    "key with the open session answers it and closes it": [
        (("invite", W, "A001"), (1, None)),
        (("key", 1, 3), ("A001", NONE)),
        (("open",), None),
        (("key", 1, 2), ("A001", ["SESSION_REPEAT"])),
    ],
    "key with session 0": [
        (("key", 0), (None, ["NO_SESSION"])),
        (("invite", W, "A001"), (1, None)),
        (("key", 0), (None, ["NO_SESSION"])),
        (("open",), 1),  # a session-0 key closes nothing
    ],
    "key with a session never given": [
        (("invite", W, "A001"), (1, None)),
        (("key", 9), (None, ["UNKNOWN_SESSION"])),
        (("open",), 1),
    ],
    "key with the session of another window's invitation": [
        (("invite", W2, "B001"), (1, None)),
        (("key", 1), (None, ["UNKNOWN_SESSION"])),
        (("open", A2), 1),
    ],
    "retransmission within the window changes nothing and is never a repeat": [
        (("invite", W, "A001"), (1, None)),
        (("key", 1), ("A001", NONE)),
        (("tick", 2.0), None),
        (("again",), ("A001", ["RETRANSMIT"])),
        (("open",), None),
    ],
    "retransmission of a key that closed nothing": [
        (("key", 0), (None, ["NO_SESSION"])),
        (("again",), (None, ["RETRANSMIT", "NO_SESSION"])),
    ],
    "the same frame after the retransmission window is a new event": [
        (("invite", W, "A001"), (1, None)),
        (("key", 1), ("A001", NONE)),
        (("tick", 5.0), None),
        (("again",), ("A001", ["SESSION_REPEAT"])),
    ],
    "timeout closes the invitation; a key after it is a repeat": [
        (("invite", W, "A001"), (1, None)),
        (("timeout", 1), ("A001", NONE)),
        (("open",), None),
        (("key", 1), ("A001", ["SESSION_REPEAT"])),
    ],
    "timeout of a session never given": [
        (("timeout", 7), (None, ["UNKNOWN_SESSION"])),
    ],
    "boot forgets the open invitation": [
        (("invite", W, "A001"), (1, None)),
        (("boot",), (None, NONE)),
        (("open",), None),
        (("key", 0), (None, ["NO_SESSION"])),
        (("invite", W, "A002"), (2, None)),  # the gateway's numbering goes on
    ],
    "ST at the same window closes the open invitation": [
        (("invite", W, "A001"), (1, None)),
        (("queue", "CL", W, "A002"), None),
        (("queue", "ST", W, "A002"), ("close", 1, "next_service_started", "A002")),
        (("open",), None),
        (("key", 0), (None, ["NO_SESSION"])),  # the device was cancelled: the next citizen
        (("key", 1), ("A001", NONE)),  # a press that crossed the CANCEL: central judges it
        (("key", 1), ("A001", ["SESSION_REPEAT"])),
    ],
    "ST with nothing open closes nothing": [
        (("invite", W, "A001"), (1, None)),
        (("key", 1), ("A001", NONE)),
        (("queue", "ST", W, "A002"), None),
    ],
    "ST at another window does not close": [
        (("invite", W, "A001"), (1, None)),
        (("queue", "ST", W2, "B002"), None),
        (("open",), 1),
        (("key", 1), ("A001", NONE)),
    ],
    "CL alone does not close: the citizen presses after the next call": [
        (("invite", W, "A001"), (1, None)),
        (("queue", "CL", W, "A002"), None),
        (("tick", 6.0), None),
        (("open",), 1),
        (("key", 1, 2), ("A001", NONE)),
        (("queue", "ST", W, "A002"), None),
    ],
    "FN asks for an invitation; other messages do not": [
        (("queue", "FN", W, "A001"), ("invite", W, "A001", 1)),
        (("queue", "TR", W, "A001"), None),
        (("queue", "NS", W, "A001"), None),
        (("queue", "FN", 9, "C001"), None),  # a window this bus does not serve
        (("open",), None),  # FN alone opens nothing: the invitation does
    ],
    "an invitation the device did not take is dropped": [
        (("invite", W, "A001", "busy"), (1, None)),
        (("open",), None),
        (("key", 1), (None, ["UNKNOWN_SESSION"])),
        (("invite", W, "A002", "no_reply"), (2, None)),
        (("open",), None),
        (("invite", W, "A003"), (3, None)),
        (("open",), 3),
    ],
    "a key value outside 1–6 closes the invitation as the device does": [
        (("invite", W, "A001"), (1, None)),
        (("key", 1, 7), ("A001", NONE)),
        (("open",), None),
    ],
    "a key the journal could not keep is decided afresh when the device sends it again": [
        (("invite", W, "A001"), (1, None)),
        (("unjournaled_key", 1), ("A001", NONE)),
        (("open",), 1),
        (("again",), ("A001", NONE)),  # not RETRANSMIT: the first copy was never kept
        (("open",), None),
    ],
    "the same for a key answering an invitation the gateway closed": [
        (("invite", W, "A001"), (1, None)),
        (("queue", "ST", W, "A002"), ("close", 1, "next_service_started", "A002")),
        (("unjournaled_key", 1), ("A001", NONE)),
        (("again",), ("A001", NONE)),  # not SESSION_REPEAT
        (("key", 1), ("A001", ["SESSION_REPEAT"])),
    ],
    "an unconfigured address is adopted under window 0": [
        (("key", 0, 2, 0x9A), (None, ["NO_SESSION"])),
        (("window", 0x9A), 0),
    ],
}


def run_steps(hall: Hall, steps: list[tuple[tuple[Any, ...], Any]]) -> list[Any]:
    seen = []
    for (op, *args), _ in steps:
        seen.append(getattr(hall, op)(*args))
        if op != "tick":
            hall.tick()
    return seen


@pytest.mark.parametrize("name", list(CASES))
def test_transition(name: str) -> None:
    steps = CASES[name]
    assert run_steps(Hall(), steps) == [expected for _, expected in steps]


def test_sessions_wrap_from_255_to_1_never_0() -> None:
    hall = Hall()
    sessions = [hall.invite(W, f"A{n:03d}")[0] for n in range(256)]
    assert sessions[:2] == [1, 2] and sessions[254:] == [255, 1]


def assert_replay_matches(hall: Hall) -> None:
    replayed = InvitationRules({A: W, A2: W2})
    decisions = replayed.replay(hall.docs)
    assert [(d.addr, d.invitation, d.marks) for d in decisions] == [
        (d.addr, d.invitation, d.marks) for d in hall.decisions
    ]
    assert replayed.snapshot() == hall.rules.snapshot()


@pytest.mark.parametrize("name", list(CASES))
def test_replay_of_each_case_gives_the_live_marks_and_state(name: str) -> None:
    hall = Hall()
    run_steps(hall, CASES[name])
    assert_replay_matches(hall)


def test_replay_orders_a_key_that_followed_the_invite_closely() -> None:
    """Live, the invitation opens before INVITE goes out and the KEY can be journaled before
    the invite (which waits for the device's reply): replay must still tie them."""
    hall = Hall()
    decision = hall.rules.invite(W, ticket="A001", staff="100233", qm_mseq=1, now_ns=hall.now_ns)
    hall.tick(0.01)
    assert hall.key(1) == ("A001", [])
    hall.tick(0.2)
    hall.rules.invite_answered(A, 1, "ok")
    hall._journal(
        "evaluator.invite",
        {
            "window": W,
            "addr": A,
            "invitation": decision.invitation.model_dump(),
            "timeout_s": 30,
            "status": "ok",
        },
        hall.now_ns,
    )
    assert [d["kind"] for d in hall.docs] == ["evaluator.key", "evaluator.invite"]
    assert_replay_matches(hall)


def test_replay_ignores_the_gateways_own_records_and_other_windows() -> None:
    hall = Hall()
    hall.invite(W, "A001")
    hall.tick()
    hall.docs.append(
        {
            "seq": 99,
            "mono_ns": hall.now_ns,
            "kind": "evaluator.invite_closed",
            "body": {"window": W, "addr": A, "session": 1},
        }
    )
    hall.docs.append(
        {
            "seq": 100,
            "mono_ns": hall.now_ns,
            "kind": "evaluator.invite",
            "body": {
                "window": 12,
                "addr": 0x8C,
                "status": "ok",
                "invitation": {"session": 5, "invited_mono_ns": hall.now_ns},
            },
        }
    )
    assert_replay_matches(hall)
    assert hall.open() == 1


def test_a_random_hall_replays_to_the_same_marks_and_state() -> None:
    """A long mixed sequence on two windows (invites, keys with every kind of session,
    retransmissions, timeouts, boots, calls and starts) replayed from its journal."""
    rng = random.Random(2026)
    hall, tickets = Hall(), 0
    for _ in range(3000):
        window, addr = rng.choice(((W, A), (W2, A2)))
        roll = rng.random()
        if roll < 0.2:
            tickets += 1
            hall.invite(window, f"T{tickets}", rng.choice(("ok",) * 8 + ("busy", "no_reply")))
        elif roll < 0.5:
            session = rng.choice((0, hall.open(addr) or 0, rng.randrange(1, 256)))
            hall.key(session, rng.randint(1, 7), addr)
        elif roll < 0.6 and hall.last is not None:
            hall.again()
        elif roll < 0.65:
            hall.timeout(hall.open(addr) or rng.randrange(256), addr)
        elif roll < 0.67:
            hall.boot(addr)
        else:
            hall.queue(rng.choice(("CL", "ST", "FN", "TK")), window, f"T{tickets + 1}")
        hall.tick(rng.choice((0.001, 0.3, 1.5, 3.9, 4.1, 20.0)))
    marks = {m for d in hall.decisions for m in d.marks}
    assert marks == {"NO_SESSION", "UNKNOWN_SESSION", "SESSION_REPEAT", "RETRANSMIT"}
    assert any(d.invitation is not None and not d.marks for d in hall.decisions)
    assert_replay_matches(hall)
