"""Event kinds and their bodies. Central validates a known kind's body against its model;
an unknown kind of a valid batch is kept in quarantine, never silently stored as an event."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field, ValidationError

from protocols import camera, devices
from protocols.body import Body
from protocols.strict import Count, Name, Seq, Text, safe


class GeneratorSample(Body):
    """gen.sample: the built-in test generator's event (demo, tests, benchmarks)."""

    n: Count = Field(description="generator counter within its run")
    run: Name = Field(description="generator run id")
    pad: Annotated[str, safe(4096)] = ""


class JournalLoss(Body):
    """gateway.journal_loss: the journal had to discard unacknowledged events (disk bound)."""

    first_seq: Seq
    last_seq: Seq
    reason: Text


class GatewayBoot(Body):
    """gateway.boot: the gateway service started."""

    software: Name
    config_version: Name = ""
    previous_head_seq: Count


class GatewaySelfTest(Body):
    """gateway.selftest: a technician ran ``hallwatch-edge selftest`` (commissioning record);
    journaled last, so central's acknowledgement of it proves the whole uplink path."""

    software: Name
    passed: bool = Field(description="every local check passed")
    failed: list[Text] = Field(
        default_factory=list, max_length=64, description="names of the checks that failed"
    )


KINDS: dict[str, type[Body]] = {
    "gen.sample": GeneratorSample,
    "gateway.journal_loss": JournalLoss,
    "gateway.boot": GatewayBoot,
    "gateway.selftest": GatewaySelfTest,
    **devices.KINDS,
    **camera.KINDS,
}


class UnknownKind(ValueError):
    pass


def register(kind: str, model: type[Body]) -> None:
    """Add a kind (device bridges register theirs in protocols.devices)."""
    existing = KINDS.get(kind)
    if existing is not None and existing is not model:
        raise ValueError(f"kind {kind!r} is already registered to {existing.__name__}")
    KINDS[kind] = model


def validate_body(kind: str, body: dict[str, Any]) -> Body:
    """Raise UnknownKind or pydantic.ValidationError when the body does not fit its kind."""
    model = KINDS.get(kind)
    if model is None:
        raise UnknownKind(f"unknown event kind {kind!r}")
    return model.model_validate(body)


__all__ = ["KINDS", "Body", "UnknownKind", "ValidationError", "register", "validate_body"]
