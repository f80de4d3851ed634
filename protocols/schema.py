"""JSON Schema of every wire message, for third-party implementers (pure: returns dicts).

The strict contract (protocols.strict) shows in the schemas: integer bounds as minimum/maximum,
text as a pattern without control characters and a maxLength, times as date-time. What a
schema cannot say — strict typing ("4" is not 4), the 1970–2199 window of times, the depth of
free objects — is in protocols/README.md.
"""

from __future__ import annotations

from typing import Any

from protocols.commands import CommandResult
from protocols.envelope import Ack, EventBatch, GatewayState
from protocols.events import KINDS
from protocols.evidence import EvidenceHeader, EvidenceReceipt


def message_schemas() -> dict[str, dict[str, Any]]:
    schemas = {
        "event-batch": EventBatch.model_json_schema(),
        "ack": Ack.model_json_schema(),
        "gateway-state": GatewayState.model_json_schema(),
        "command-result": CommandResult.model_json_schema(),
        "evidence-header": EvidenceHeader.model_json_schema(),
        "evidence-receipt": EvidenceReceipt.model_json_schema(),
    }
    for kind, model in sorted(KINDS.items()):
        schemas[f"body.{kind}"] = model.model_json_schema()
    return schemas
