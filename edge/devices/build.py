"""The gateway's devices, built from its configuration: the one place that knows the families
and how one family's events reach another (a queue message → the evaluators' invitations)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from edge.config import GatewayConfig
from edge.devices import Device
from edge.devices.cameras import CameraDevice
from edge.devices.evaluators import EvaluatorSupervisor
from edge.devices.queue_machine import QueueSupervisor
from edge.journal import Journal


def build_devices(
    config: GatewayConfig, journal: Journal, current: Callable[[], Sequence[Device]]
) -> list[Device]:
    """Fresh devices for ``config`` (nothing runs until each is started). ``current`` gives the
    gateway's devices when a queue message arrives (rebuilt ones included)."""
    devices: list[Device] = [
        EvaluatorSupervisor(bus, journal, config.staff_names, name=f"bus-{index}")
        for index, bus in enumerate(config.evaluator_buses)
    ]
    if config.queue is not None:
        devices.append(QueueSupervisor(config.queue, journal, _to_evaluators(current)))
    if config.cameras is not None:
        devices.append(CameraDevice(config.cameras, journal))
    return devices


def _to_evaluators(current: Callable[[], Sequence[Device]]) -> Callable[[dict[str, Any]], None]:
    def queue_event(body: dict[str, Any]) -> None:
        """A queue message journaled: the invitation rules of its window's evaluator bus
        decide (FN invites, ST closes the invitation still open there)."""
        window = body.get("window")
        for device in current():
            if (
                isinstance(device, EvaluatorSupervisor)
                and window is not None
                and device.handles(window)
            ):
                device.on_queue_event(body)
                return

    return queue_event
