"""The MQTT topic tree, version 1.

    hw/v1/{hall}/{gateway}/events   gateway → central   EventBatch, QoS 1
    hw/v1/{hall}/{gateway}/live     gateway → central   EventBatch of the live lane, QoS 1
                                    (optional, ``uplink.live_channel``: read before the
                                    backlog on the province cluster)
    hw/v1/{hall}/{gateway}/state    gateway → central   GatewayState, QoS 1, retained (+ Last Will)
    hw/v1/{hall}/{gateway}/ack      central → gateway   Ack, QoS 1
    hw/v1/{hall}/{gateway}/cmd      central → gateway   Command, QoS 1
    hw/v1/{hall}/{gateway}/result   gateway → central   CommandResult, QoS 1
    hw/v1/{hall}/{gateway}/evidence gateway → central   evidence file upload, QoS 1
    hw/v1/{hall}/{gateway}/receipt  central → gateway   EvidenceReceipt, QoS 1
                                    (both in protocols/evidence.py)

Hall and gateway ids are restricted to ``[A-Za-z0-9_-]``: RabbitMQ maps ``/`` to ``.`` and NATS
rejects ``.`` in MQTT topics, so anything richer would not survive every broker we may sit on
(docs/field-notes.md#province-brokers).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

ROOT = "hw"
VERSION_LEVEL = "v1"
ID_PATTERN = r"[A-Za-z0-9_-]{1,64}"
_ID = re.compile(rf"^{ID_PATTERN}$")


class Channel(StrEnum):
    EVENTS = "events"
    LIVE = "live"  # the live lane's batches: the same envelope, read ahead of a backlog
    STATE = "state"
    ACK = "ack"
    CMD = "cmd"
    RESULT = "result"
    EVIDENCE = "evidence"
    RECEIPT = "receipt"


EVENT_CHANNELS = frozenset({Channel.EVENTS, Channel.LIVE})  # both carry an EventBatch


class TopicError(ValueError):
    """A topic that is not part of the tree (wrong root, version, id syntax or channel)."""


def check_id(value: str, what: str = "id") -> str:
    if not _ID.match(value):
        raise TopicError(f"{what} {value!r} must be 1–64 characters of [A-Za-z0-9_-]")
    return value


def topic(hall: str, gateway: str, channel: Channel) -> str:
    hall, gateway = check_id(hall, "hall"), check_id(gateway, "gateway")
    return f"{ROOT}/{VERSION_LEVEL}/{hall}/{gateway}/{channel}"


def subscription(channel: Channel, hall: str = "+", gateway: str = "+") -> str:
    """A filter over the tree; ``+`` matches every hall or gateway."""
    return f"{ROOT}/{VERSION_LEVEL}/{hall}/{gateway}/{channel}"


def shared(group: str, topic_filter: str) -> str:
    """A shared subscription: the broker splits the stream between the group's members."""
    return f"$share/{check_id(group, 'group')}/{topic_filter}"


@dataclass(frozen=True, slots=True)
class TopicAddress:
    hall: str
    gateway: str
    channel: Channel


def parse(topic_name: str) -> TopicAddress:
    parts = topic_name.split("/")
    if len(parts) != 5 or parts[0] != ROOT:
        raise TopicError(f"topic {topic_name!r} is not under {ROOT}/")
    if parts[1] != VERSION_LEVEL:
        raise TopicError(f"topic {topic_name!r} has unsupported version {parts[1]!r}")
    hall, gateway, channel = parts[2], parts[3], parts[4]
    check_id(hall, "hall")
    check_id(gateway, "gateway")
    try:
        return TopicAddress(hall, gateway, Channel(channel))
    except ValueError:
        raise TopicError(f"topic {topic_name!r} has unknown channel {channel!r}") from None
