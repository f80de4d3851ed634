"""The uplink's send window, without I/O: which journal range goes out next, what an ack from
central changes, when a silence means everything unacknowledged goes out again.

Plain values in, decisions out. The caller (``edge/uplink.py``) owns the broker connection and
the journal; it passes the journal's numbers and the monotonic time into every call and carries
out what comes back. Nothing here reads a clock, a socket or a database, so every rule of the
no-loss promise can be tested with numbers alone.

The rules, as central and the broker force them:
- only central's ack (after its commit) lets the journal trim; a broker PUBACK proves nothing;
- at most ``window_events`` published and unacknowledged; batches as the journal reads them;
- the ack stream silent (no ack message at all, not merely no progress) for ``ack_timeout_s``
  with something outstanding: send again what is unacknowledged, from the ack; each further
  stall without an ack in between doubles the silence waited for (up to ``MAX_STALL_BACKOFF``
  times), so a central that is slow, not gone, is never sent the same window over and over;
- central asks for a replay from a gap (at most once per ``replay_debounce_s`` for one start);
- an operator's replay command sends from any seq, below central's ack too, until it catches up;
- after a reconnect or a renumbering everything unacknowledged goes out again.

The live lane (when ``live_lag_events`` is set): while the drain is far behind the journal's
head (more than ``live_lag_events`` journaled and not yet sent, e.g. hours of backlog after an
outage), what is journaled from then on goes out at once in batches of its own, beside the
drain, so a hall's live presses do not wait behind its history:
- the lane starts at the head's next seq and holds at most ``live_events``; newer events than
  that wait for the drain;
- while it is open the drain keeps at most ``drain_window_events`` unacknowledged (central's
  acks pace it, and a live batch queues behind little of it), and its batches stop short of the
  lane; when the drain reaches the lane it jumps over what the lane sent: nothing goes out twice;
- central stores the lane's batches beyond the gap and keeps acknowledging the contiguous
  committed seq, so nothing is trimmed early; its replay requests for that gap are what the
  drain is already sending, so until its ack passes what a lane sent they are not taken; and
  an ack that moves nothing forward counts as heard only beyond one per live batch sent (those
  answer the lane, not the drain): a drain batch that was lost falls silent once the drain's
  window is out and is sent again as a stall (the lane closed: everything unacknowledged).

With ``live_channel`` (the gateway publishes on a channel of its own that central reads ahead of
every backlog, ``uplink.live_channel``) the channel carries everything fresh, not only a lane:
- events journaled since the gateway came back from an outage (``fresh_from`` on) go out on the
  live channel, the history before them on the events channel; a connection that was down for
  at most ``FRESH_OUTAGE_S`` (a broker node lost under it, a network blip) keeps what was
  fresh fresh, a longer outage makes everything journaled so far history;
- while history is owed (not yet acknowledged by central) the lane stays open at
  ``fresh_from``, whatever the lag: the fresh events go out at once beside the drain, not in
  order behind history that waits at central behind other gateways' backlogs. The lane closes
  when central's ack reaches it (not when the drain has sent up to it): the drain, having sent
  up to the lane, sends nothing more until then;
- once central holds all history the drain sends the fresh events, in order, on the live
  channel: a gateway that has drained never again waits behind the others' backlogs;
- a reconnect or a stall sends the lane again first (from ``fresh_from``), then the history.
"""

from __future__ import annotations

from dataclasses import dataclass

from protocols.envelope import Ack

REPLAY_DEBOUNCE_S = 1.0  # central may ask for the same gap once per late batch
# a connection down at most this long keeps fresh events fresh (central counts an event
# received more than a minute after it happened as history)
FRESH_OUTAGE_S = 60.0
MAX_STALL_BACKOFF = 8  # repeated stalls wait at most this many ack timeouts


@dataclass(frozen=True, slots=True)
class WindowLimits:
    window_events: int  # published, not yet acknowledged
    batch_events: int
    batch_bytes: int
    ack_timeout_s: float  # resend when the ack stream is silent this long
    replay_debounce_s: float = REPLAY_DEBOUNCE_S
    live_lag_events: int | None = None  # unsent beyond this opens the live lane; None: never
    live_events: int = 1000  # the most one live lane sends ahead of the drain
    drain_window_events: int = 5000  # the drain's window while a live lane is open
    live_channel: bool = False  # fresh events on a channel central reads ahead of backlogs


@dataclass(frozen=True, slots=True)
class SendRange:
    """Read the journal from ``first`` within these limits and publish it as one batch."""

    first: int
    max_events: int
    max_bytes: int
    live: bool = False  # the live lane's batch (beside the drain)
    fresh: bool = False  # events of the live channel: published there, not on the events topic


@dataclass(frozen=True, slots=True)
class Resend:
    """The ack stream fell silent: what is unacknowledged, from ``first`` (central's ack + 1),
    goes out again."""

    first: int


@dataclass(frozen=True, slots=True)
class AckDecision:
    """What one ack from central asks of the journal and the sender."""

    other_epoch: bool = False  # it speaks for a journal numbering since replaced: ignored
    mark_acked: int | None = None  # the journal may trim through this seq
    rebase_to: int | None = None  # renumber everything above ``mark_acked`` from this seq
    replay_from: int | None = None  # central's replay request taken: sending again from here
    wake: bool = False  # the sender has something new to decide


@dataclass(frozen=True, slots=True)
class CommandedReplay:
    started: bool
    report: str  # what will be sent, for the command's result


class SendWindow:
    """The state between the journal and central: sent through which seq, since when no ack
    was heard, how many stalls in a row, which replay is running."""

    def __init__(self, limits: WindowLimits, now: float) -> None:
        self.limits = limits
        self.sent_through = 0
        self.rewinds = 0  # times the window went back (stall, central's replay, a command)
        self.published_batches = 0
        self._last_ack_heard = now
        self._stalls = 0  # stalls in a row, no ack heard in between: the backoff
        self._last_replay: tuple[int, float] = (0, 0.0)
        self._replay_from: int | None = None  # a commanded replay, below central's ack too
        self.live_from: int | None = None  # the open live lane's first seq
        self.live_sent_through = 0  # the live lane sent through here
        self.live_batches = 0
        self._ahead_through = 0  # a lane sent through here ahead of the drain: not yet acked
        self._live_unanswered = 0  # live batches whose ack (no progress, beside a lane) is due
        self.replays_skipped = 0  # central's replay requests for a gap the drain is sending
        # with the live channel: events from here on are fresh (None: the head at the next
        # send, everything journaled before it is history)
        self.fresh_from: int | None = None
        self._offline_since: float | None = None

    # -- connection and journal changes ---------------------------------------------------

    def on_connect(self, acked: int, now: float) -> int:
        """A new broker session: whatever the broker held for us may be gone, so start again
        at the ack central sent last (or at a commanded replay that has not caught up). Returns the
        first seq that goes out."""
        self.sent_through = acked if self._replay_from is None else self._replay_from - 1
        self._last_ack_heard = now
        self._stalls = 0
        self._close_lane()  # what the broker held may be gone: the drain sends it all
        away = self._offline_since
        if away is None or now - away > FRESH_OUTAGE_S:
            self.fresh_from = None  # back from an outage: what it journaled is history
        self._offline_since = None
        return self.sent_through + 1

    def on_disconnect(self, now: float) -> None:
        """The broker connection dropped: how long it stays down decides whether what is
        journaled meanwhile is still fresh when it comes back."""
        if self._offline_since is None:
            self._offline_since = now

    def on_rebase(self, acked: int, now: float) -> None:
        """The journal renumbered everything unacknowledged: send it all from the new start."""
        self._replay_from = None
        self.sent_through = acked
        self._last_ack_heard = now
        self._close_lane()
        self.fresh_from = None  # renumbered: all of it goes out as history

    # -- central's word -------------------------------------------------------------------

    def on_ack(self, ack: Ack, *, journal_epoch: str, acked: int, now: float) -> AckDecision:
        """An ack addressed to this gateway; ``acked`` is the journal's recorded ack."""
        if ack.epoch is not None and ack.epoch != journal_epoch:
            return AckDecision(other_epoch=True)
        if ack.epoch is not None and ack.rebase_to is not None:
            # central refuses this numbering above committed_through: the journal renumbers,
            # and its rebase (on_rebase) restarts the window
            return AckDecision(mark_acked=ack.committed_through, rebase_to=ack.rebase_to)
        mark = ack.committed_through if ack.committed_through > acked else None
        reach = max(acked, ack.committed_through)
        ahead = self.live_from is not None or reach < self._ahead_through
        if ahead and mark is None and self._live_unanswered > 0:
            self._live_unanswered -= 1  # a live batch's answer: it says nothing of the drain
        else:
            # any ack of this journal proves central is reading and committing: not a stall
            self._last_ack_heard = now
            self._stalls = 0
        replayed = None
        if ack.replay_from is not None and ahead:
            self.replays_skipped += 1  # the gap below a lane: the drain is sending it
        elif ack.replay_from is not None and self._replay(ack.replay_from, now):
            replayed = ack.replay_from
        return AckDecision(mark_acked=mark, replay_from=replayed, wake=True)

    def _replay(self, start: int, now: float) -> bool:
        last_start, last_at = self._last_replay
        repeated = start == last_start and now - last_at < self.limits.replay_debounce_s
        if start > self.sent_through or repeated:
            return False
        self._last_replay = (start, now)
        self.sent_through = start - 1
        self.rewinds += 1
        return True

    def replay_from(self, seq: int, *, oldest: int, head: int, now: float) -> CommandedReplay:
        """An operator's command: publish everything again from ``seq``, acknowledged or not
        (central lost data, e.g. restored from a backup)."""
        if seq > head:
            return CommandedReplay(False, f"nothing to replay: the journal ends at {head}")
        self._replay_from = max(seq, 1)
        self.sent_through = self._replay_from - 1
        self._close_lane()  # the replay sends in order (fresh events on their own channel)
        self._last_ack_heard = now
        self.rewinds += 1
        if seq < oldest:
            return CommandedReplay(
                True,
                f"replaying {oldest}–{head}; {seq}–{oldest - 1} were trimmed from the "
                "journal and are reported lost",
            )
        return CommandedReplay(True, f"replaying {seq}–{head}")

    # -- sending --------------------------------------------------------------------------

    def next_range(self, *, acked: int, head: int) -> SendRange | None:
        """The next batch to publish, if the journal has one and the window has room."""
        if self._replay_from is not None and self.sent_through >= acked:
            self._replay_from = None  # the commanded replay has caught up
        limits = self.limits
        fresh_from = self._fresh_from(head)
        self._settle_live(acked)
        base = self._base(acked)
        lag = limits.live_lag_events
        if self.live_from is None and self._replay_from is None:
            if fresh_from is not None and acked < fresh_from - 1:
                # history owed: whatever is fresh goes ahead of it (again, after a reconnect)
                self.live_from, self.live_sent_through = fresh_from, fresh_from - 1
            elif lag is not None and head - base > lag:
                # far behind: what is journaled from now on goes live
                self.live_from, self.live_sent_through = head + 1, head
        live_from = self.live_from
        if live_from is not None:
            first = self.live_sent_through + 1
            room = live_from + limits.live_events - first
            if head >= first and room > 0:
                most = min(limits.batch_events, room)
                return SendRange(first, most, limits.batch_bytes, True, fresh_from is not None)
        nxt = base + 1
        window = limits.window_events
        if live_from is not None:
            window = min(window, limits.drain_window_events)
        if live_from is not None and nxt >= live_from:
            return None  # the drain reached the lane: it waits for central's ack to pass it
        if head >= nxt and nxt - 1 - acked < window:
            most = limits.batch_events
            if live_from is not None:
                most = min(most, live_from - nxt)  # the drain stops short of the lane
            fresh = fresh_from is not None and nxt >= fresh_from
            if fresh_from is not None and not fresh:
                most = min(most, fresh_from - nxt)  # history and fresh never share a batch
            return SendRange(nxt, most, limits.batch_bytes, fresh=fresh)
        return None

    def _fresh_from(self, head: int) -> int | None:
        """With the live channel: the first fresh seq (set to the head's next on the first
        send after an outage)."""
        if not self.limits.live_channel:
            return None
        if self.fresh_from is None:
            self.fresh_from = head + 1
        return self.fresh_from

    def _close_lane(self) -> None:
        self.live_from = None
        self._ahead_through = self._live_unanswered = 0

    def _settle_live(self, acked: int) -> None:
        """The drain (or central's ack) reached the live lane: it jumps over what the lane sent,
        and the lane closes (with the live channel, central's ack only)."""
        reached = acked if self.limits.live_channel else self._base(acked)
        if self.live_from is not None and reached >= self.live_from - 1:
            self.sent_through = max(self.sent_through, self.live_sent_through, acked)
            self.live_from = None

    @property
    def stall_timeout_s(self) -> float:
        """How long the ack stream may be silent now before what is owed goes out again."""
        backoff: int = min(2**self._stalls, MAX_STALL_BACKOFF)
        return self.limits.ack_timeout_s * backoff

    def on_tick(self, *, acked: int, now: float) -> Resend | None:
        """Time passed with nothing to publish (call it when ``next_range`` gave none): a
        silent ack stream with events outstanding sends them again."""
        self._settle_live(acked)
        outstanding = self._sent(acked) - acked
        if outstanding > 0 and now - self._last_ack_heard > self.stall_timeout_s:
            self.sent_through = acked
            self._close_lane()  # everything unacknowledged goes out again, in order
            self._last_ack_heard = now
            self._stalls += 1
            self.rewinds += 1
            return Resend(acked + 1)
        if outstanding == 0:
            self._last_ack_heard = now  # nothing owed: the silence is not a stall
            self._stalls = 0
        return None

    def _base(self, acked: int) -> int:
        """Sent through here: a commanded replay counts from itself, anything else from the ack
        at least."""
        return self.sent_through if self._replay_from is not None else max(self.sent_through, acked)

    def _sent(self, acked: int) -> int:
        """The highest seq out, by the drain or the live lane."""
        base = self._base(acked)
        return base if self.live_from is None else max(base, self.live_sent_through)

    @staticmethod
    def lost_from(first: int, first_read: int) -> int | None:
        """The journal trimmed events before they were acknowledged (it was full): the batch
        tells central they are lost from ``first`` instead of leaving a silent gap."""
        return first if first_read > first else None

    def on_published(self, last: int, *, acked: int, now: float, live: bool = False) -> None:
        """A batch through ``last`` went to the broker (``live``: the live lane's)."""
        if self._sent(acked) <= acked:
            self._last_ack_heard = now  # the first one owed: its ack is awaited from now
        if live:
            self.live_sent_through = self._ahead_through = last
            self.live_batches += 1
            self._live_unanswered += 1
        else:
            self.sent_through = last
        self.published_batches += 1
