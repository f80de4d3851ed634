"""JSON Schema of every wire message, for third-party implementers (pure: returns dicts)."""

from __future__ import annotations

from typing import Any

from protocols.envelope import Ack, EventBatch, GatewayState
from protocols.events import KINDS


def message_schemas() -> dict[str, dict[str, Any]]:
    schemas = {
        "event-batch": EventBatch.model_json_schema(),
        "ack": Ack.model_json_schema(),
        "gateway-state": GatewayState.model_json_schema(),
    }
    for kind, model in sorted(KINDS.items()):
        schemas[f"body.{kind}"] = model.model_json_schema()
    return schemas
