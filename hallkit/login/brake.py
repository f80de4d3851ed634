"""The login brake and the client address it counts by, shared by the gateway's hall page and
central's dashboard (both guard scrypt accounts behind a password form)."""

from __future__ import annotations

import ipaddress
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from typing import Annotated, TypeAlias

from pydantic import AfterValidator, Field
from starlette.requests import Request

IPNetwork: TypeAlias = ipaddress.IPv4Network | ipaddress.IPv6Network


def _valid_proxies(entries: list[str]) -> list[str]:
    parse_proxies(entries)  # ValueError names the bad entry
    return entries


# The ``trusted_proxies`` setting of both pages' configuration; each declares it with
# ``= Field(default_factory=list)`` (a default inside ``Annotated`` is invisible to mypy's
# pydantic plugin, which then demands the field in every constructor call).
TrustedProxies = Annotated[
    list[str],
    AfterValidator(_valid_proxies),
    Field(
        description="reverse proxies (addresses or networks) whose "
        "X-Forwarded-For names the client for the login brake; none by default",
    ),
]


class LoginBrake:
    """The brake on password guessing, counted before the password is checked.

    Every attempt takes a slot first (synchronously, so parallel requests on one event loop
    cannot all pass a check made before any of them counted) and gives it back only when it
    succeeds. Three counts, each over ``window_s``:

    - one address against one account: ``pair_limit`` tries, then that address waits;
    - one address against any account: ``address_limit`` tries, then it waits (a spray);
    - one account from anywhere: after ``account_limit`` tries the account is slowed, not
      locked: one try every ``account_spacing_s`` from any address, so that guessing from many
      addresses cannot keep its owner out for longer than that.

    Per process: with several processes an attacker gets the limits once per process."""

    def __init__(
        self,
        *,
        pair_limit: int = 5,
        address_limit: int = 20,
        account_limit: int = 10,
        window_s: float = 300.0,
        account_spacing_s: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.pair_limit, self.address_limit = pair_limit, address_limit
        self.account_limit, self.account_spacing_s = account_limit, account_spacing_s
        self.window_s = window_s
        self._clock = clock
        self._tries: dict[str, deque[float]] = {}
        self._slowed_until: dict[str, float] = {}

    def _recent(self, key: str, now: float) -> deque[float]:
        times = self._tries.setdefault(key, deque())
        while times and times[0] <= now - self.window_s:
            times.popleft()
        return times

    def admit(self, name: str, address: str) -> int:
        """Take a try for this name from this address: 0 if taken (check the password, then
        call ``succeeded`` or nothing), else the seconds to wait (nothing was counted)."""
        now = self._clock()
        pair = self._recent(f"pair:{address}\n{name}", now)
        by_address = self._recent(f"addr:{address}", now)
        account = self._recent(f"name:{name}", now)
        wait = 0.0
        for times, limit in ((pair, self.pair_limit), (by_address, self.address_limit)):
            if len(times) >= limit:
                wait = max(wait, times[-limit] + self.window_s - now)
        if not wait and len(account) >= self.account_limit:
            wait = max(0.0, self._slowed_until.get(name, 0.0) - now)
        if wait > 0:
            return int(wait) + 1
        for times in (pair, by_address, account):
            times.append(now)
        if len(account) >= self.account_limit:  # the account's next try waits its turn
            self._slowed_until[name] = now + self.account_spacing_s
        self._bound_memory(now)
        return 0

    def succeeded(self, name: str, address: str) -> None:
        """The owner is in: their own tries stop counting against the account; the address
        keeps its count (one good account must not reset guessing at others)."""
        self._tries.pop(f"pair:{address}\n{name}", None)
        self._tries.pop(f"name:{name}", None)
        self._slowed_until.pop(name, None)

    def _bound_memory(self, now: float) -> None:
        if len(self._tries) > 10_000:  # a spray of names or addresses
            for key in [k for k, v in self._tries.items() if not v or v[-1] <= now - self.window_s]:
                del self._tries[key]
            for name in [n for n, t in self._slowed_until.items() if t <= now]:
                del self._slowed_until[name]


def client_address(request: Request, trusted_proxies: Sequence[IPNetwork]) -> str:
    """The address a request comes from. ``X-Forwarded-For`` counts only when the peer is one
    of the configured proxies (default none: anybody could write that header), and then the
    nearest address in it that is not itself a trusted proxy."""
    peer = request.client.host if request.client else "?"
    if not trusted_proxies or not _in(peer, trusted_proxies):
        return peer
    forwarded = [
        part.strip()
        for header in request.headers.getlist("x-forwarded-for")
        for part in header.split(",")
        if part.strip()
    ]
    for hop in reversed(forwarded):
        if not _in(hop, trusted_proxies):
            return hop if _address(hop) is not None else peer
    return peer


def _address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def _in(text: str, networks: Sequence[IPNetwork]) -> bool:
    address = _address(text)
    return address is not None and any(address in net for net in networks)


def parse_proxies(entries: Iterable[str]) -> tuple[IPNetwork, ...]:
    """Addresses or networks (``10.0.0.1``, ``10.0.0.0/24``); ValueError names a bad one."""
    return tuple(ipaddress.ip_network(entry.strip(), strict=False) for entry in entries)
