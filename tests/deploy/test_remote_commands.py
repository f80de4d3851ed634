"""Signed commands through the production broker: central → cmd → gateway → result → central."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from central.gateways.command_signing import CommandSigner, generate_signing_key
from edge.commands import CommandRefused, CommandVerifier
from protocols.commands import CommandResult
from protocols.envelope import encode
from protocols.topics import Channel, topic
from tests.deploy.support import Peer, TlsBroker, peers, running, wait_until

A = ("hallA", "gw-1")


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[TlsBroker]:
    made = TlsBroker.create(tmp_path / "broker")
    with running(made):
        yield made


def test_gateway_answers_each_command_and_refuses_forgeries_and_replays(
    broker: TlsBroker, tmp_path: Path
) -> None:
    signer = CommandSigner(generate_signing_key())
    verifier = CommandVerifier(signer.public_key, *A, tmp_path / "gateway" / "commands.json")
    gw_tls = broker.identity("A", broker.store.issue_gateway(*A))
    central_tls = broker.identity("central", broker.store.issue_central("main"))
    broker.sync()
    with peers(Peer(broker.port, central_tls), Peer(broker.port, gw_tls)) as (central, gw):
        assert central.connect() and gw.connect()
        central.subscribe(topic(*A, Channel.RESULT))
        gw.subscribe(topic(*A, Channel.CMD))

        def round_trip(payload: bytes) -> CommandResult:
            """Central publishes; the gateway verifies what arrived and answers."""
            seen = len(gw.received())
            central.publish(topic(*A, Channel.CMD), payload)
            wait_until(lambda: len(gw.received()) > seen, what="the command to arrive")
            arrived = gw.received()[seen]
            try:
                outcome = verifier.result(verifier.verify(arrived))
            except CommandRefused as refusal:
                outcome = verifier.result(refusal)
            gw.publish(topic(*A, Channel.RESULT), encode(outcome))
            wait_until(lambda: encode(outcome) in central.received(), what="the result")
            return CommandResult.model_validate_json(encode(outcome))

        valid = encode(signer.issue(*A, "replay_from", {"seq": 17}, version=1))
        assert round_trip(valid).reason == "accepted"
        assert round_trip(valid).reason == "replayed"
        forger = CommandSigner(generate_signing_key())
        forged = encode(forger.issue(*A, "apply_config", {"config_version": 9, "config": {}}, 2))
        assert round_trip(forged).reason == "bad_signature"
        later = signer.issue(*A, "reread_devices", {"devices": ["evaluator-3"]}, version=2)
        result = round_trip(encode(later))
        assert (result.accepted, result.id, result.version) == (True, later.id, 2)
