"""The wire contract: topics, envelopes, schema export."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from pydantic import ValidationError

from protocols import topics
from protocols.envelope import EventBatch, EventRecord, encode_batch
from protocols.schema import message_schemas

BOOT = "0123456789abcdef0123456789abcdef"


def test_topic_round_trip_and_rejects() -> None:
    name = topics.topic("JQ-ZWFW", "jq_gw01", topics.Channel.EVENTS)
    assert name == "hw/v1/JQ-ZWFW/jq_gw01/events"
    assert topics.parse(name) == topics.TopicAddress("JQ-ZWFW", "jq_gw01", topics.Channel.EVENTS)
    for bad in (
        "hw/v2/a/b/events",
        "hw/v1/a.b/c/events",
        "hw/v1/a/b/nope",
        "x/v1/a/b/events",
        "hw/v1/a/b/events/extra",
        "hw/v1/+/b/events",
    ):
        with pytest.raises(topics.TopicError):
            topics.parse(bad)
    assert (
        topics.shared("central", topics.subscription(topics.Channel.EVENTS))
        == "$share/central/hw/v1/+/+/events"
    )


def _event(seq: int) -> str:
    return EventRecord.model_validate(
        {
            "seq": seq,
            "utc": "2026-11-21T01:00:00Z",
            "mono_ns": 1,
            "boot": BOOT,
            "synced": True,
            "kind": "gen.sample",
            "body": {"n": seq, "run": "r"},
        }
    ).model_dump_json()


def test_encode_batch_is_a_valid_envelope_without_reserialising() -> None:
    payload = encode_batch("H1", "gw1", BOOT, [_event(5), _event(6)], lost_from=2)
    batch = EventBatch.model_validate_json(payload)
    assert (batch.first_seq, batch.last_seq, batch.lost_from) == (5, 6, 2)
    assert json.loads(payload)["events"][1]["body"] == {"n": 6, "run": "r"}


@pytest.mark.parametrize(
    "mutate",
    [
        lambda d: d["events"].reverse(),
        lambda d: d.update(v=2),
        lambda d: d.update(lost_from=9),
        lambda d: d["events"][0].update(utc="2026-11-21T01:00:00"),  # naive time
        lambda d: d["events"][0].update(kind="Bad Kind"),
        lambda d: d["events"][0].update(seq=0),
        lambda d: d.update(extra=1),
        lambda d: d.update(events=[]),
    ],
)
def test_envelope_rejects(mutate: Callable[[dict[str, Any]], object]) -> None:
    doc = json.loads(encode_batch("H1", "gw1", BOOT, [_event(5), _event(6)]))
    mutate(doc)
    with pytest.raises(ValidationError):
        EventBatch.model_validate(doc)


def test_schema_export_covers_every_message_and_kind() -> None:
    schemas = message_schemas()
    assert {"event-batch", "ack", "gateway-state", "body.gen.sample"} <= set(schemas)
    assert schemas["event-batch"]["properties"]["events"]["maxItems"] == 1000
