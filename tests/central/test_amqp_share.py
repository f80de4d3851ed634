"""How the aggregators share the broker's partitions (rendezvous hashing) and report their lag."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from central.spine.amqp_share import LIVE_FOR_S, Heartbeat, Members, describe, owner, share


def test_every_partition_has_exactly_one_owner_and_the_share_is_even() -> None:
    members = [f"agg-{i}" for i in range(4)]
    shares = [share(64, m, members) for m in members]
    assert sorted(p for s in shares for p in s) == list(range(64))
    assert all(8 <= len(s) <= 24 for s in shares), [len(s) for s in shares]


def test_alone_an_aggregator_owns_everything() -> None:
    assert share(4, "only", []) == frozenset(range(4))


def test_a_departed_aggregators_partitions_go_to_the_survivors_the_rest_stay() -> None:
    members = ["a", "b", "c"]
    before = {m: share(32, m, members) for m in members}
    after = {m: share(32, m, ["a", "b"]) for m in ("a", "b")}
    for m in ("a", "b"):
        assert before[m] <= after[m]  # nothing moves between survivors
    assert after["a"] | after["b"] == frozenset(range(32))
    assert all(owner(p, ["a", "b"]) in ("a", "b") for p in before["c"])


def test_members_are_live_while_heard_recently() -> None:
    members = Members("me")
    beat = Heartbeat("other", (1,), {1: 3}, None, 0)
    members.hear(beat, now=100.0)
    assert members.live(now=100.0 + LIVE_FOR_S) == {"me", "other"}
    assert members.live(now=100.1 + LIVE_FOR_S) == {"me"}


def test_heartbeat_round_trip_and_lag_line() -> None:
    at = datetime(2026, 12, 7, 2, 0, tzinfo=UTC)
    beat = Heartbeat("host-12-ab", (0, 2), {0: 5, 2: 7}, at, 1234)
    assert Heartbeat.from_bytes(beat.to_bytes()) == beat
    assert Heartbeat.from_bytes(b'{"aggregator": 1}') is None
    assert Heartbeat.from_bytes(b"not json") is None
    line = describe(beat, now=at + timedelta(seconds=1.5))
    assert line == (
        "host-12-ab  partitions 0,2  unacked 12 (0:5 2:7)  last commit 1.5 s ago  committed 1234"
    )
    idle = describe(Heartbeat("x", (), {}, None, 0), now=at)
    assert idle == "x  partitions none  unacked 0  last commit never  committed 0"
