"""Remote commands, central → gateway, and the gateway's answer. Version 1.

    hw/v1/{hall}/{gateway}/cmd      central → gateway   Command, QoS 1
    hw/v1/{hall}/{gateway}/result   gateway → central   CommandResult, QoS 1

A command is signed by central (Ed25519) over ``canonical_bytes(command)``: every field except
the signature, in a deterministic JSON form behind a domain label, so that a signature over a
command can never be mistaken for a signature over anything else we sign. ``version`` grows
strictly per gateway; the gateway refuses any version it has already passed (a replay), and
``expires_at`` bounds how long a captured command stays usable if a gateway loses that memory.
This module only defines the shapes; signing lives in central, verification in edge.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from protocols.envelope import MAX_SEQ
from protocols.strict import UtcTime, WireModel, safe
from protocols.topics import ID_PATTERN

# The label is part of what is signed: version it together with the envelope.
SIGNING_DOMAIN = b"hallwatch/command/v1\n"
# An apply_config carries a whole gateway configuration; 64 KiB is tens of windows and devices
# with room to spare, and small enough to refuse before parsing.
MAX_COMMAND_BYTES = 64 * 1024
# A command sits in the gateway's persistent broker session while the hall is offline; a week
# covers a long holiday outage, and is the longest a captured command could be replayed to a
# gateway that lost its replay memory (a replaced SD card).
MAX_COMMAND_TTL = timedelta(days=7)
UUID_PATTERN = r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"
# Ed25519 signatures are 64 bytes: 88 characters of padded base64.
SIGNATURE_PATTERN = r"^[A-Za-z0-9+/]{86}==$"
_SIGNATURE = re.compile(SIGNATURE_PATTERN)
_ID = re.compile(f"^{ID_PATTERN}$")

CommandName = Literal[
    "replay_from", "reread_devices", "apply_config", "calibrate_camera", "capture_evidence"
]
# the longest clip a supervisor may ask for: the cameras keep a few seconds of frames
MAX_CLIP_S = 10


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ReplayFromArgs(_Model):
    """Publish the journal again from ``seq`` (central saw a gap or lost data)."""

    seq: int = Field(ge=1, le=MAX_SEQ)


class RereadDevicesArgs(_Model):
    """Re-open and re-identify devices; an empty list means every configured device."""

    devices: list[str] = Field(default_factory=list, max_length=256)

    @field_validator("devices")
    @classmethod
    def _ids(cls, value: list[str]) -> list[str]:
        for device in value:
            if not _ID.match(device):
                raise ValueError(f"device id {device!r} must match {ID_PATTERN}")
        return value


class ApplyConfigArgs(_Model):
    """Install configuration ``config_version`` (the gateway validates ``config`` itself)."""

    config_version: int = Field(ge=1, le=MAX_SEQ)
    config: dict[str, Any]


class CalibrateCameraArgs(_Model):
    """Take a window's empty seat and counter as they are now (nobody there, a person on site
    says so); ``camera`` limits it to one of the cameras watching the window."""

    window: int = Field(ge=1, le=99_999)
    camera: str | None = Field(default=None, pattern=f"^{ID_PATTERN}$")


class CaptureEvidenceArgs(_Model):
    """A supervisor's on-demand evidence (调取取证): window ``window``'s picture now, and the last
    ``clip_s`` seconds as a clip when above 0, uploaded into central's evidence vault; the
    answer names the files' SHA-256 (``snapshot=<sha256>``, ``clip=<sha256>``)."""

    window: int = Field(ge=1, le=99_999)
    clip_s: int = Field(default=0, ge=0, le=MAX_CLIP_S)
    camera: str | None = Field(default=None, pattern=f"^{ID_PATTERN}$")


ARGS_MODELS: dict[str, type[_Model]] = {
    "replay_from": ReplayFromArgs,
    "reread_devices": RereadDevicesArgs,
    "apply_config": ApplyConfigArgs,
    "calibrate_camera": CalibrateCameraArgs,
    "capture_evidence": CaptureEvidenceArgs,
}

TypedArgs = (
    ReplayFromArgs | RereadDevicesArgs | ApplyConfigArgs | CalibrateCameraArgs | CaptureEvidenceArgs
)


class Command(_Model):
    v: Literal[1] = 1
    id: str = Field(pattern=UUID_PATTERN, description="uuid4, lower case")
    hall: str = Field(pattern=f"^{ID_PATTERN}$")
    gateway: str = Field(pattern=f"^{ID_PATTERN}$")
    version: int = Field(ge=1, le=MAX_SEQ, description="strictly increasing per gateway")
    issued_at: datetime
    expires_at: datetime
    name: CommandName
    args: dict[str, Any] = Field(default_factory=dict)
    signature: str = Field(default="", description="base64 Ed25519 over canonical_bytes()")

    @field_validator("issued_at", "expires_at")
    @classmethod
    def _aware(cls, value: datetime) -> datetime:
        if value.tzinfo is None:
            raise ValueError("times must carry a timezone (use Z)")
        return value.astimezone(UTC)

    @field_validator("signature")
    @classmethod
    def _signature_shape(cls, value: str) -> str:
        if value and not _SIGNATURE.match(value):
            raise ValueError("signature must be 64 bytes of base64")
        return value

    @model_validator(mode="after")
    def _window_and_args(self) -> Command:
        if self.expires_at <= self.issued_at:
            raise ValueError("expires_at must be after issued_at")
        if self.expires_at - self.issued_at > MAX_COMMAND_TTL:
            raise ValueError(f"a command may live at most {MAX_COMMAND_TTL}")
        try:
            ARGS_MODELS[self.name].model_validate(self.args)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(map(str, error['loc']))}: {error['msg']}" for error in exc.errors()
            )
            raise ValueError(f"args for {self.name}: {problems}") from None
        return self

    def typed_args(self) -> TypedArgs:
        parsed = ARGS_MODELS[self.name].model_validate(self.args)
        assert isinstance(parsed, TypedArgs)
        return parsed


def _utc_text(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def canonical_bytes(command: Command) -> bytes:
    """What is signed: every field but ``signature``, as sorted compact JSON, UTF-8.

    Built from the parsed model, so two encodings of the same command (key order, spacing,
    ``+00:00`` or ``Z``) sign the same bytes. Raises ValueError for NaN or infinity in args.
    """
    body = command.model_dump(mode="json", exclude={"signature"})
    body["issued_at"] = _utc_text(command.issued_at)
    body["expires_at"] = _utc_text(command.expires_at)
    text = json.dumps(
        body, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )
    return SIGNING_DOMAIN + text.encode("utf-8")


class RefusalReason(StrEnum):
    MALFORMED = "malformed"  # not JSON, not a v1 Command, or too large
    WRONG_TARGET = "wrong_target"  # addressed to another hall or gateway
    BAD_SIGNATURE = "bad_signature"  # missing, forged, or signed by another key
    EXPIRED = "expired"  # past expires_at by the gateway's clock
    REPLAYED = "replayed"  # version not above the last accepted one


ACCEPTED = "accepted"


class CommandResult(WireModel):
    """gateway → central on hw/v1/{hall}/{gateway}/result.

    ``reason`` is ``accepted`` or a ``RefusalReason``; ``id`` and ``version`` are absent when
    the payload could not be read as a command at all.
    """

    v: Literal[1] = 1
    id: str | None = Field(default=None, pattern=UUID_PATTERN)
    hall: str = Field(pattern=f"^{ID_PATTERN}$")
    gateway: str = Field(pattern=f"^{ID_PATTERN}$")
    version: int | None = Field(default=None, ge=1, le=MAX_SEQ)
    accepted: bool
    reason: Annotated[str, safe(32)]
    detail: Annotated[str, safe(500)] = ""
    utc: UtcTime

    @model_validator(mode="after")
    def _consistent(self) -> CommandResult:
        if self.accepted != (self.reason == ACCEPTED):
            raise ValueError("accepted must go with reason 'accepted' and only with it")
        if not self.accepted and self.reason not in set(RefusalReason):
            raise ValueError(f"unknown refusal reason {self.reason!r}")
        return self
