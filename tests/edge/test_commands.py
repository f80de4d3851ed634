"""edge.commands: what the gateway refuses, and that its replay memory outlives a restart."""

from __future__ import annotations

import json
import stat
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from central.gateways.command_signing import CommandSigner, generate_signing_key
from edge.commands import CommandRefused, CommandStateError, CommandVerifier
from protocols.commands import Command, RefusalReason
from protocols.envelope import encode

NOW = datetime(2026, 5, 6, 9, 0, tzinfo=UTC)
HALL, GATEWAY = "hallA", "gw-1"


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def signer() -> CommandSigner:
    return CommandSigner(generate_signing_key())


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def make_verifier(
    signer: CommandSigner, clock: Clock, tmp_path: Path
) -> Callable[..., CommandVerifier]:
    def make(**kwargs: object) -> CommandVerifier:
        return CommandVerifier(
            signer.public_key,
            HALL,
            GATEWAY,
            tmp_path / "state" / "commands.json",
            clock=clock,
            **kwargs,  # type: ignore[arg-type]
        )

    return make


def issue(signer: CommandSigner, version: int, **changes: object) -> Command:
    hall = str(changes.pop("hall", HALL))
    gateway = str(changes.pop("gateway", GATEWAY))
    return signer.issue(hall, gateway, "replay_from", {"seq": 40}, version, now=NOW)


def refused(verifier: CommandVerifier, payload: bytes) -> RefusalReason:
    with pytest.raises(CommandRefused) as caught:
        verifier.verify(payload)
    return caught.value.reason


def test_valid_command_is_accepted_once(
    signer: CommandSigner, make_verifier: Callable[..., CommandVerifier]
) -> None:
    verifier = make_verifier()
    command = issue(signer, 1)
    assert verifier.verify(encode(command)) == command
    assert verifier.last_version == 1
    result = verifier.result(command)
    assert (result.accepted, result.reason, result.id, result.version) == (
        True,
        "accepted",
        command.id,
        1,
    )
    assert refused(verifier, encode(command)) is RefusalReason.REPLAYED
    assert verifier.verify(encode(issue(signer, 5))).version == 5  # gaps are fine


def test_replay_is_refused_after_a_restart(
    signer: CommandSigner, make_verifier: Callable[..., CommandVerifier], tmp_path: Path
) -> None:
    first = make_verifier()
    command = issue(signer, 3)
    first.verify(encode(command))
    del first
    restarted = make_verifier()
    assert restarted.last_version == 3
    assert refused(restarted, encode(command)) is RefusalReason.REPLAYED
    assert refused(restarted, encode(issue(signer, 2))) is RefusalReason.REPLAYED
    state = tmp_path / "state" / "commands.json"
    assert stat.S_IMODE(state.stat().st_mode) == 0o600
    assert [p.name for p in state.parent.iterdir()] == ["commands.json"]  # no temp left over


def test_forged_signature_is_refused(
    signer: CommandSigner, make_verifier: Callable[..., CommandVerifier]
) -> None:
    verifier = make_verifier()
    impostor = CommandSigner(generate_signing_key())
    assert refused(verifier, encode(issue(impostor, 1))) is RefusalReason.BAD_SIGNATURE
    # A genuine signature moved onto a changed command.
    genuine = issue(signer, 2)
    raised = genuine.model_copy(update={"args": {"seq": 1}})
    assert refused(verifier, encode(raised)) is RefusalReason.BAD_SIGNATURE
    unsigned = genuine.model_copy(update={"signature": ""})
    assert refused(verifier, encode(unsigned)) is RefusalReason.BAD_SIGNATURE
    assert verifier.last_version == 0  # nothing refused moved the replay memory


def test_command_for_another_gateway_is_refused(
    signer: CommandSigner, make_verifier: Callable[..., CommandVerifier]
) -> None:
    verifier = make_verifier()
    for target in ({"gateway": "gw-2"}, {"hall": "hallB"}):
        command = issue(signer, 1, **target)
        assert refused(verifier, encode(command)) is RefusalReason.WRONG_TARGET


def test_expired_command_is_refused(
    signer: CommandSigner, make_verifier: Callable[..., CommandVerifier], clock: Clock
) -> None:
    verifier = make_verifier()
    command = issue(signer, 1)
    clock.now = command.expires_at
    with pytest.raises(CommandRefused) as caught:
        verifier.verify(encode(command))
    assert caught.value.reason is RefusalReason.EXPIRED
    assert "gateway clock" in caught.value.detail  # the operator can see a clock problem
    clock.now = NOW - timedelta(days=30)  # a gateway clock behind (no RTC, no NTP yet)
    assert verifier.verify(encode(command)).version == 1


@pytest.mark.parametrize(
    "payload",
    [b"", b"not json", b"[]", b'{"v": 2}', b"\xff\xfe", b"{" * 100_000],
)
def test_malformed_payloads_are_refused(
    make_verifier: Callable[..., CommandVerifier], payload: bytes
) -> None:
    verifier = make_verifier()
    assert refused(verifier, payload) is RefusalReason.MALFORMED
    result = verifier.result(CommandRefused(RefusalReason.MALFORMED, "x"))
    assert (result.accepted, result.id, result.version) == (False, None, None)


def test_extra_fields_are_refused(
    signer: CommandSigner, make_verifier: Callable[..., CommandVerifier]
) -> None:
    body = json.loads(encode(issue(signer, 1)))
    body["sudo"] = True
    assert refused(make_verifier(), json.dumps(body).encode()) is RefusalReason.MALFORMED


def test_replay_memory_fails_closed(
    signer: CommandSigner, make_verifier: Callable[..., CommandVerifier], tmp_path: Path
) -> None:
    state = tmp_path / "state" / "commands.json"
    state.parent.mkdir()
    state.write_text("{broken")
    with pytest.raises(CommandStateError):
        make_verifier()
    state.write_text(json.dumps({"hall": "hallB", "gateway": GATEWAY, "last_version": 1}))
    with pytest.raises(CommandStateError):
        make_verifier()


def test_version_floor_for_a_replacement_gateway(
    signer: CommandSigner, make_verifier: Callable[..., CommandVerifier]
) -> None:
    verifier = make_verifier(version_floor=10)
    assert refused(verifier, encode(issue(signer, 10))) is RefusalReason.REPLAYED
    assert verifier.verify(encode(issue(signer, 11))).version == 11


def test_one_command_is_accepted_once_under_concurrency(
    signer: CommandSigner, make_verifier: Callable[..., CommandVerifier]
) -> None:
    verifier = make_verifier()
    payload = encode(issue(signer, 1))
    outcomes: list[str] = []

    def attempt() -> None:
        try:
            verifier.verify(payload)
            outcomes.append("accepted")
        except CommandRefused as exc:
            outcomes.append(str(exc.reason))

    threads = [threading.Thread(target=attempt) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == ["accepted"] + ["replayed"] * 7
