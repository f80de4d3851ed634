"""What ingesting a group did: each transaction's bookkeeping, the stats, and the
acknowledgements that follow once it committed."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any


@dataclass(frozen=True, slots=True)
class AckDecision:
    hall: str
    gateway: str
    committed_through: int
    replay_from: int | None
    epoch: str | None = None
    rebase_to: int | None = None
    # the gateway's committed seq in the store after the commit that decided this ack: it
    # never falls from one commit of a gateway to the next (they take its row lock in turn),
    # so it orders acks of one gateway decided by concurrent transactions (None: no commit's)
    stored_through: int | None = None


class SentAcks:
    """The last ack sent to each gateway, and never one from an older commit after it.

    A gateway's live and drain batches may commit in two transactions at once; their acks can
    be ready in the other order than the commits. The older one would say less than the
    gateway has heard, and its replay request (for a gap the newer commit filled) would make
    the gateway send its unacknowledged window again (``edge/sendwindow.py`` takes a replay
    request below its ack). So in its place the last ack sent goes again, without any
    request: the gateway still hears an answer, and it hears nothing it had not heard."""

    def __init__(self) -> None:
        self.last: dict[str, tuple[AckDecision, float]] = {}  # per gateway: sent, and when
        self._newest: dict[str, tuple[str | None, int]] = {}  # per gateway: epoch, stored

    def to_send(self, decision: AckDecision, now: float) -> AckDecision:
        """What to send for ``decision``; recorded as sent."""
        last = self.last.get(decision.gateway)
        if last is not None and self._older(decision):
            decision = replace(last[0], replay_from=None, rebase_to=None)
        elif decision.stored_through is not None and decision.rebase_to is None:
            self._newest[decision.gateway] = (decision.epoch, decision.stored_through)
        self.last[decision.gateway] = (decision, now)
        return decision

    def _older(self, decision: AckDecision) -> bool:
        """Decided by an earlier commit (of the same journal) than an ack already sent; a
        rebase order is always sent."""
        newest = self._newest.get(decision.gateway)
        return (
            newest is not None
            and decision.stored_through is not None
            and decision.rebase_to is None
            and newest[0] == decision.epoch
            and decision.stored_through < newest[1]
        )


@dataclass(slots=True)
class IngestStats:
    batches: int = 0
    events_stored: int = 0
    duplicates: int = 0
    quarantined: int = 0
    gaps_seen: int = 0
    conflicts: int = 0
    refused: int = 0
    by_reason: dict[str, int] = field(default_factory=dict)

    def add(self, other: IngestStats) -> None:
        for name in (
            "batches",
            "events_stored",
            "duplicates",
            "quarantined",
            "gaps_seen",
            "conflicts",
            "refused",
        ):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        for key, n in other.by_reason.items():
            self.by_reason[key] = self.by_reason.get(key, 0) + n


@dataclass(slots=True)
class Progress:
    hall: str
    committed: int
    epoch: str | None
    gap: bool = False
    acked: bool = False  # a batch of the followed numbering was processed: acknowledge it
    speaks_epoch: bool = False  # the gateway sends epochs, so it understands them in acks
    seen_through: int = 0  # highest seq of this gateway's batches compared or stored here
    pending: bool | None = None  # has ranges stored beyond a gap (None: not looked up yet)


@dataclass(slots=True)
class Txn:
    """What one transaction did; applied to the outcome only once it committed."""

    progress: dict[str, Progress] = field(default_factory=dict)
    rebases: dict[tuple[str, str], tuple[str, int, int]] = field(default_factory=dict)
    boots: set[tuple[str, str]] = field(default_factory=set)
    quarantined: set[str | None] = field(default_factory=set)
    stats: IngestStats = field(default_factory=IngestStats)
    # read for all gateways of the group at once: (hall, committed, revoked, epoch, pending)
    registered: dict[str, Registered | None] = field(default_factory=dict)  # None: unknown
    rows: list[dict[str, Any]] = field(default_factory=list)  # events not yet inserted
    boot_rows: list[dict[str, Any]] = field(default_factory=list)  # boot clocks, likewise
    # read for the first batch of each gateway at once, used by that batch alone
    held: dict[str, Held] = field(default_factory=dict)
    copy: bool = False  # events by COPY (PostgreSQL): every row gathered is known unstored


@dataclass(frozen=True, slots=True)
class Registered:
    """A gateway's row as the group's transaction locked it."""

    hall: str
    committed: int
    revoked: bool
    epoch: str | None
    pending: bool  # has ranges stored beyond a gap


@dataclass(frozen=True, slots=True)
class Held:
    """What the store holds of one gateway over ``first``…``last``: stored events' digests
    (None: stored before digests) and quarantined rows' digests, by seq."""

    first: int
    last: int
    stored: dict[int, str | None]
    kept: dict[int, set[str]]

    def covers(self, first: int, last: int) -> bool:
        return self.first <= first and last <= self.last


@dataclass(slots=True)
class Outcome:
    acks: dict[str, Progress] = field(default_factory=dict)
    rebases: dict[tuple[str, str], tuple[str, int, int]] = field(default_factory=dict)

    def absorb(self, txn: Txn) -> None:
        for gateway, state in txn.progress.items():
            if not state.acked:
                continue
            earlier = self.acks.get(gateway)
            if earlier is not None:
                state.gap = state.gap or earlier.gap
                state.speaks_epoch = state.speaks_epoch or earlier.speaks_epoch
                state.seen_through = max(state.seen_through, earlier.seen_through)
            self.acks[gateway] = state
        self.rebases.update(txn.rebases)
