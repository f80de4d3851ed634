"""Admission control: a per-gateway budget of bytes and messages per second, checked before a
message is read.

What costs central CPU is reading a message (JSON parsing and validation) before it is known to
be good or poison; a gateway that floods large batches can keep ingest busy enough to delay every
other hall's acknowledgements, even with its share of receive slots capped. So each gateway has
a token bucket of bytes and of messages, refilled at a configured rate up to a few seconds'
worth. It only bites under contention, when another gateway was heard from within the last
``CONTENTION_S``: a gateway alone (one draining a day's backlog at night) goes at full speed.

A message over the budget is dropped unread and so never acknowledged by central. That loses
nothing: the gateway's uplink publishes again from central's last acknowledgement once acks
stall for its ``ack_timeout_s`` (edge/sendwindow.py, ``on_tick``), and central asks it to replay
a gap when later batches arrive first. State messages over the budget still pass once per
``STATE_EVERY_S`` per gateway, so a flooding hall's health stays visible.

Called on paho's network thread only: no lock, no blocking, a few dict lookups per message.
"""

from __future__ import annotations

from dataclasses import dataclass

CONTENTION_S = 1.0  # another gateway heard from this recently: budgets apply
STATE_EVERY_S = 1.0  # one state message per gateway passes this often even over budget


@dataclass(slots=True)
class _Bucket:
    bytes: float
    messages: float
    at: float
    state_at: float = float("-inf")


class Admission:
    def __init__(self, bytes_per_s: float, messages_per_s: float, burst_s: float) -> None:
        self.bytes_per_s = bytes_per_s
        self.messages_per_s = messages_per_s
        self.max_bytes = bytes_per_s * burst_s
        self.max_messages = max(1.0, messages_per_s * burst_s)
        self._buckets: dict[str, _Bucket] = {}
        self._latest: tuple[str, float] = ("", float("-inf"))  # the last sender heard, when
        self._other: float = float("-inf")  # when a sender other than the latest was last heard

    def admit(self, sender: str, size: int, now: float, *, state: bool = False) -> bool:
        """Whether ``sender``'s message of ``size`` bytes, arriving at ``now``, is read."""
        bucket = self._buckets.get(sender)
        if bucket is None:
            bucket = self._buckets[sender] = _Bucket(self.max_bytes, self.max_messages, now)
        elapsed = max(0.0, now - bucket.at)
        bucket.at = now
        bucket.bytes = min(self.max_bytes, bucket.bytes + elapsed * self.bytes_per_s)
        bucket.messages = min(self.max_messages, bucket.messages + elapsed * self.messages_per_s)
        contended = self._contended(sender, now)
        within = bucket.bytes >= min(size, self.max_bytes) and bucket.messages >= 1
        state_due = state and now - bucket.state_at >= STATE_EVERY_S
        if not within and contended and not state_due:
            return False
        # charged even when alone, so a gateway that meets contention starts it with its bucket
        # drained rather than a fresh burst; never below zero, so it recovers within burst_s
        bucket.bytes = max(0.0, bucket.bytes - size)
        bucket.messages = max(0.0, bucket.messages - 1)
        if state:
            bucket.state_at = now
        return True

    def _contended(self, sender: str, now: float) -> bool:
        """Another gateway was heard from within CONTENTION_S (this message is noted too)."""
        latest, at = self._latest
        if latest != sender:
            self._other = at
        self._latest = (sender, now)
        return now - self._other < CONTENTION_S
