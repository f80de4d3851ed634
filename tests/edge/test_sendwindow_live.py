"""The send window with its live lane against a model of central, property by property: every
event reaches central, without loss the lane sends nothing twice, and central's ack stays the
contiguous committed seq. With the live channel the model's central reads the two channels in
any interleaving (the cluster reads the live one ahead of the backlogs), and fresh events never
go out behind history."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field, replace

from hypothesis import given, settings
from hypothesis import strategies as st

from edge.sendwindow import FRESH_OUTAGE_S, SendWindow, WindowLimits
from hallkit.clock import utc_now
from protocols.envelope import Ack

LIMITS = WindowLimits(
    window_events=60,
    batch_events=7,
    batch_bytes=1 << 20,
    ack_timeout_s=5.0,
    live_lag_events=15,
    live_events=12,
    drain_window_events=21,
)
# fresh events on a channel of their own, read ahead at central
CHANNEL = replace(LIMITS, live_channel=True)
EPOCH = "0000e1e1"


@dataclass
class Central:
    """Stores what arrives, acknowledges the contiguous committed seq, asks for a gap."""

    stored: set[int] = field(default_factory=set)
    committed: int = 0

    def take(self, first: int, last: int) -> Ack:
        self.stored.update(range(first, last + 1))
        while self.committed + 1 in self.stored:
            self.committed += 1
        gap = any(seq > self.committed for seq in self.stored)
        return Ack(
            hall="H1",
            gateway="gw1",
            committed_through=self.committed,
            replay_from=self.committed + 1 if gap else None,
            utc=utc_now(),
            epoch=EPOCH,
        )


@dataclass
class Gateway:
    limits: WindowLimits = LIMITS
    window: SendWindow = field(init=False)
    head: int = 0
    acked: int = 0
    now: float = 0.0
    published: int = 0  # events
    # in flight per channel: the events topic (False) and the live channel (True)
    flight: dict[bool, deque[tuple[int, int]]] = field(
        default_factory=lambda: {False: deque(), True: deque()}
    )
    on_live: set[int] = field(default_factory=set)  # seqs ever published on the live channel
    on_events: set[int] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.window = SendWindow(self.limits, 0.0)

    def send(self, batch_cut: int) -> None:
        while (r := self.window.next_range(acked=self.acked, head=self.head)) is not None:
            last = min(self.head, r.first + min(r.max_events, batch_cut) - 1)
            live = self.limits.live_channel and (r.live or r.fresh)
            self.flight[live].append((r.first, last))
            (self.on_live if live else self.on_events).update(range(r.first, last + 1))
            self.published += last - r.first + 1
            self.window.on_published(last, acked=self.acked, now=self.now, live=r.live)

    @property
    def in_flight(self) -> bool:
        return bool(self.flight[False] or self.flight[True])

    def deliver(self, central: Central, *, drop: bool, live_first: bool = False) -> None:
        channel = live_first if self.flight[live_first] else not live_first
        first, last = self.flight[channel].popleft()
        if drop:
            return
        ack = central.take(first, last)
        assert ack.committed_through <= central.committed  # never beyond the contiguous
        decision = self.window.on_ack(ack, journal_epoch=EPOCH, acked=self.acked, now=self.now)
        if decision.mark_acked is not None:
            self.acked = max(self.acked, decision.mark_acked)

    def reconnect(self, away_s: float) -> None:
        """The connection drops (what is in flight is lost) and comes back ``away_s`` later."""
        self.flight[False].clear()
        self.flight[True].clear()
        self.window.on_disconnect(self.now)
        self.now += away_s
        self.window.on_connect(self.acked, self.now)


actions = st.lists(
    st.tuples(
        st.sampled_from(["journal", "deliver", "drop", "tick", "reconnect", "outage"]),
        st.integers(min_value=1, max_value=40),
    ),
    max_size=120,
)


def settle(gw: Gateway, central: Central) -> None:
    """The network heals: deliver everything, let time pass until central has it all."""
    for _ in range(10_000):
        gw.send(gw.limits.batch_events)
        if gw.in_flight:
            gw.deliver(central, drop=False)
            continue
        if gw.acked >= gw.head:
            return
        gw.now += 100.0
        gw.window.on_tick(acked=gw.acked, now=gw.now)
    raise AssertionError("did not settle")


@given(
    backlog=st.integers(min_value=0, max_value=300),
    steps=actions,
    limits=st.sampled_from([LIMITS, CHANNEL]),
)
@settings(max_examples=400, deadline=None)
def test_every_event_reaches_central_whatever_the_network_does(
    backlog: int, steps: list[tuple[str, int]], limits: WindowLimits
) -> None:
    gw, central = Gateway(limits, head=backlog), Central()
    gw.window.on_connect(0, 0.0)
    for action, n in steps:
        if action == "journal":
            gw.head += n
        elif action in ("deliver", "drop") and gw.in_flight:
            gw.deliver(central, drop=action == "drop", live_first=n % 2 == 0)
        elif action == "tick":
            gw.now += n / 4
            gw.window.on_tick(acked=gw.acked, now=gw.now)
        elif action in ("reconnect", "outage"):  # back within FRESH_OUTAGE_S, or after it
            gw.reconnect(n / 4 if action == "reconnect" else FRESH_OUTAGE_S + n)
        gw.send(1 + n % LIMITS.batch_events)
    settle(gw, central)
    assert central.stored == set(range(1, gw.head + 1))
    assert gw.acked == central.committed == gw.head


@given(
    backlog=st.integers(min_value=0, max_value=300),
    steps=actions,
    limits=st.sampled_from([LIMITS, CHANNEL]),
)
@settings(max_examples=400, deadline=None)
def test_without_loss_nothing_is_published_twice(
    backlog: int, steps: list[tuple[str, int]], limits: WindowLimits
) -> None:
    """No drop, no reconnect, no stall (time stands still): the lane and the drain together
    publish every event exactly once, whatever the order of journaling and acks."""
    gw, central = Gateway(limits, head=backlog), Central()
    gw.window.on_connect(0, 0.0)
    for action, n in steps:
        if action == "journal":
            gw.head += n
        elif action == "deliver" and gw.in_flight:
            gw.deliver(central, drop=False, live_first=n % 2 == 0)
        gw.send(1 + n % LIMITS.batch_events)
    while gw.in_flight or gw.acked < gw.head:
        gw.send(gw.limits.batch_events)
        gw.deliver(central, drop=False)
    assert central.stored == set(range(1, gw.head + 1))
    assert gw.published == gw.head
    assert gw.window.rewinds == 0


@given(backlog=st.integers(min_value=0, max_value=300), steps=actions)
@settings(max_examples=600, deadline=None)
def test_on_the_live_channel_fresh_events_never_wait_behind_history(
    backlog: int, steps: list[tuple[str, int]]
) -> None:
    """What a gateway back from an outage holds is history, on the events topic; whatever it
    journals once connected is fresh: only ever on the live channel (through stalls and
    brief reconnects), and while history is owed, at central or on its way there at once, as
    far as the lane holds, however full the drain's window (no drops here: a lost batch is
    the stall's business)."""
    gw, central = Gateway(CHANNEL, head=backlog), Central()
    gw.window.on_connect(0, 0.0)
    gw.send(CHANNEL.batch_events)  # the first send: the backlog is history
    for action, n in steps:
        if action == "journal":
            gw.head += n
        elif action in ("deliver", "drop") and gw.in_flight:
            gw.deliver(central, drop=False, live_first=n % 2 == 0)
        elif action == "tick":
            gw.now += n / 4
            gw.window.on_tick(acked=gw.acked, now=gw.now)
        elif action in ("reconnect", "outage"):
            gw.reconnect(n / 4)
        gw.send(1 + n % CHANNEL.batch_events)
        if gw.acked < backlog:  # history owed: the lane carries the fresh ones at once
            ahead = min(gw.head, backlog + CHANNEL.live_events)
            on_way = {s for first, last in gw.flight[True] for s in range(first, last + 1)}
            assert set(range(backlog + 1, ahead + 1)) <= central.stored | on_way
    settle(gw, central)
    assert gw.on_events <= set(range(1, backlog + 1))
    assert gw.on_live.isdisjoint(range(1, backlog + 1))
    assert central.stored == set(range(1, gw.head + 1))
