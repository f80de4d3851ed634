"""The queue window-state reducer: queue.event bodies in, window states and waiting tickets out."""

from __future__ import annotations

from typing import Any

from hallkit.queuestate import QueueReducer, QueueRules, Waiting

SINK = QueueRules(kept=100)
BOARD = QueueRules(
    kept=100, wait_ends_on=frozenset({"CL", "RC", "NS", "ST"}), empty_heartbeat_forgets=True
)


def msg(code: str, **fields: Any) -> dict[str, Any]:
    return {"type": code, **fields}


def test_a_ticket_waits_from_issue_until_called() -> None:
    queue: QueueReducer[int] = QueueReducer(SINK)
    joined = queue.apply(msg("TK", ticket="A001", service="A", waiting=1), 10)
    assert joined.joined == Waiting("A", 10) and joined.left is None
    assert dict(queue.waiting) == {"A001": Waiting("A", 10)}
    called = queue.apply(msg("CL", ticket="A001", window=3), 25)
    assert called.left == Waiting("A", 10)
    assert not queue.waiting
    assert queue.windows[3].called == "A001"


def test_a_window_is_served_then_finished() -> None:
    queue: QueueReducer[str] = QueueReducer(SINK)
    queue.apply(msg("LI", window=2, staff="S01"), "t0")
    assert (queue.window(2).staff, queue.window(2).presence) == ("S01", "present")
    queue.apply(msg("CL", ticket="B002", window=2), "t1")
    queue.apply(msg("ST", ticket="B002", window=2, staff="S01"), "t2")
    state = queue.window(2)
    assert (state.ticket, state.called, state.serving_since) == ("B002", None, "t2")
    queue.apply(msg("FN", ticket="B001", window=2, staff="S01"), "t3")  # not the one served
    assert state.ticket == "B002"
    queue.apply(msg("FN", ticket="B002", window=2, staff="S01"), "t4")
    assert state.ticket is None and state.serving_since is None


def test_pause_and_logout_change_presence_and_logout_clears_the_window() -> None:
    queue: QueueReducer[int] = QueueReducer(SINK)
    queue.apply(msg("ST", ticket="A1", window=1, staff="S02"), 1)
    queue.apply(msg("PS", window=1, staff="S02"), 2)
    assert queue.window(1).presence == "paused"
    queue.apply(msg("RS", window=1, staff="S02"), 3)
    assert queue.window(1).presence == "present"
    queue.apply(msg("LO", window=1, staff="S02"), 4)
    state = queue.window(1)
    assert (state.presence, state.ticket, state.called, state.serving_since) == (
        "away",
        None,
        None,
        None,
    )


def test_a_transfer_ends_the_service_and_the_ticket_waits_again_in_the_new_service() -> None:
    queue: QueueReducer[int] = QueueReducer(SINK)
    queue.apply(msg("TK", ticket="A7", service="A", waiting=1), 1)
    queue.apply(msg("CL", ticket="A7", window=4), 2)
    queue.apply(msg("ST", ticket="A7", window=4, staff="S03"), 3)
    step = queue.apply(msg("TR", ticket="A7", window=4, to_service="C"), 9)
    assert step.left is None and step.joined == Waiting("C", 9)
    assert queue.window(4).ticket is None
    assert dict(queue.waiting) == {"A7": Waiting("C", 9)}


def test_a_no_show_clears_the_call_only_of_its_own_ticket() -> None:
    queue: QueueReducer[int] = QueueReducer(SINK)
    queue.apply(msg("CL", ticket="A2", window=5), 1)
    queue.apply(msg("NS", ticket="A1", window=5), 2)
    assert queue.window(5).called == "A2"
    queue.apply(msg("NS", ticket="A2", window=5), 3)
    assert queue.window(5).called is None


def test_which_messages_end_a_wait_is_a_rule() -> None:
    sink: QueueReducer[int] = QueueReducer(SINK)
    board: QueueReducer[int] = QueueReducer(BOARD)
    for queue in (sink, board):
        queue.apply(msg("TK", ticket="A1", service="A", waiting=1), 1)
        queue.apply(msg("ST", ticket="A1", window=1, staff="S01"), 2)
    assert list(sink.waiting) == ["A1"]  # the sink waits for its CL (the wait's end)
    assert not board.waiting


def test_an_empty_heartbeat_forgets_waiting_tickets_only_when_the_rule_says_so() -> None:
    sink: QueueReducer[int] = QueueReducer(SINK)
    board: QueueReducer[int] = QueueReducer(BOARD)
    for queue in (sink, board):
        queue.apply(msg("TK", ticket="A1", service="A", waiting=1), 1)
        queue.apply(msg("HB", waiting=0), 2)
    assert list(sink.waiting) == ["A1"]
    assert not board.waiting


def test_the_longest_held_ticket_is_forgotten_beyond_the_limit() -> None:
    queue: QueueReducer[int] = QueueReducer(QueueRules(kept=2))
    for n, ticket in enumerate(("A1", "A2", "A3")):
        queue.apply(msg("TK", ticket=ticket, service="A", waiting=n + 1), n)
    assert list(queue.waiting) == ["A2", "A3"]


def test_a_ticket_without_a_number_or_service_does_not_wait() -> None:
    queue: QueueReducer[int] = QueueReducer(SINK)
    assert queue.apply(msg("TK", service="A", waiting=1), 1).joined is None
    assert queue.apply(msg("TK", ticket="A1", waiting=1), 2).joined is None
    assert not queue.waiting
