"""The startup heap is kept out of later collections; garbage made after is still collected."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from hallkit.heap import freeze_startup_heap


class Node:
    def __init__(self) -> None:
        self.peer: Node | None = None


def cycle() -> tuple[weakref.ref[Node], Node]:
    a, b = Node(), Node()
    a.peer, b.peer = b, a
    return weakref.ref(a), a


@pytest.fixture
def unfrozen() -> Iterator[None]:
    yield
    gc.unfreeze()  # the rest of the session collects as it did


def collected_sees(thing: object) -> bool:
    return any(seen is thing for seen in gc.get_objects())


def test_what_lives_at_startup_is_frozen_and_later_garbage_still_goes(unfrozen: None) -> None:
    _, kept = cycle()
    assert collected_sees(kept)
    assert freeze_startup_heap() >= 1
    assert not collected_sees(kept)  # no later collection walks it
    before = gc.get_freeze_count()
    later, node = cycle()
    del node
    gc.collect()
    assert later() is None  # a cycle made after the freeze is collected as before
    assert gc.get_freeze_count() == before  # nothing new is frozen by collecting
