"""The gateway's device supervisors, each behind the one small ``Device`` protocol.

A device is a unit the gateway starts, stops and asks for its health without knowing what it
is: an evaluator bus (``evaluators.py``), the queue machine (``queue_machine.py``), the cameras
(``cameras.py``). ``build.py`` makes the list from the configuration; a new device family is a
module here and its line there.

What a device journals reaches the rest of the gateway through the journal's subscribers
(``edge/committed.py``), never through callbacks set on the device from outside.
"""

from __future__ import annotations

from typing import Any, Protocol

from hallkit.supervise import Supervisor


class Device(Protocol):
    @property
    def name(self) -> str:
        """The unit: ``bus-0``, ``queue``, ``cameras``; its tasks are named after it."""
        ...

    def device_ids(self) -> list[str]:
        """The ids a remote ``reread_devices`` names it by (empty: never restarted that way)."""
        ...

    async def start(self, supervisor: Supervisor) -> None:
        """Start its work as tasks of the gateway's supervisor, then return."""
        ...

    async def close(self) -> None:
        """Stop its tasks and let go of what it holds (also after the supervisor stopped)."""
        ...

    def health(self) -> dict[str, Any]:
        """Its part of the gateway's health; lists under the same key add up across devices."""
        ...


def merged_health(devices: list[Device]) -> dict[str, Any]:
    """The devices' health parts in one: lists under one key are joined in device order."""
    health: dict[str, Any] = {}
    for device in devices:
        for key, value in device.health().items():
            if isinstance(value, list) and isinstance(health.get(key), list):
                health[key] = [*health[key], *value]
            else:
                health[key] = value
    return health
