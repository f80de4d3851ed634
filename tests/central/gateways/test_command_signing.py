"""central.gateways.command_signing: the signing key on disk and the signatures it makes."""

from __future__ import annotations

import base64
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.exceptions import InvalidSignature

from central.gateways.command_signing import (
    CommandSigner,
    generate_signing_key,
    load_or_create_signing_key,
    load_signing_key,
    public_key_pem,
    write_public_key,
)
from edge.commands import load_public_key
from protocols.commands import canonical_bytes

NOW = datetime(2026, 5, 6, 9, 0, tzinfo=UTC)


def test_key_file_is_private_and_stable(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "command-signing.key"
    key = load_or_create_signing_key(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert public_key_pem(load_or_create_signing_key(path)) == public_key_pem(key)
    assert public_key_pem(load_signing_key(path)) == public_key_pem(key)
    write_public_key(tmp_path / "pub.pem", key)
    assert stat.S_IMODE((tmp_path / "pub.pem").stat().st_mode) == 0o644


def test_signature_covers_the_canonical_bytes() -> None:
    signer = CommandSigner(generate_signing_key())
    command = signer.issue("hallA", "gw-1", "replay_from", {"seq": 5}, version=3, now=NOW)
    assert command.expires_at == NOW + timedelta(hours=24)
    signature = base64.b64decode(command.signature)
    public = load_public_key(public_key_pem(signer.public_key))
    public.verify(signature, canonical_bytes(command))
    altered = command.model_copy(update={"version": 4})
    with pytest.raises(InvalidSignature):
        public.verify(signature, canonical_bytes(altered))


def test_resigning_replaces_the_signature() -> None:
    first, second = CommandSigner(generate_signing_key()), CommandSigner(generate_signing_key())
    command = first.issue("hallA", "gw-1", "reread_devices", {}, version=1, now=NOW)
    moved = second.sign(command)
    load_public_key(public_key_pem(second.public_key)).verify(
        base64.b64decode(moved.signature), canonical_bytes(command)
    )
    assert moved.signature != command.signature


def test_issue_refuses_what_the_protocol_forbids() -> None:
    signer = CommandSigner(generate_signing_key())
    with pytest.raises(ValueError):
        signer.issue("hallA", "gw-1", "replay_from", {"seq": 1}, 1, ttl=timedelta(days=8))
    with pytest.raises(ValueError):
        signer.issue("hallA", "gw-1", "replay_from", {"seq": -1}, 1)
    with pytest.raises(ValueError):
        signer.issue("hall A", "gw-1", "replay_from", {"seq": 1}, 1)
