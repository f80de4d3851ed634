"""Signing remote commands for gateways (replay, re-read devices, new configuration).

Central holds one Ed25519 signing key; its public half goes into every provisioning bundle and
the gateway refuses anything it did not sign (``edge.commands.CommandVerifier``). The key file
is PKCS#8 PEM, 0600. ``version`` must grow strictly per gateway: the caller (the registry)
owns that counter, because only it knows what was already sent.
"""

from __future__ import annotations

import base64
import uuid
from collections.abc import Mapping
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from hallkit.atomicfile import write_private, write_public
from hallkit.clock import utc_now
from protocols.commands import MAX_COMMAND_TTL, Command, CommandName, canonical_bytes

# Long enough for a gateway that is briefly offline to pick the command up from its
# persistent session, short enough that a captured command soon becomes useless.
DEFAULT_TTL = timedelta(hours=24)


def generate_signing_key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


def write_signing_key(path: Path, key: Ed25519PrivateKey) -> None:
    write_private(
        path,
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
    )


def load_signing_key(path: Path) -> Ed25519PrivateKey:
    key = serialization.load_pem_private_key(path.read_bytes(), None)
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError(f"{path} is not an Ed25519 private key")
    return key


def load_or_create_signing_key(path: Path) -> Ed25519PrivateKey:
    if path.exists():
        return load_signing_key(path)
    key = generate_signing_key()
    write_signing_key(path, key)
    return key


def public_key_pem(key: Ed25519PrivateKey | Ed25519PublicKey) -> bytes:
    """What goes into the bundle as ``command-signing.pub``."""
    public = key.public_key() if isinstance(key, Ed25519PrivateKey) else key
    return public.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def write_public_key(path: Path, key: Ed25519PrivateKey | Ed25519PublicKey) -> None:
    write_public(path, public_key_pem(key))


class CommandSigner:
    def __init__(self, key: Ed25519PrivateKey) -> None:
        self._key = key

    @classmethod
    def from_file(cls, path: Path) -> CommandSigner:
        return cls(load_signing_key(path))

    @property
    def public_key(self) -> Ed25519PublicKey:
        return self._key.public_key()

    def sign(self, command: Command) -> Command:
        """The same command with its signature set (any previous signature is replaced)."""
        unsigned = command.model_copy(update={"signature": ""})
        signature = self._key.sign(canonical_bytes(unsigned))
        return unsigned.model_copy(update={"signature": base64.b64encode(signature).decode()})

    def issue(
        self,
        hall: str,
        gateway: str,
        name: CommandName,
        args: Mapping[str, Any],
        version: int,
        ttl: timedelta = DEFAULT_TTL,
        now: datetime | None = None,
    ) -> Command:
        """Build, validate and sign a new command; publish ``encode(command)`` QoS 1 on cmd."""
        if ttl > MAX_COMMAND_TTL:
            raise ValueError(f"ttl {ttl} is longer than the protocol allows ({MAX_COMMAND_TTL})")
        issued = now or utc_now()
        command = Command(
            id=str(uuid.uuid4()),
            hall=hall,
            gateway=gateway,
            version=version,
            issued_at=issued,
            expires_at=issued + ttl,
            name=name,
            args=dict(args),
        )
        return self.sign(command)
