"""The gateway's sense of time.

A Raspberry Pi has no real-time clock: until NTP synchronises, the wall clock may be years off.
Every event therefore carries the wall clock, the monotonic clock, the boot id and whether the
wall clock was synchronised; central repairs unsynchronised stamps from later synchronised ones
of the same boot (CLOCK_MONOTONIC only means something within one kernel boot).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import time
import uuid
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from hallkit.clock import utc_now
from protocols.strict import clamp_to_window

_TIME_ERROR = 5  # adjtimex(2): "clock not synchronized"
_SYNC_CACHE_S = 10.0


def machine_boot_id() -> str:
    """The kernel's boot id (32 hex digits): the epoch of time.monotonic_ns()."""
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip().replace("-", "")
    except OSError:
        return uuid.uuid4().hex  # not Linux: one id per process is the honest fallback


def kernel_says_synchronised() -> bool:
    """ntp_adjtime with no modes reads the kernel's NTP state without changing anything."""
    libc_name = ctypes.util.find_library("c")
    if not libc_name:
        return False
    libc = ctypes.CDLL(libc_name, use_errno=True)
    buf = ctypes.create_string_buffer(512)  # struct timex is ~208 bytes; modes=0 is read-only
    try:
        state = libc.ntp_adjtime(buf)
    except AttributeError:
        return False
    return state not in (-1, _TIME_ERROR)


@dataclass(frozen=True, slots=True)
class Stamp:
    utc: datetime
    mono_ns: int
    synced: bool

    @property
    def utc_text(self) -> str:
        return self.utc.isoformat(timespec="microseconds").replace("+00:00", "Z")


class Clock:
    """Stamps events. ``assume_synced`` overrides the kernel (tests, sites with GPS time)."""

    def __init__(self, assume_synced: bool | None = None) -> None:
        self.boot_id = machine_boot_id()
        self._assume = assume_synced
        self._synced = False
        self._checked_at = -_SYNC_CACHE_S

    def set_assumed(self, value: bool | None) -> None:
        self._assume = value

    def synchronised(self) -> bool:
        if self._assume is not None:
            return self._assume
        now = time.monotonic()
        if now - self._checked_at >= _SYNC_CACHE_S:
            self._synced = kernel_says_synchronised()
            self._checked_at = now
        return self._synced

    def stamp(self) -> Stamp:
        now = utc_now()
        pinned = clamp_to_window(now)
        if pinned != now:  # a wall clock outside what the contract admits is not synchronised
            return Stamp(pinned, time.monotonic_ns(), False)
        return Stamp(now, time.monotonic_ns(), self.synchronised())
