"""The draw itself, without the database: which finished cases a seed picks.

Each department's finished cases are ordered by SHA-256 of ``seed + U+001F + case_no`` (hex,
then the case number) and the first *n* are taken. The order of a case depends only on the
seed and its own number, so the same seed over the same cases gives the same sample whatever
order the cases were stored or listed in, and a case added to the month changes the sample
only if it sorts before the last one taken.
"""

from __future__ import annotations

import hashlib
import heapq
import re
import secrets
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TypeVar

from central.audits.config import AuditConfig

SEED_PATTERN = r"^[0-9A-Za-z_-]{1,64}$"
MONTH_PATTERN = r"^20[0-9]{2}-(0[1-9]|1[0-2])$"
T = TypeVar("T")


def new_seed() -> str:
    return secrets.token_hex(8)


def check_seed(seed: str) -> str:
    if not re.match(SEED_PATTERN, seed):
        raise ValueError("种子只能含字母、数字、_ 和 -（至多 64 个）/ seed: 1–64 of [0-9A-Za-z_-]")
    return seed


def order_key(seed: str, case_no: str) -> tuple[str, str]:
    digest = hashlib.sha256(f"{seed}\x1f{case_no}".encode()).hexdigest()
    return digest, case_no


@dataclass(frozen=True, slots=True)
class DepartmentDraw:
    department: str
    population: int  # finished cases in the month
    size: int
    picked: tuple[str, ...]  # case numbers in draw order


def pick(seed: str, items: Iterable[T], n: int, number_of: Callable[[T], str]) -> list[T]:
    """The ``n`` items whose case numbers come first in the seed's order, in that order. Holds
    ``n`` items at a time: a month's cases can be fed in chunks, the previous pick first."""
    return heapq.nsmallest(n, items, key=lambda item: order_key(seed, number_of(item)))


def draw(
    seed: str, finished: Mapping[str, Iterable[str]], config: AuditConfig
) -> list[DepartmentDraw]:
    """``finished``: department → its case numbers finished in the month."""
    out = []
    for department in sorted(finished):
        numbers = set(finished[department])
        size = config.size_for(department).of(len(numbers))
        picked = pick(seed, numbers, size, str)
        out.append(DepartmentDraw(department, len(numbers), size, tuple(picked)))
    return out
