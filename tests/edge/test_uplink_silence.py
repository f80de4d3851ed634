"""A gateway whose events the broker accepts and nobody acknowledges says so, once per
connection: on MQTT 3.1.1 a broker that drops them (its ACL, a tier bridge that does not carry
the hall) answers with a normal PUBACK, so the gateway is the one place that can tell."""

from __future__ import annotations

from pathlib import Path

from tests.support import procs
from tests.support.broker import Broker

SILENCE = "nothing acknowledged since connecting"


def test_a_gateway_heard_by_no_central_names_the_likely_drops(
    tmp_path: Path, broker: Broker
) -> None:
    config = procs.edge_config(
        tmp_path, broker.port, generator={"enabled": True, "rate": 0, "total": 20}
    )
    gateway = procs.edge(config, tmp_path / "edge.log")
    try:
        # the resend after ack_timeout_s (3 s) comes with the explanation, then the second
        # resend without it
        gateway.wait_for_log("no acknowledgement heard", timeout=60)
        procs.wait_until(
            lambda: gateway.log.read_text().count("no acknowledgement heard") >= 2,
            60,
            "a second resend",
        )
    finally:
        gateway.stop()
    log = gateway.log.read_text()
    assert log.count(SILENCE) == 1, log
    assert "tier bridge that does not carry hall H1" in log
