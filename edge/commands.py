"""Verifying remote commands before the gateway acts on them.

A command is accepted only if it parses as a v1 ``Command``, is addressed to this hall and
gateway, carries central's Ed25519 signature over ``canonical_bytes``, has not expired by the
gateway's clock, and has a ``version`` above the last one accepted. That last version is on
disk (temp file, fsync, rename, fsync of the directory) *before* ``verify`` returns, so a
command is never acted on twice, not even after a crash or a restart.

The gateway's clock may be wrong before NTP (no real-time clock): behind, a command simply
lives longer; ahead, it is refused as expired and the result says so, with both times.
"""

from __future__ import annotations

import base64
import binascii
import json
import threading
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from pydantic import ValidationError

from hallkit.atomicfile import write_atomic
from hallkit.clock import utc_now
from protocols.commands import (
    ACCEPTED,
    MAX_COMMAND_BYTES,
    Command,
    CommandResult,
    RefusalReason,
    canonical_bytes,
)
from protocols.strict import clean_text
from protocols.topics import check_id


class CommandRefused(Exception):
    def __init__(self, reason: RefusalReason, detail: str, command: Command | None = None):
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail
        self.command = command


class CommandStateError(RuntimeError):
    """The replay memory on disk is unreadable or belongs to another gateway."""


def load_public_key(source: Path | bytes) -> Ed25519PublicKey:
    data = source.read_bytes() if isinstance(source, Path) else source
    key = serialization.load_pem_public_key(data)
    if not isinstance(key, Ed25519PublicKey):
        raise ValueError("command signing key must be an Ed25519 public key")
    return key


class CommandVerifier:
    def __init__(
        self,
        public_key: Ed25519PublicKey,
        hall: str,
        gateway: str,
        state_path: Path,
        *,
        version_floor: int = 0,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        """``version_floor``: a replacement gateway may start above what its predecessor saw."""
        self._key = public_key
        self.hall = check_id(hall, "hall")
        self.gateway = check_id(gateway, "gateway")
        self._state_path = state_path
        self._clock = clock
        self._lock = threading.Lock()
        self._last_version = max(version_floor, self._load())

    @property
    def last_version(self) -> int:
        return self._last_version

    def _load(self) -> int:
        try:
            raw = self._state_path.read_bytes()
        except FileNotFoundError:
            return 0
        try:
            state = json.loads(raw)
            version = int(state["last_version"])
            hall, gateway = state["hall"], state["gateway"]
        except (ValueError, KeyError, TypeError) as exc:
            # Failing closed: starting from 0 would reopen every unexpired command.
            raise CommandStateError(f"{self._state_path} is unreadable: {exc!r}") from None
        if (hall, gateway) != (self.hall, self.gateway):
            raise CommandStateError(
                f"{self._state_path} belongs to {hall}/{gateway}, not {self.hall}/{self.gateway}"
            )
        return version

    def _persist(self, command: Command) -> None:
        state = {
            "v": 1,
            "hall": self.hall,
            "gateway": self.gateway,
            "last_version": command.version,
            "last_id": command.id,
            "accepted_utc": self._clock().isoformat(),
        }
        write_atomic(self._state_path, json.dumps(state).encode(), 0o600)

    def verify(self, payload: bytes) -> Command:
        """The command, once it is safe to act on; raises ``CommandRefused`` otherwise."""
        if len(payload) > MAX_COMMAND_BYTES:
            raise CommandRefused(RefusalReason.MALFORMED, f"{len(payload)} bytes is too large")
        try:
            command = Command.model_validate_json(payload)
            signed = canonical_bytes(command)
        except (ValidationError, ValueError) as exc:
            raise CommandRefused(RefusalReason.MALFORMED, _short(exc)) from None
        if (command.hall, command.gateway) != (self.hall, self.gateway):
            raise CommandRefused(
                RefusalReason.WRONG_TARGET,
                f"addressed to {command.hall}/{command.gateway}",
                command,
            )
        try:
            signature = base64.b64decode(command.signature, validate=True)
            self._key.verify(signature, signed)
        except (InvalidSignature, binascii.Error, ValueError):
            raise CommandRefused(
                RefusalReason.BAD_SIGNATURE, "not signed by central's key", command
            ) from None
        now = self._clock()
        if now >= command.expires_at:
            raise CommandRefused(
                RefusalReason.EXPIRED,
                f"expired {command.expires_at.isoformat()}, gateway clock {now.isoformat()}",
                command,
            )
        with self._lock:
            if command.version <= self._last_version:
                raise CommandRefused(
                    RefusalReason.REPLAYED,
                    f"version {command.version} ≤ last accepted {self._last_version}",
                    command,
                )
            self._persist(command)
            self._last_version = command.version
        return command

    def result(self, outcome: Command | CommandRefused) -> CommandResult:
        """The answer to publish on hw/v1/{hall}/{gateway}/result."""
        command: Command | None
        if isinstance(outcome, Command):
            command, accepted, reason, detail = outcome, True, ACCEPTED, ""
        else:
            command, accepted = outcome.command, False
            reason, detail = str(outcome.reason), clean_text(outcome.detail, 500)
        return CommandResult(
            id=command.id if command else None,
            hall=self.hall,
            gateway=self.gateway,
            version=command.version if command else None,
            accepted=accepted,
            reason=reason,
            detail=detail,
            utc=self._clock(),
        )


def _short(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "payload"
        return f"{exc.error_count()} error(s); {where}: {first['msg']}"
    return str(exc)[:200]
