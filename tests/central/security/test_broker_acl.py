"""central.security.broker_acl: the ACL text, the password file, templates and sync with the CA."""

from __future__ import annotations

import base64
import hashlib
import stat
from pathlib import Path

import pytest

from central.security.broker_acl import (
    DEPLOY_MOSQUITTO,
    BridgeAccess,
    BridgeHallsError,
    GatewayAccess,
    TlsBrokerFiles,
    hash_password,
    render_acl,
    render_bridge_config,
    render_password_file,
    render_template,
    render_tls_config,
    sync_broker,
)
from central.security.ca_store import PkiStore
from protocols.topics import TopicError


def _blocks(acl: str) -> dict[str, list[str]]:
    blocks: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in acl.splitlines():
        if line.startswith("user "):
            current = blocks.setdefault(line[5:], [])
        elif line.startswith("topic ") and current is not None:
            current.append(line[6:])
        elif line.startswith(("pattern", "topic")):
            raise AssertionError(f"rule outside a user block: {line}")
    return blocks


def test_each_gateway_gets_exactly_its_own_topics() -> None:
    acl = render_acl([("hallA", "gw-1", False), GatewayAccess("hallB", "gw-2")])
    blocks = _blocks(acl)
    assert blocks["gw.hallA.gw-1"] == [
        "write hw/v1/hallA/gw-1/events",
        "write hw/v1/hallA/gw-1/live",
        "write hw/v1/hallA/gw-1/state",
        "write hw/v1/hallA/gw-1/result",
        "write hw/v1/hallA/gw-1/evidence",
        "read hw/v1/hallA/gw-1/ack",
        "read hw/v1/hallA/gw-1/cmd",
        "read hw/v1/hallA/gw-1/receipt",
    ]
    assert blocks["central.main"] == [
        "read hw/v1/+/+/events",
        "read hw/v1/+/+/live",
        "read hw/v1/+/+/state",
        "read hw/v1/+/+/result",
        "read hw/v1/+/+/evidence",
        "write hw/v1/+/+/ack",
        "write hw/v1/+/+/cmd",
        "write hw/v1/+/+/receipt",
        "read hw/bridge/+/state",
        "read hw/v1/_feeds/cases",
        "write hw/v1/_feeds/case-results/+",
    ]
    assert "pattern" not in acl  # nothing granted to every certificate at once


def test_revoked_gateways_get_nothing() -> None:
    acl = render_acl([("hallA", "gw-1", True), ("hallA", "gw-2", False)])
    assert "gw.hallA.gw-1" not in _blocks(acl)
    assert "# revoked: gw.hallA.gw-1" in acl
    assert "gw.hallA.gw-2" in _blocks(acl)


def test_bridge_may_carry_its_halls_only() -> None:
    acl = render_acl([], bridges=[BridgeAccess("county1", ("hallA", "hallB"))])
    rules = _blocks(acl)["bridge.county1"]
    assert "write hw/v1/hallA/+/live" in rules
    assert "write hw/v1/hallA/+/events" in rules and "read hw/v1/hallB/+/cmd" in rules
    assert not [r for r in rules if "hallC" in r or "hw/v1/+/" in r]
    assert rules[-1] == "write hw/bridge/county1/state"


@pytest.mark.parametrize(
    "entry",
    [("hallA\nuser central.main", "gw", False), ("hall A", "gw", False), ("hallA", "#", False)],
)
def test_ids_that_would_rewrite_the_acl_are_refused(entry: tuple[str, str, bool]) -> None:
    with pytest.raises(TopicError):
        render_acl([entry])


def test_only_central_names_get_central_rights() -> None:
    with pytest.raises(ValueError):
        render_acl([], central_users=["gw.hallA.gw-1"])


def test_password_file_is_what_mosquitto_passwd_writes() -> None:
    line = render_password_file({"central.main": "s3cret"}).strip()
    user, _, hashed = line.partition(":")
    _, kind, iterations, salt, digest = hashed.split("$")
    assert (user, kind) == ("central.main", "7")
    again = hashlib.pbkdf2_hmac("sha512", b"s3cret", base64.b64decode(salt), int(iterations))
    assert base64.b64encode(again).decode() == digest
    assert hash_password("x", salt=b"0" * 12) == hash_password("x", salt=b"0" * 12)
    with pytest.raises(ValueError):
        render_password_file({"central.main": ""})


def test_templates_leave_no_placeholder_and_refuse_bad_values(tmp_path: Path) -> None:
    files = TlsBrokerFiles(*(tmp_path / n for n in ("ca", "crt", "key", "crl", "acl", "d", "c")))
    text = render_tls_config(8883, files)
    assert not [line for line in text.splitlines() if "@" in line and not line.startswith("#")]
    assert f"crlfile {tmp_path / 'crl'}" in text and "require_certificate true" in text
    bridge = render_bridge_config("county1", "city.example.cn", 8883, *(tmp_path / "x",) * 3)
    assert "remote_clientid bridge.county1" in bridge
    assert "address city.example.cn:8883" in bridge
    with pytest.raises(KeyError):
        render_template("listener @PORT@", {})
    with pytest.raises(ValueError):
        render_template("listener @PORT@", {"PORT": "1\nallow_anonymous true"})
    assert render_template("# @ANY@ in a comment\nx @A@", {"A": 1}) == "# @ANY@ in a comment\nx 1"


def test_a_bridge_to_rabbitmq_names_its_halls_and_drops_the_bridge_flag(tmp_path: Path) -> None:
    mosquitto = render_bridge_config("county1", "city", 8883, *(tmp_path / "x",) * 3)
    assert "try_private true" in mosquitto and "topic hw/v1/+/+/events out 1" in mosquitto
    rabbit = render_bridge_config(
        "county1", "province", 8883, *(tmp_path / "x",) * 3, halls=["C01", "C02"]
    )
    topics = [line for line in rabbit.splitlines() if line.startswith("topic ")]
    assert "try_private false" in rabbit and len(topics) == 2 * 8
    assert "topic hw/v1/C02/+/ack in 1" in topics and "topic hw/v1/C01/+/events out 1" in topics
    assert "topic hw/v1/C01/+/live out 1" in topics
    assert not [line for line in topics if line.startswith("topic hw/v1/+/")]
    with pytest.raises(ValueError):
        render_bridge_config("county1", "p", 1, *(tmp_path / "x",) * 3, halls=["C0.1"])


def test_every_template_directive_is_a_known_mosquitto_option() -> None:
    """Guards against typos: each option appears in the broker's own example configuration."""
    example = Path("/usr/share/doc/mosquitto/examples/mosquitto.conf")
    if not example.exists():
        pytest.skip("the mosquitto package's example configuration is not installed")
    known = {
        line.lstrip("#").split()[0]
        for line in example.read_text().splitlines()
        if line.startswith("#") and len(line) > 1 and not line.startswith(("# ", "##"))
    } | {"listener", "user", "include_dir", "connection", "address", "topic"}
    known |= {"tls_version", "bridge_tls_version"}  # in mosquitto.conf(5), not in the example
    for name in (
        "hallwatch-dev.conf",
        "hallwatch-tls.conf.in",
        "local-central.conf.in",
        "bridge-upstream.conf.in",
    ):
        for line in (DEPLOY_MOSQUITTO / name).read_text().splitlines():
            if line.strip() and not line.startswith("#"):
                assert line.split()[0] in known, f"{name}: {line}"


def test_sync_writes_crl_and_acl_then_reloads_once(tmp_path: Path) -> None:
    store = PkiStore.create(tmp_path / "pki")
    store.issue_gateway("hallA", "gw-1")
    store.issue_gateway("hallB", "gw-1")
    store.issue_gateway("hallC", "gw-1")
    store.revoke_gateway("hallB", "gw-1")
    reloads: list[bool] = []
    policy = sync_broker(
        store,
        tmp_path / "broker" / "acl",
        tmp_path / "broker" / "crl.pem",
        # The registry has revoked hallC already; the CA has not caught up yet.
        registry=[GatewayAccess("hallA", "gw-1"), GatewayAccess("hallC", "gw-1", True)],
        reload=lambda: reloads.append((tmp_path / "broker" / "acl").exists()),
    )
    assert reloads == [True]
    assert policy.allowed == ("gw.hallA.gw-1",)
    assert len(policy.revoked_serials) == 1
    assert set(_blocks(policy.acl)) == {"central.main", "gw.hallA.gw-1"}
    assert stat.S_IMODE((tmp_path / "broker" / "acl").stat().st_mode) == 0o640


def test_case_feed_permissions_for_central_and_approval_systems() -> None:
    from central.security.broker_acl import render_acl

    acl = render_acl([("hallA", "gw-1", False)], feeders=["sp-approval"])
    central_block = acl.split("user central.main")[1].split("\n\n")[0]
    assert "topic read hw/v1/_feeds/cases" in central_block
    assert "topic write hw/v1/_feeds/case-results/+" in central_block
    feeder = acl.split("user feeder.sp-approval")[1].split("\n\n")[0]
    assert feeder.split("\n")[1:] == [
        "topic write hw/v1/_feeds/cases",
        "topic read hw/v1/_feeds/case-results/sp-approval",
    ]


def test_a_bridge_that_would_leave_an_admitted_hall_behind_is_refused(tmp_path: Path) -> None:
    """A county gateway of a hall the bridge does not carry gets PUBACKs and is never heard
    above: rendering with the county's registry names the hall instead."""
    admitted = [GatewayAccess("C01", "g1"), GatewayAccess("C02", "g2"), GatewayAccess("C03", "g3")]
    admitted.append(GatewayAccess("C04", "g4", revoked=True))
    files = (tmp_path / "x",) * 3
    with pytest.raises(BridgeHallsError, match="C03"):
        render_bridge_config("county1", "p", 1, *files, halls=["C01", "C02"], admitted=admitted)
    text = render_bridge_config(
        "county1", "p", 1, *files, halls=["C01", "C02", "C03"], admitted=admitted
    )
    assert "topic hw/v1/C03/+/events out 1" in text and "C04" not in text
