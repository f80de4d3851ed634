"""The public form's brake: at most N submissions per client address per hour and M per
minute from everyone together (sliding windows, in memory: one central process serves the
public form; a restart forgets, which only ever lets more through).

An IPv6 client counts by its /64: a subscriber is given at least that much and may pick any
address in it, so counting single addresses would let one person through without limit."""

from __future__ import annotations

import ipaddress
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

HOUR_S, MINUTE_S = 3600.0, 60.0
MAX_ADDRESSES = 100_000  # beyond this the oldest addresses are forgotten (memory stays bounded)
IPV6_PREFIX = 64  # the smallest block an IPv6 subscriber is given


def client_key(address: str) -> str:
    """What one client is counted by: an IPv4 address (IPv4-mapped IPv6 too), an IPv6 /64."""
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        return address
    if isinstance(parsed, ipaddress.IPv6Address):
        if parsed.ipv4_mapped is not None:
            return str(parsed.ipv4_mapped)
        return str(ipaddress.IPv6Network((parsed, IPV6_PREFIX), strict=False))
    return str(parsed)


@dataclass
class IntakeLimiter:
    per_address_per_hour: int
    global_per_minute: int
    clock: Callable[[], float] = time.monotonic
    _by_address: dict[str, deque[float]] = field(default_factory=dict)
    _everyone: deque[float] = field(default_factory=deque)

    def _trim(self, times: deque[float], span: float, now: float) -> None:
        while times and times[0] <= now - span:
            times.popleft()

    def admit(self, address: str) -> str | None:
        """None: admitted (and counted); else which limit refused it ("address" | "global")."""
        now, address = self.clock(), client_key(address)
        self._trim(self._everyone, MINUTE_S, now)
        mine = self._by_address.get(address)
        if mine is not None:
            self._trim(mine, HOUR_S, now)
        if mine is not None and len(mine) >= self.per_address_per_hour:
            return "address"
        if len(self._everyone) >= self.global_per_minute:
            return "global"
        if mine is None:
            if len(self._by_address) >= MAX_ADDRESSES:
                self._by_address.pop(next(iter(self._by_address)))
            mine = self._by_address[address] = deque()
        mine.append(now)
        self._everyone.append(now)
        return None

    def retry_after(self, address: str, refused: str) -> int:
        """Seconds until the refusing window has room again."""
        now = self.clock()
        times = self._everyone if refused == "global" else self._by_address.get(client_key(address))
        span = MINUTE_S if refused == "global" else HOUR_S
        if not times:
            return 1
        return max(1, int(times[0] + span - now) + 1)
