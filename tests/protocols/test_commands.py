"""protocols.commands: the command envelope and the bytes that are signed."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from protocols.commands import (
    MAX_COMMAND_TTL,
    SIGNING_DOMAIN,
    Command,
    CommandResult,
    ReplayFromArgs,
    canonical_bytes,
)

T0 = datetime(2026, 3, 2, 8, 30, tzinfo=UTC)


def command(**changes: Any) -> Command:
    fields: dict[str, Any] = {
        "id": "0b6e2f1c-55a1-4c2e-9d0e-5f4f2b7e9a10",
        "hall": "hallA",
        "gateway": "gw-1",
        "version": 7,
        "issued_at": T0,
        "expires_at": T0 + timedelta(hours=1),
        "name": "replay_from",
        "args": {"seq": 120},
    }
    fields.update(changes)
    return Command(**fields)


def test_canonical_bytes_are_labelled_sorted_compact_and_leave_out_the_signature() -> None:
    data = canonical_bytes(command(signature="A" * 86 + "=="))
    assert data.startswith(SIGNING_DOMAIN)
    body = data[len(SIGNING_DOMAIN) :].decode()
    assert "signature" not in body and " " not in body
    assert list(json.loads(body)) == sorted(json.loads(body))
    assert json.loads(body)["issued_at"] == "2026-03-02T08:30:00.000000Z"


def test_same_command_in_another_encoding_signs_the_same_bytes() -> None:
    plain = command()
    shuffled = dict(reversed(list(json.loads(plain.model_dump_json()).items())))
    shuffled["issued_at"] = "2026-03-02T16:30:00+08:00"  # Beijing time, the same instant
    again = Command.model_validate_json(json.dumps(shuffled, indent=3))
    assert canonical_bytes(again) == canonical_bytes(plain)


def test_every_field_is_covered() -> None:
    base = canonical_bytes(command())
    for change in (
        {"id": str(uuid.uuid4())},
        {"hall": "hallB"},
        {"gateway": "gw-2"},
        {"version": 8},
        {"issued_at": T0 - timedelta(seconds=1)},
        {"expires_at": T0 + timedelta(hours=2)},
        {"args": {"seq": 121}},
        {"name": "reread_devices", "args": {}},
    ):
        assert canonical_bytes(command(**change)) != base, change


@given(
    st.dictionaries(
        st.text(min_size=1, max_size=8),
        st.recursive(
            st.none()
            | st.booleans()
            | st.integers()
            | st.text(max_size=8)
            | st.floats(allow_nan=False, allow_infinity=False),
            lambda inner: (
                st.lists(inner, max_size=3)
                | st.dictionaries(st.text(max_size=4), inner, max_size=3)
            ),
            max_leaves=8,
        ),
        max_size=4,
    )
)
def test_canonical_bytes_survive_the_wire(config: dict[str, Any]) -> None:
    sent = command(name="apply_config", args={"config_version": 3, "config": config})
    received = Command.model_validate_json(sent.model_dump_json())
    assert canonical_bytes(received) == canonical_bytes(sent)


@pytest.mark.parametrize(
    "change",
    [
        {"issued_at": datetime(2026, 3, 2, 8, 30)},  # no timezone
        {"expires_at": T0},  # not after issued_at
        {"expires_at": T0 + MAX_COMMAND_TTL + timedelta(seconds=1)},
        {"id": "not-a-uuid"},
        {"version": 0},
        {"hall": "hall/A"},
        {"name": "format_disk", "args": {}},
        {"args": {"seq": 0}},
        {"args": {"seq": 1, "extra": True}},
        {"name": "reread_devices", "args": {"devices": ["../tty"]}},
        {"name": "apply_config", "args": {"config": {}}},
        {"signature": "not base64!"},
    ],
)
def test_invalid_commands_do_not_parse(change: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        command(**change)


def test_typed_args_and_timezones() -> None:
    parsed = command(issued_at=datetime(2026, 3, 2, 16, 30, tzinfo=timezone(timedelta(hours=8))))
    assert parsed.issued_at == T0 and parsed.issued_at.tzinfo == UTC
    assert parsed.typed_args() == ReplayFromArgs(seq=120)


def test_result_reason_matches_acceptance() -> None:
    ok = CommandResult(hall="hallA", gateway="gw-1", accepted=True, reason="accepted", utc=T0)
    assert ok.id is None
    CommandResult(hall="hallA", gateway="gw-1", accepted=False, reason="replayed", utc=T0)
    for accepted, reason in ((True, "replayed"), (False, "accepted"), (False, "because")):
        with pytest.raises(ValidationError):
            CommandResult(hall="hallA", gateway="gw-1", accepted=accepted, reason=reason, utc=T0)
