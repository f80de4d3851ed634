"""The uplink's send window with numbers alone: no broker, no journal, no clock."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from edge.sendwindow import (
    FRESH_OUTAGE_S,
    MAX_STALL_BACKOFF,
    AckDecision,
    Resend,
    SendRange,
    SendWindow,
    WindowLimits,
)
from hallkit.clock import utc_now
from protocols.envelope import Ack

LIMITS = WindowLimits(window_events=100, batch_events=10, batch_bytes=4096, ack_timeout_s=5.0)
EPOCH = "0000e1e1"
OTHER_EPOCH = "0000e0e0"


def ack(
    committed_through: int,
    *,
    replay_from: int | None = None,
    epoch: str | None = EPOCH,
    rebase_to: int | None = None,
) -> Ack:
    return Ack(
        hall="H1",
        gateway="gw1",
        committed_through=committed_through,
        replay_from=replay_from,
        utc=utc_now(),
        epoch=epoch,
        rebase_to=rebase_to,
    )


def window(*, sent_through: int = 0, acked: int = 0, now: float = 0.0) -> SendWindow:
    w = SendWindow(LIMITS, now)
    w.on_connect(acked, now)
    if sent_through > acked:
        w.on_published(sent_through, acked=acked, now=now)
    return w


def test_batches_go_out_in_order_until_the_window_is_full() -> None:
    w = window()
    assert w.next_range(acked=0, head=0) is None  # nothing journaled
    assert w.next_range(acked=0, head=25) == SendRange(1, 10, 4096)
    w.on_published(10, acked=0, now=0.1)
    assert w.next_range(acked=0, head=25) == SendRange(11, 10, 4096)
    w.on_published(99, acked=0, now=0.2)
    assert w.next_range(acked=0, head=500) == SendRange(100, 10, 4096)  # 99 owed: room for one
    w.on_published(109, acked=0, now=0.3)
    assert w.next_range(acked=0, head=500) is None  # 109 outstanding ≥ 100: full
    assert w.next_range(acked=50, head=500) == SendRange(110, 10, 4096)  # an ack makes room
    assert w.published_batches == 3


def test_an_ack_marks_the_journal_only_when_it_moves_forward() -> None:
    w = window(sent_through=40)
    decision = w.on_ack(ack(30), journal_epoch=EPOCH, acked=0, now=1.0)
    assert decision == AckDecision(mark_acked=30, wake=True)
    duplicate = w.on_ack(ack(30), journal_epoch=EPOCH, acked=30, now=2.0)
    assert duplicate == AckDecision(wake=True)  # nothing new to trim
    older = w.on_ack(ack(20), journal_epoch=EPOCH, acked=30, now=2.5)  # out of order
    assert older.mark_acked is None
    assert w.next_range(acked=30, head=40) is None  # 31–40 are out already
    assert w.next_range(acked=30, head=41) == SendRange(41, 10, 4096)


def test_an_ack_beyond_what_was_sent_skips_ahead() -> None:
    w = window(sent_through=10)
    assert w.on_ack(ack(25), journal_epoch=EPOCH, acked=0, now=1.0).mark_acked == 25
    assert w.next_range(acked=25, head=30) == SendRange(26, 10, 4096)


def test_an_ack_of_another_epoch_changes_nothing() -> None:
    w = window(sent_through=10)
    decision = w.on_ack(
        ack(10, replay_from=1, epoch=OTHER_EPOCH), journal_epoch=EPOCH, acked=0, now=1
    )
    assert decision == AckDecision(other_epoch=True)
    assert w.sent_through == 10 and w.rewinds == 0
    assert w.on_ack(ack(10, epoch=None), journal_epoch=EPOCH, acked=0, now=1).mark_acked == 10


def test_a_rebase_marks_the_held_seqs_and_restarts_from_the_new_numbering() -> None:
    w = window(sent_through=60, acked=10)
    decision = w.on_ack(ack(50, rebase_to=1001), journal_epoch=EPOCH, acked=10, now=1.0)
    assert decision == AckDecision(mark_acked=50, rebase_to=1001)  # the journal renumbers
    assert w.sent_through == 60  # nothing sent until the journal did
    w.on_rebase(acked=1000, now=2.0)
    assert w.next_range(acked=1000, head=1010) == SendRange(1001, 10, 4096)
    no_epoch = w.on_ack(ack(5, epoch=None, rebase_to=9), journal_epoch=EPOCH, acked=1000, now=3)
    assert no_epoch.rebase_to is None  # only an ack naming the epoch may renumber it


def test_central_asks_for_a_replay_from_a_gap_once_per_debounce() -> None:
    w = window(sent_through=50, acked=10)
    decision = w.on_ack(ack(20, replay_from=21), journal_epoch=EPOCH, acked=10, now=1.0)
    assert decision == AckDecision(mark_acked=20, replay_from=21, wake=True)
    assert w.next_range(acked=20, head=50) == SendRange(21, 10, 4096)
    w.on_published(30, acked=20, now=1.1)
    again = w.on_ack(ack(20, replay_from=21), journal_epoch=EPOCH, acked=20, now=1.5)
    assert again.replay_from is None  # the same gap within a second: one late batch
    assert w.next_range(acked=20, head=50) == SendRange(31, 10, 4096)
    later = w.on_ack(ack(20, replay_from=21), journal_epoch=EPOCH, acked=20, now=2.6)
    assert later.replay_from == 21
    assert w.rewinds == 2


def test_a_replay_request_beyond_what_was_sent_is_ignored() -> None:
    w = window(sent_through=30)
    decision = w.on_ack(ack(0, replay_from=31), journal_epoch=EPOCH, acked=0, now=1.0)
    assert decision.replay_from is None and w.rewinds == 0
    assert w.next_range(acked=0, head=40) == SendRange(31, 10, 4096)


def test_silence_with_events_outstanding_resends_from_the_ack() -> None:
    w = window(sent_through=30, acked=10, now=100.0)
    assert w.next_range(acked=10, head=30) is None  # everything is out
    assert w.on_tick(acked=10, now=104.0) is None
    assert w.on_tick(acked=10, now=105.5) == Resend(11)
    assert w.rewinds == 1
    assert w.next_range(acked=10, head=30) == SendRange(11, 10, 4096)
    w.on_published(20, acked=10, now=105.6)  # the stall clock starts again with the resend
    assert w.stall_timeout_s == 10.0  # a second stall in a row waits twice as long
    assert w.on_tick(acked=10, now=110.7) is None
    assert w.on_tick(acked=10, now=115.5) is None
    assert w.on_tick(acked=10, now=115.7) == Resend(11)
    assert w.rewinds == 2


def test_ack_progress_and_an_empty_window_keep_the_stall_away() -> None:
    w = window(sent_through=30, acked=10, now=0.0)
    w.on_ack(ack(20), journal_epoch=EPOCH, acked=10, now=4.0)
    assert w.on_tick(acked=20, now=8.0) is None  # progress 4 s ago
    assert w.on_tick(acked=20, now=9.5) == Resend(21)
    idle = window(sent_through=30, acked=30, now=0.0)
    assert idle.on_tick(acked=30, now=60.0) is None  # nothing owed: silence is fine
    idle.on_published(31, acked=30, now=60.0)
    assert idle.on_tick(acked=30, now=64.0) is None  # the clock started at the publish
    assert idle.on_tick(acked=30, now=65.1) == Resend(31)


def test_a_reconnect_starts_over_from_the_ack() -> None:
    w = window(sent_through=80, acked=20)
    assert w.on_connect(acked=25, now=1.0) == 26
    assert w.next_range(acked=25, head=80) == SendRange(26, 10, 4096)


def test_a_commanded_replay_sends_acknowledged_events_again_until_it_catches_up() -> None:
    w = window(sent_through=50, acked=50)
    replay = w.replay_from(5, oldest=1, head=50, now=1.0)
    assert replay.started and replay.report == "replaying 5–50"
    assert w.next_range(acked=50, head=50) == SendRange(5, 10, 4096)  # below the ack
    assert w.on_connect(acked=50, now=2.0) == 5  # a reconnect keeps the replay
    for last in range(14, 51, 10):
        w.on_published(last, acked=50, now=2.0)
    w.on_published(50, acked=50, now=2.0)
    assert w.next_range(acked=50, head=50) is None  # caught up: back to the ack
    assert w.on_connect(acked=50, now=3.0) == 51


def test_a_commanded_replay_reports_what_was_trimmed_or_that_nothing_is_there() -> None:
    w = window(sent_through=50, acked=50)
    nothing = w.replay_from(60, oldest=20, head=50, now=1.0)
    assert not nothing.started and nothing.report == "nothing to replay: the journal ends at 50"
    assert w.rewinds == 0
    trimmed = w.replay_from(0, oldest=20, head=50, now=1.0)
    assert trimmed.started
    assert trimmed.report == (
        "replaying 20–50; 0–19 were trimmed from the journal and are reported lost"
    )
    assert w.next_range(acked=50, head=50) == SendRange(1, 10, 4096)  # the journal reads from 20


def test_a_rebase_ends_a_commanded_replay() -> None:
    w = window(sent_through=50, acked=50)
    w.replay_from(5, oldest=1, head=50, now=1.0)
    w.on_rebase(acked=200, now=2.0)
    assert w.next_range(acked=200, head=210) == SendRange(201, 10, 4096)


def test_a_batch_that_starts_after_the_wanted_seq_reports_the_trimmed_ones_lost() -> None:
    assert SendWindow.lost_from(11, 11) is None
    assert SendWindow.lost_from(11, 40) == 11


def test_an_ack_without_progress_is_not_a_stall() -> None:
    """Central answers but has not committed more yet (a long group): nothing goes out again."""
    w = window(sent_through=30, acked=10, now=0.0)
    for now in (4.0, 8.0, 12.0):
        assert w.on_ack(ack(10), journal_epoch=EPOCH, acked=10, now=now).mark_acked is None
        assert w.on_tick(acked=10, now=now + 4.5) is None
    assert w.on_tick(acked=10, now=17.1) == Resend(11)  # silent since 12.0


def test_an_ack_of_another_epoch_does_not_keep_the_stall_away() -> None:
    w = window(sent_through=30, acked=10, now=0.0)
    w.on_ack(ack(30, epoch=OTHER_EPOCH), journal_epoch=EPOCH, acked=10, now=4.0)
    assert w.on_tick(acked=10, now=5.1) == Resend(11)


def test_repeated_stalls_back_off_up_to_a_bound_and_an_ack_resets_them() -> None:
    w = window(sent_through=30, acked=10, now=0.0)
    now, waits = 0.0, []
    for _ in range(6):
        wait = w.stall_timeout_s
        assert w.on_tick(acked=10, now=now + wait - 0.1) is None
        assert w.on_tick(acked=10, now=now + wait + 0.1) == Resend(11)
        now += wait + 0.1
        waits.append(wait)
        w.on_published(30, acked=10, now=now)
    assert waits == [5.0, 10.0, 20.0, 40.0, 40.0, 40.0]
    assert w.stall_timeout_s == 5.0 * MAX_STALL_BACKOFF
    w.on_ack(ack(10), journal_epoch=EPOCH, acked=10, now=now + 1)  # central is back
    assert w.stall_timeout_s == 5.0
    assert w.on_tick(acked=10, now=now + 6.2) == Resend(11)


def test_a_reconnect_and_an_emptied_window_reset_the_backoff() -> None:
    w = window(sent_through=30, acked=10, now=0.0)
    assert w.on_tick(acked=10, now=5.1) == Resend(11)
    assert w.stall_timeout_s == 10.0
    assert w.on_connect(acked=10, now=6.0) == 11
    assert w.stall_timeout_s == 5.0
    w.on_published(30, acked=10, now=6.0)
    assert w.on_tick(acked=10, now=11.1) == Resend(11)
    w.on_published(30, acked=30, now=12.0)
    assert w.on_tick(acked=30, now=13.0) is None  # nothing owed
    assert w.stall_timeout_s == 5.0


def test_a_resend_is_only_what_is_unacknowledged() -> None:
    w = window(sent_through=500, acked=0, now=0.0)
    w.on_ack(ack(480), journal_epoch=EPOCH, acked=0, now=1.0)
    assert w.on_tick(acked=480, now=6.1) == Resend(481)
    assert w.next_range(acked=480, head=500) == SendRange(481, 10, 4096)


# -- the live lane ---------------------------------------------------------------------------

LIVE = WindowLimits(
    window_events=100,
    batch_events=10,
    batch_bytes=4096,
    ack_timeout_s=5.0,
    live_lag_events=20,
    live_events=25,
    drain_window_events=30,
)


def draining(*, acked: int = 0, head: int = 1000, now: float = 0.0) -> SendWindow:
    """A gateway back from an outage: ``head - acked`` events of backlog, nothing sent yet."""
    w = SendWindow(LIVE, now)
    w.on_connect(acked, now)
    return w


def test_no_lane_without_a_backlog_or_when_it_is_off() -> None:
    w = draining()
    assert w.next_range(acked=0, head=15) == SendRange(1, 10, 4096)
    assert w.live_from is None
    off = window()  # LIMITS: live_lag_events None
    assert off.next_range(acked=0, head=5000) == SendRange(1, 10, 4096)
    assert off.live_from is None


def test_a_backlog_opens_the_lane_at_the_head_and_new_events_go_out_first() -> None:
    w = draining(head=1000)
    assert w.next_range(acked=0, head=1000) == SendRange(1, 10, 4096)  # history: the drain
    assert w.live_from == 1001
    w.on_published(10, acked=0, now=0.1)
    assert w.next_range(acked=0, head=1003) == SendRange(1001, 10, 4096, live=True)
    w.on_published(1003, acked=0, now=0.2, live=True)
    assert w.next_range(acked=0, head=1003) == SendRange(11, 10, 4096)  # back to the drain
    assert w.live_batches == 1 and w.published_batches == 2


def test_the_drain_keeps_a_smaller_window_beside_the_lane_and_acks_pace_it() -> None:
    w = draining(head=1000)
    for last in (10, 20, 30):
        assert w.next_range(acked=0, head=1000) == SendRange(last - 9, 10, 4096)
        w.on_published(last, acked=0, now=0.1)
    assert w.next_range(acked=0, head=1000) is None  # 30 unacknowledged: the drain waits
    assert w.next_range(acked=10, head=1000) == SendRange(31, 10, 4096)  # an ack makes room


def test_the_lane_holds_at_most_live_events_and_newer_ones_wait_for_the_drain() -> None:
    w = draining(head=1000)
    w.next_range(acked=0, head=1000)
    w.on_published(10, acked=0, now=0.1)
    assert w.next_range(acked=0, head=1100) == SendRange(1001, 10, 4096, live=True)
    w.on_published(1010, acked=0, now=0.2, live=True)
    w.on_published(1020, acked=0, now=0.2, live=True)
    assert w.next_range(acked=0, head=1100) == SendRange(1021, 5, 4096, live=True)
    w.on_published(1025, acked=0, now=0.3, live=True)
    assert w.next_range(acked=0, head=1100) == SendRange(11, 10, 4096)  # the lane is full


def test_the_drain_stops_short_of_the_lane_and_jumps_over_what_it_sent() -> None:
    w = draining(acked=970, head=1000)
    assert w.next_range(acked=970, head=1000) == SendRange(971, 10, 4096)
    w.on_published(980, acked=970, now=0.1)
    w.next_range(acked=970, head=1004)
    w.on_published(1004, acked=970, now=0.2, live=True)
    w.on_published(990, acked=970, now=0.3)
    w.on_published(998, acked=970, now=0.3)  # a batch cut by its bytes
    assert w.next_range(acked=980, head=1004) == SendRange(999, 2, 4096)  # not into the lane
    w.on_published(1000, acked=980, now=0.4)
    assert w.next_range(acked=980, head=1004) is None  # 1001–1004 went live: nothing twice
    assert w.live_from is None and w.sent_through == 1004
    assert w.next_range(acked=990, head=1006) == SendRange(1005, 10, 4096)


CHANNEL = replace(LIVE, live_channel=True)  # fresh events on a channel read ahead at central


def on_channel(*, acked: int = 0, now: float = 0.0) -> SendWindow:
    w = SendWindow(CHANNEL, now)
    w.on_connect(acked, now)
    return w


def test_a_lane_kept_until_acked_stays_open_once_the_drain_has_sent_up_to_it() -> None:
    """With its own channel read ahead at central, the lane outlives the drain's last send:
    the drain's last batches may wait at central behind other backlogs."""
    w = on_channel(acked=970)
    for last in (980, 990, 1000):
        assert w.next_range(acked=970, head=1000) == SendRange(last - 9, 10, 4096)
        w.on_published(last, acked=970, now=0.1)
    assert w.live_from == 1001
    assert w.next_range(acked=970, head=1000) is None  # the drain sent up to the lane
    assert w.live_from == 1001  # and the lane stays open: central has not acked 1000
    fresh = SendRange(1001, 10, 4096, live=True, fresh=True)
    assert w.next_range(acked=990, head=1003) == fresh
    w.on_published(1003, acked=990, now=0.2, live=True)
    assert w.next_range(acked=990, head=1003) is None  # nothing twice, nothing into the lane
    # acked: the lane closes, and what follows is fresh too: on the live channel, in order
    assert w.next_range(acked=1000, head=1005) == SendRange(1004, 10, 4096, fresh=True)
    assert w.live_from is None and w.rewinds == 0


def test_on_the_live_channel_any_history_owed_opens_the_lane_whatever_the_lag() -> None:
    """30 events of history (far below live_lag_events): a press made now still goes ahead of
    them, since they may wait at central behind every other gateway's backlog."""
    w = on_channel(acked=970)
    assert w.next_range(acked=970, head=1000) == SendRange(971, 10, 4096)  # history
    assert w.live_from == w.fresh_from == 1001
    w.on_published(980, acked=970, now=0.1)
    assert w.next_range(acked=970, head=1001) == SendRange(1001, 10, 4096, True, True)


def test_without_history_every_batch_is_fresh_and_no_lane_opens() -> None:
    w = on_channel()
    assert w.next_range(acked=0, head=0) is None  # a journal empty when it first connects
    assert w.next_range(acked=0, head=3) == SendRange(1, 10, 4096, fresh=True)
    w.on_published(3, acked=0, now=0.1)
    assert w.live_from is None
    assert w.next_range(acked=3, head=5) == SendRange(4, 10, 4096, fresh=True)


def test_history_and_fresh_events_never_share_a_batch() -> None:
    w = on_channel(acked=995)
    w.next_range(acked=995, head=1000)  # the first send fixes fresh_from at 1001
    w.replay_from(993, oldest=1, head=1004, now=0.2)  # an operator's replay: no lane
    assert w.live_from is None
    assert w.next_range(acked=995, head=1004) == SendRange(993, 8, 4096)  # stops at 1000
    w.on_published(1000, acked=995, now=0.3)
    # caught up with the ack, history still owed: the fresh ones go ahead on the lane
    assert w.next_range(acked=995, head=1004) == SendRange(1001, 10, 4096, True, True)
    w.on_published(1004, acked=995, now=0.3, live=True)
    assert w.next_range(acked=995, head=1004) is None


def test_a_brief_reconnect_sends_the_lane_again_first_and_keeps_it_fresh() -> None:
    """A broker node lost under the gateway: what the lane sent may be gone with it. Back
    within FRESH_OUTAGE_S, the lane goes out again first, on the live channel."""
    w = on_channel(acked=0)
    w.next_range(acked=0, head=1000)
    w.on_published(10, acked=0, now=0.1)
    w.next_range(acked=0, head=1004)
    w.on_published(1004, acked=0, now=0.2, live=True)
    w.on_disconnect(1.0)
    w.on_connect(0, 1.0 + FRESH_OUTAGE_S)
    assert w.fresh_from == 1001
    assert w.next_range(acked=0, head=1006) == SendRange(1001, 10, 4096, True, True)
    w.on_published(1006, acked=0, now=62.0, live=True)
    assert w.next_range(acked=0, head=1006) == SendRange(1, 10, 4096)  # then the history


def test_after_an_outage_everything_journaled_is_history() -> None:
    w = on_channel(acked=0)
    w.next_range(acked=0, head=5)
    w.on_published(5, acked=0, now=0.1)  # fresh, on the live channel
    w.on_disconnect(1.0)
    w.on_connect(0, 2.0 + FRESH_OUTAGE_S)  # away longer: presses of then are history now
    assert w.next_range(acked=0, head=40) == SendRange(1, 10, 4096)
    assert w.fresh_from == w.live_from == 41


def test_central_s_replay_requests_for_the_lane_s_gap_are_not_taken() -> None:
    w = draining(head=1000)
    w.next_range(acked=0, head=1000)
    w.on_published(10, acked=0, now=0.1)
    w.next_range(acked=0, head=1001)
    w.on_published(1001, acked=0, now=0.2, live=True)
    # central stored 1001 beyond the gap and asks for 1–1000 again: the drain is sending them
    decision = w.on_ack(ack(0, replay_from=1), journal_epoch=EPOCH, acked=0, now=0.5)
    assert decision.replay_from is None and w.rewinds == 0 and w.replays_skipped == 1
    assert w.next_range(acked=0, head=1001) == SendRange(11, 10, 4096)


def test_a_lost_drain_batch_beside_the_lane_is_a_stall() -> None:
    """Acks for live batches keep coming but the drain does not move: after the stall timeout
    everything unacknowledged goes out again, in order, and the lane starts over at the head."""
    w = draining(head=1000, now=0.0)
    w.next_range(acked=0, head=1000)
    w.on_published(10, acked=0, now=0.0)
    w.next_range(acked=0, head=1001)
    w.on_published(1001, acked=0, now=0.1, live=True)
    w.on_ack(ack(0, replay_from=1), journal_epoch=EPOCH, acked=0, now=2.0)  # the live batch's
    assert w.on_tick(acked=0, now=5.1) == Resend(1)
    assert w.live_from is None and w.rewinds == 1
    assert w.next_range(acked=0, head=1001) == SendRange(1, 10, 4096)
    assert w.live_from == 1002  # still far behind: a new lane from the head


def test_acks_beyond_the_live_batches_are_heard_beside_the_lane() -> None:
    """Central answering resent drain batches (no progress, more acks than live batches) is
    reading: no stall, as without a lane."""
    w = draining(head=1000, now=0.0)
    w.next_range(acked=0, head=1000)
    w.on_published(10, acked=0, now=0.0)
    w.next_range(acked=0, head=1001)
    w.on_published(1001, acked=0, now=0.1, live=True)
    w.on_ack(ack(0), journal_epoch=EPOCH, acked=0, now=1.0)  # the live batch's answer
    w.on_ack(ack(0), journal_epoch=EPOCH, acked=0, now=4.0)  # a drain batch's
    assert w.on_tick(acked=0, now=8.0) is None
    assert w.on_tick(acked=0, now=9.1) == Resend(1)


def test_progress_keeps_the_stall_away_beside_the_lane() -> None:
    w = draining(head=1000, now=0.0)
    w.next_range(acked=0, head=1000)
    w.on_published(10, acked=0, now=0.0)
    w.on_ack(ack(10), journal_epoch=EPOCH, acked=0, now=4.0)
    assert w.on_tick(acked=10, now=8.0) is None
    assert w.live_from == 1001


def test_a_reconnect_a_rebase_or_a_commanded_replay_closes_the_lane() -> None:
    closers: list[Callable[[SendWindow], object]] = [
        lambda w: w.on_connect(0, 1.0),
        lambda w: w.on_rebase(0, 1.0),
        lambda w: w.replay_from(1, oldest=1, head=1001, now=1.0),
    ]
    for close in closers:
        w = draining(head=1000)
        w.next_range(acked=0, head=1000)
        w.on_published(10, acked=0, now=0.1)
        w.next_range(acked=0, head=1001)
        w.on_published(1001, acked=0, now=0.2, live=True)
        close(w)
        assert w.live_from is None
        assert w.next_range(acked=0, head=1001) == SendRange(1, 10, 4096)
