"""The provisioning bundle central hands to a technician for one gateway. Version 1.

A bundle is a ``.tar.gz`` (or a directory) of flat files::

    manifest.json          BundleManifest: who, where, and the SHA-256 of every other file
    ca.crt                 the CA that signs the broker's and every gateway's certificate
    gateway.crt            this gateway's client certificate, CN = gateway_username(hall, gw)
    gateway.key            its private key (the only secret; 0600 wherever it lands)
    command-signing.pub    central's Ed25519 public key for remote commands (PEM)

The broker takes the certificate's CN as the MQTT username (``use_identity_as_username``).
Hall and gateway ids never contain ``.`` (``protocols.topics.ID_PATTERN``), so the name below
splits back unambiguously and cannot collide with central's or a bridge's name.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from protocols.topics import ID_PATTERN, check_id

MANIFEST = "manifest.json"
CA_CERT = "ca.crt"
GATEWAY_CERT = "gateway.crt"
GATEWAY_KEY = "gateway.key"
COMMAND_KEY = "command-signing.pub"
SECRET_FILES = frozenset({GATEWAY_KEY})
BUNDLE_FILES = frozenset({CA_CERT, GATEWAY_CERT, GATEWAY_KEY, COMMAND_KEY})
# Certificates and keys are a few hundred bytes; anything near this is not ours.
MAX_FILE_BYTES = 64 * 1024
MAX_MANIFEST_BYTES = 256 * 1024

GATEWAY_PREFIX = "gw"
BROKER_SCHEMES = {"mqtts": 8883, "mqtt": 1883}
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


def gateway_username(hall: str, gateway: str) -> str:
    """The broker username (= certificate CN = forced client id) of one gateway."""
    return f"{GATEWAY_PREFIX}.{check_id(hall, 'hall')}.{check_id(gateway, 'gateway')}"


def parse_broker_url(url: str) -> tuple[str, str, int]:
    """``mqtts://host:port`` → (scheme, host, port); the port defaults per scheme."""
    parts = urlsplit(url)
    if parts.scheme not in BROKER_SCHEMES:
        raise ValueError(f"broker url {url!r} must start with mqtts:// (or mqtt:// for dev)")
    if not parts.hostname or parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ValueError(f"broker url {url!r} must be scheme://host[:port] and nothing else")
    if parts.username or parts.password:
        raise ValueError("broker url must not carry credentials; the certificate is the login")
    try:
        port = parts.port or BROKER_SCHEMES[parts.scheme]
    except ValueError as exc:
        raise ValueError(f"broker url {url!r}: {exc}") from None
    return parts.scheme, parts.hostname, port


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class BundleFile(_Model):
    sha256: str
    mode: Literal[0o600, 0o644]

    @field_validator("sha256")
    @classmethod
    def _hex(cls, value: str) -> str:
        if not _SHA256.match(value):
            raise ValueError("sha256 must be 64 lower-case hex digits")
        return value


class BundleManifest(_Model):
    v: Literal[1] = 1
    hall: str = Field(pattern=f"^{ID_PATTERN}$")
    gateway: str = Field(pattern=f"^{ID_PATTERN}$")
    username: str
    broker_url: str
    created_utc: datetime
    cert_serial: str = Field(pattern=r"^[0-9a-f]{1,40}$", description="hex, as in the CRL")
    cert_not_after: datetime
    files: dict[str, BundleFile]
    config: dict[str, Any] = Field(default_factory=dict, description="extra gateway settings")

    @field_validator("created_utc", "cert_not_after")
    @classmethod
    def _aware(cls, value: datetime) -> datetime:
        if value.tzinfo is None:
            raise ValueError("times must carry a timezone (use Z)")
        return value.astimezone(UTC)

    @field_validator("broker_url")
    @classmethod
    def _url(cls, value: str) -> str:
        parse_broker_url(value)
        return value

    @model_validator(mode="after")
    def _consistent(self) -> BundleManifest:
        if self.username != gateway_username(self.hall, self.gateway):
            raise ValueError("username does not match hall and gateway")
        if set(self.files) != BUNDLE_FILES:
            raise ValueError(f"files must be exactly {sorted(BUNDLE_FILES)}")
        for name, entry in self.files.items():
            want = 0o600 if name in SECRET_FILES else 0o644
            if entry.mode != want:
                raise ValueError(f"{name} must have mode {want:o}")
        return self
