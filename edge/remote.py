"""Remote commands, the gateway's side: verify, execute, answer on ``result``.

Every payload on ``cmd`` gets an answer: refused (malformed, wrong target, bad signature,
expired, replayed — ``edge.commands.CommandVerifier`` decides, and records the version on disk
before anything runs) or accepted with a line saying what was done. A command that passes
verification but cannot be carried out (a configuration that does not validate, an unknown
device) is answered ``malformed``; its version is spent, central sends a corrected one.
Commands run one at a time, in arrival order.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Protocol

from edge.commands import CommandRefused, CommandVerifier
from protocols.commands import (
    ApplyConfigArgs,
    CalibrateCameraArgs,
    CaptureEvidenceArgs,
    Command,
    CommandResult,
    RefusalReason,
    ReplayFromArgs,
    RereadDevicesArgs,
)

log = logging.getLogger(__name__)


class CommandTarget(Protocol):
    """What a command acts on (``edge.app.Gateway``)."""

    def replay_from(self, seq: int) -> str: ...

    async def reread_devices(self, devices: list[str]) -> str: ...

    async def apply_config(self, version: int, config: dict[str, object]) -> str: ...

    async def calibrate_camera(self, window: int, camera: str | None) -> str: ...

    async def capture_evidence(
        self, window: int, clip_s: int, camera: str | None, request: str
    ) -> str: ...


class ExecutionRefused(ValueError):
    """The command is authentic but cannot be carried out as given."""


class RemoteCommands:
    def __init__(
        self,
        verifier: CommandVerifier,
        target: CommandTarget,
        answer: Callable[[CommandResult], object],
    ) -> None:
        self.verifier = verifier
        self.target = target
        self.answer = answer
        self.results: list[CommandResult] = []  # what was answered, for the status page/tests
        self._lock = asyncio.Lock()

    async def handle(self, payload: bytes) -> None:
        async with self._lock:
            result = await self._handle(payload)
        self.results.append(result)
        self.answer(result)

    async def _handle(self, payload: bytes) -> CommandResult:
        try:
            command = self.verifier.verify(payload)
        except CommandRefused as refusal:
            log.warning("command refused: %s", refusal)
            return self.verifier.result(refusal)
        log.info(
            "command %s v%d accepted: %s",
            command.name,
            command.version,
            command.args if command.name != "apply_config" else "(configuration)",
        )
        try:
            detail = await self._execute(command)
        except ExecutionRefused as exc:
            log.warning(
                "command %s v%d cannot be carried out: %s", command.name, command.version, exc
            )
            return self.verifier.result(
                CommandRefused(RefusalReason.MALFORMED, str(exc)[:500], command)
            )
        except Exception as exc:  # answer anyway: central must not wait for nothing
            log.exception("command %s v%d failed", command.name, command.version)
            return self.verifier.result(
                CommandRefused(RefusalReason.MALFORMED, f"failed: {exc!r}"[:500], command)
            )
        return self.verifier.result(command).model_copy(update={"detail": detail[:500]})

    async def _execute(self, command: Command) -> str:
        args = command.typed_args()
        if isinstance(args, ReplayFromArgs):
            return self.target.replay_from(args.seq)
        if isinstance(args, RereadDevicesArgs):
            return await self.target.reread_devices(list(args.devices))
        if isinstance(args, ApplyConfigArgs):
            return await self.target.apply_config(args.config_version, dict(args.config))
        if isinstance(args, CalibrateCameraArgs):
            return await self.target.calibrate_camera(args.window, args.camera)
        if isinstance(args, CaptureEvidenceArgs):
            return await self.target.capture_evidence(
                args.window, args.clip_s, args.camera, command.id
            )
        raise ExecutionRefused(f"no executor for {command.name}")  # pragma: no cover
