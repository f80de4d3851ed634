"""The send window with its live lane against a model of central, property by property: every
event reaches central, without loss the lane sends nothing twice, and central's ack stays the
contiguous committed seq."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field, replace

from hypothesis import given, settings
from hypothesis import strategies as st

from edge.sendwindow import SendWindow, WindowLimits
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
# the lane kept open until central's ack reaches it (a live channel read ahead at central)
UNTIL_ACKED = replace(LIMITS, lane_until_acked=True)
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
    flight: deque[tuple[int, int]] = field(default_factory=deque)

    def __post_init__(self) -> None:
        self.window = SendWindow(self.limits, 0.0)

    def send(self, batch_cut: int) -> None:
        while (r := self.window.next_range(acked=self.acked, head=self.head)) is not None:
            last = min(self.head, r.first + min(r.max_events, batch_cut) - 1)
            self.flight.append((r.first, last))
            self.published += last - r.first + 1
            self.window.on_published(last, acked=self.acked, now=self.now, live=r.live)

    def deliver(self, central: Central, *, drop: bool) -> None:
        first, last = self.flight.popleft()
        if drop:
            return
        ack = central.take(first, last)
        assert ack.committed_through <= central.committed  # never beyond the contiguous
        decision = self.window.on_ack(ack, journal_epoch=EPOCH, acked=self.acked, now=self.now)
        if decision.mark_acked is not None:
            self.acked = max(self.acked, decision.mark_acked)


actions = st.lists(
    st.tuples(
        st.sampled_from(["journal", "deliver", "drop", "tick", "reconnect"]),
        st.integers(min_value=1, max_value=40),
    ),
    max_size=120,
)


def settle(gw: Gateway, central: Central) -> None:
    """The network heals: deliver everything, let time pass until central has it all."""
    for _ in range(10_000):
        gw.send(gw.limits.batch_events)
        if gw.flight:
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
    limits=st.sampled_from([LIMITS, UNTIL_ACKED]),
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
        elif action in ("deliver", "drop") and gw.flight:
            gw.deliver(central, drop=action == "drop")
        elif action == "tick":
            gw.now += n / 4
            gw.window.on_tick(acked=gw.acked, now=gw.now)
        elif action == "reconnect":
            gw.flight.clear()
            gw.window.on_connect(gw.acked, gw.now)
        gw.send(1 + n % LIMITS.batch_events)
    settle(gw, central)
    assert central.stored == set(range(1, gw.head + 1))
    assert gw.acked == central.committed == gw.head


@given(
    backlog=st.integers(min_value=0, max_value=300),
    steps=actions,
    limits=st.sampled_from([LIMITS, UNTIL_ACKED]),
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
        elif action == "deliver" and gw.flight:
            gw.deliver(central, drop=False)
        gw.send(1 + n % LIMITS.batch_events)
    while gw.flight or gw.acked < gw.head:
        gw.send(gw.limits.batch_events)
        gw.deliver(central, drop=False)
    assert central.stored == set(range(1, gw.head + 1))
    assert gw.published == gw.head
    assert gw.window.rewinds == 0
