"""The case feed over MQTT, for approval systems that prefer a broker to HTTP.

    hw/v1/_feeds/cases                    approval system → central   CaseBatch, QoS 1
    hw/v1/_feeds/case-results/{client}    central → approval system   the batch's result, QoS 1

Both are outside the gateway tree (``hw/v1/{hall}/{gateway}/{channel}`` has five levels, these
four), and every level is ``[A-Za-z0-9_-]`` so they survive RabbitMQ and NATS too. The payload is
the same JSON as ``POST /api/v1/cases`` plus ``reply_to`` and an optional ``batch_id`` echoed in
the result. ``reply_to`` must lie under the results prefix: central never publishes where a
payload tells it to outside that subtree (a reply to ``…/cmd`` would be a command to a gateway).

This is its own broker client (the shared kit's paho wrapper, ``hallkit/mqtt.py``) rather than
another subscription on the gateway consumer: the feed has a different sender, a different
acknowledgement (a reply message, not an ``ack`` topic) and must not share the gateways'
back-pressure slots. The aggregator processes share it through ``$share/{group}/…``; a message
is acknowledged to the broker only after its rows are committed. A sender that gets no result
should send the batch again: storing is idempotent.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import Callable
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from central.cases.masking import ApplicantMasker
from central.cases.store import MAX_BATCH, Outcome, RowResult, Source, feed
from central.config import BrokerConfig
from hallkit.clock import utc_now
from hallkit.mqtt import Acks, ClientOptions, Connection, Message, MqttClient, ReasonCode
from protocols import topics
from protocols.envelope import MAX_PAYLOAD_BYTES
from protocols.transport import BrokerEndpoint

log = logging.getLogger(__name__)

FEED_TOPIC = f"{topics.ROOT}/{topics.VERSION_LEVEL}/_feeds/cases"
RESULTS_PREFIX = f"{topics.ROOT}/{topics.VERSION_LEVEL}/_feeds/case-results/"
_REPLY = re.compile(rf"^{re.escape(RESULTS_PREFIX)}{topics.ID_PATTERN}$")
# The broker's max_packet_size (deploy/mosquitto) admits 1 MiB payloads: about 2,000 cases with
# applicant data. A larger batch must be split (or sent to POST /api/v1/cases).
MAX_PAYLOAD = MAX_PAYLOAD_BYTES
_BATCH_ID = re.compile(r"^[\x21-\x7e]{1,64}$")


def results_topic(client: str) -> str:
    return RESULTS_PREFIX + topics.check_id(client, "client")


def summary(results: list[RowResult]) -> dict[str, int]:
    counts = {o.value: 0 for o in Outcome}
    for r in results:
        counts[r.outcome.value] += 1
    return counts


def result_doc(results: list[RowResult]) -> dict[str, Any]:
    """The per-batch result, as the API answers it."""
    return {
        "received": len(results),
        **summary(results),
        "results": [
            {
                "index": r.index,
                "case_no": r.case_no,
                "outcome": r.outcome.value,
                "revision": r.revision,
                "errors": list(r.errors),
            }
            for r in results
        ],
    }


async def handle(
    engine: AsyncEngine, masker: ApplicantMasker, payload: bytes, now: datetime | None = None
) -> tuple[str | None, dict[str, Any]]:
    """Store one feed message; returns (reply topic or None, result document)."""
    now = now or utc_now()
    if len(payload) > MAX_PAYLOAD:
        return None, {"error": f"消息过大 / payload over {MAX_PAYLOAD} bytes"}
    try:
        doc = json.loads(payload)
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None, {"error": "不是有效的 JSON / payload is not JSON"}
    if not isinstance(doc, dict):
        return None, {"error": "顶层应为对象 / the payload must be a JSON object"}
    reply = doc.get("reply_to")
    reply_to = reply if isinstance(reply, str) and _REPLY.match(reply) else None
    batch = doc.get("batch_id")
    out: dict[str, Any] = {
        "batch_id": batch if isinstance(batch, str) and _BATCH_ID.match(batch) else None
    }
    rows = doc.get("cases")
    if reply is not None and reply_to is None:
        out["error"] = f"reply_to 必须位于 {RESULTS_PREFIX} 之下 / reply_to must be under it"
        return None, out
    if not isinstance(rows, list):
        out["error"] = "缺少 cases 数组 / 'cases' must be an array of cases"
        return reply_to, out
    if len(rows) > MAX_BATCH:
        out["error"] = f"每批最多 {MAX_BATCH} 条 / at most {MAX_BATCH} cases per batch"
        return reply_to, out
    results = await feed(engine, rows, masker, source=Source.MQTT, now=now)
    out.update(result_doc(results))
    return reply_to, out


def encode_reply(out: dict[str, Any]) -> bytes:
    """The result as JSON within the broker's packet limit: when every row's result does not
    fit, only rejected rows are listed, and as many of them as fit (``truncated``)."""
    data = json.dumps(out, ensure_ascii=False).encode()
    if len(data) <= MAX_PAYLOAD or "results" not in out:
        return data
    rejected = [r for r in out["results"] if r["outcome"] == Outcome.REJECTED.value]
    keep = len(rejected)
    while True:
        data = json.dumps(
            {**out, "results": rejected[:keep], "truncated": True}, ensure_ascii=False
        ).encode()
        if len(data) <= MAX_PAYLOAD or keep == 0:
            return data
        keep = keep * MAX_PAYLOAD // len(data) * 9 // 10


class CaseFeed:
    """One paho client in the shared-subscription group, storing batches as they come."""

    def __init__(
        self,
        engine: AsyncEngine,
        masker: ApplicantMasker,
        broker: BrokerConfig,
        *,
        on_result: Callable[[dict[str, Any]], None] | None = None,
    ) -> None:
        self.engine = engine
        self.masker = masker
        self.broker = broker
        self.on_result = on_result
        self.connected = asyncio.Event()  # connected and subscribed
        self._client: MqttClient | None = None

    async def run(self) -> None:
        """Connect and store batches until cancelled."""
        # Over TLS the broker makes the certificate's name the client id, so this client has a
        # certificate of its own (broker.feed_tls; over TLS without one it is not started), or
        # it would keep evicting the consumer.
        broker = self.broker
        endpoint = BrokerEndpoint(
            host=broker.host, port=broker.port, keepalive_s=broker.keepalive_s, tls=broker.feed_tls
        )
        client = MqttClient(
            endpoint,
            ClientOptions(
                client_id=f"{broker.group}-{broker.instance}-cases",
                clean_session=True,
                subscriptions=((topics.shared(broker.group, FEED_TOPIC), 1),),
                acks=Acks.BY_CALLER,  # acknowledged after the commit, not on arrival
                reconnect_delay=(1, 15),
                logger=log.getChild("paho"),
            ),
            on_connection=self._on_connection,
        )
        self._client = client
        await client.start()
        try:
            async for message in client.messages():
                await self._process(message)
        finally:
            client.stop()
            self._client = None

    async def _process(self, message: Message) -> None:
        assert self._client is not None
        try:
            reply_to, out = await handle(self.engine, self.masker, message.payload)
        except Exception:
            # not acknowledged: with the connection gone the sender resends, as for no reply
            log.exception("case feed: a batch could not be stored")
            return
        if "error" in out:
            log.warning("case feed: batch %s refused: %s", out.get("batch_id"), out["error"])
        else:
            log.info(
                "case feed: batch %s: %s",
                out.get("batch_id"),
                {k: out[k] for k in ("created", "revised", "unchanged", "rejected")},
            )
        if reply_to is not None:
            self._client.publish(reply_to, encode_reply(out), qos=1)
        self._client.ack(message)
        if self.on_result is not None:
            self.on_result(out)

    def _on_connection(self, change: Connection) -> None:
        if change.refused:
            log.error("case feed: broker refused the connection: %s", change.reason)
        elif change.up:
            if change.subscribed is not None:
                change.subscribed.add_done_callback(self._on_subscribed)
        else:
            log.warning("case feed: disconnected from broker (%s)", change.reason)
            self.connected.clear()

    def _on_subscribed(self, suback: asyncio.Future[list[ReasonCode]]) -> None:
        if suback.cancelled() or suback.exception() is not None:
            return  # the client stopped or the connection went first
        reasons = suback.result()
        if any(r.is_failure for r in reasons):
            log.error("case feed: subscription to %s refused: %s", FEED_TOPIC, reasons)
            return
        self.connected.set()
