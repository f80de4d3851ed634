"""Writing a gateway's provisioning bundle (the format is ``protocols.provisioning``).

The bundle carries the gateway's private key, so it is written 0600 and should travel the way
a password would (a technician's encrypted laptop or USB key, not e-mail). The manifest lists
the SHA-256 of every file, so the gateway refuses a bundle that was truncated or edited.
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from central.gateways.command_signing import public_key_pem
from central.security.ca import GatewayIdentity, cert_pem
from hallkit.atomicfile import write_atomic
from hallkit.clock import utc_now
from protocols.provisioning import (
    CA_CERT,
    COMMAND_KEY,
    GATEWAY_CERT,
    GATEWAY_KEY,
    MANIFEST,
    SECRET_FILES,
    BundleFile,
    BundleManifest,
)


def bundle_files(
    identity: GatewayIdentity,
    broker_url: str,
    ca_cert: x509.Certificate,
    command_public_key: Ed25519PublicKey | Ed25519PrivateKey | bytes,
    extra_config: Mapping[str, Any] | None = None,
) -> dict[str, bytes]:
    """Every file of the bundle by name, manifest included."""
    command_pem = (
        command_public_key
        if isinstance(command_public_key, bytes)
        else public_key_pem(command_public_key)
    )
    files = {
        CA_CERT: cert_pem(ca_cert),
        GATEWAY_CERT: identity.cert_pem(),
        GATEWAY_KEY: identity.key_pem(),
        COMMAND_KEY: command_pem,
    }
    manifest = BundleManifest(
        hall=identity.hall,
        gateway=identity.gateway,
        username=identity.username,
        broker_url=broker_url,
        created_utc=utc_now(),
        cert_serial=f"{identity.serial:x}",
        cert_not_after=identity.cert.not_valid_after_utc,
        files={
            name: BundleFile(
                sha256=hashlib.sha256(data).hexdigest(),
                mode=0o600 if name in SECRET_FILES else 0o644,
            )
            for name, data in files.items()
        },
        config=dict(extra_config or {}),
    )
    files[MANIFEST] = json.dumps(manifest.model_dump(mode="json"), indent=2).encode() + b"\n"
    return files


def write_bundle(
    path: Path,
    identity: GatewayIdentity,
    broker_url: str,
    ca_cert: x509.Certificate,
    command_public_key: Ed25519PublicKey | Ed25519PrivateKey | bytes,
    extra_config: Mapping[str, Any] | None = None,
) -> Path:
    """A ``.tar.gz`` if ``path`` ends so, otherwise a directory; returns ``path``.

    ``extra_config`` lands in the manifest's ``config`` for the gateway's own settings.
    """
    files = bundle_files(identity, broker_url, ca_cert, command_public_key, extra_config)
    if path.name.endswith(".tar.gz"):
        buffer = io.BytesIO()
        mtime = int(utc_now().timestamp())
        with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
            for name in sorted(files):
                info = tarfile.TarInfo(name)
                info.size = len(files[name])
                info.mode = 0o600 if name in SECRET_FILES else 0o644
                info.mtime = mtime
                tar.addfile(info, io.BytesIO(files[name]))
        write_atomic(path, buffer.getvalue(), 0o600)
    else:
        path.mkdir(parents=True, exist_ok=True)
        path.chmod(0o700)
        for name, data in files.items():
            write_atomic(path / name, data, 0o600 if name in SECRET_FILES else 0o644)
    return path
