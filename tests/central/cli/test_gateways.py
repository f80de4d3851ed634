"""hallwatch-central gateway provision / list / revoke / command and broker sync, as a
technician runs them; and hallwatch-edge provision apply on the bundle they produce."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import yaml

from central.security.ca_store import PkiStore
from edge.config import GatewayConfig

BIN = Path(sys.executable).parent
CENTRAL, EDGE = str(BIN / "hallwatch-central"), str(BIN / "hallwatch-edge")


def run(*argv: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(list(argv), capture_output=True, text=True, timeout=120)
    if ok:
        assert result.returncode == 0, result.stdout + result.stderr
    return result


def test_provision_replace_revoke_and_apply(tmp_path: Path) -> None:
    conf = tmp_path / "central.yaml"
    conf.write_text(
        yaml.safe_dump(
            {
                "database_url": f"sqlite+aiosqlite:///{tmp_path / 'central.db'}",
                "data_dir": str(tmp_path / "central"),
                "provisioning": {"broker_url": "mqtts://broker.example.cn:8883"},
            }
        )
    )
    c = ("-c", str(conf))

    first = tmp_path / "first.tar.gz"
    out = run(
        CENTRAL, "gateway", "provision", *c, "--hall", "JQ", "--name", "gw01", "--out", str(first)
    ).stdout
    assert "gw.JQ.gw01" in out and first.exists()
    acl = (tmp_path / "central" / "broker" / "acl").read_text()
    assert "user gw.JQ.gw01" in acl

    # the gateway: identity and configuration from the bundle, devices kept on re-apply
    etc, data = tmp_path / "etc", tmp_path / "data"
    run(EDGE, "provision", "apply", str(first), "--target", str(etc), "--data-dir", str(data))
    written = yaml.safe_load((etc / "edge.yaml").read_text())
    config = GatewayConfig.model_validate(written)
    assert (config.hall, config.gateway, config.broker.host, config.broker.port) == (
        "JQ",
        "gw01",
        "broker.example.cn",
        8883,
    )
    assert config.broker.tls is not None and config.broker.tls.key.exists()
    assert config.commands is not None and config.commands.public_key.exists()
    assert config.uplink.live_channel is False  # a city's central on Mosquitto: off
    written["queue"] = {"transport": "/dev/ttyUSB0"}
    written["uplink"] = {"batch_events": 500}
    (etc / "edge.yaml").write_text(yaml.safe_dump(written))

    # a replacement box: same id, new certificate, the old one revoked
    second = tmp_path / "second.tar.gz"
    out = run(
        CENTRAL, "gateway", "provision", *c, "--hall", "JQ", "--name", "gw01", "--out", str(second)
    ).stdout
    assert "superseded and revoked" in out
    run(EDGE, "provision", "apply", str(second), "--target", str(etc), "--data-dir", str(data))
    again = GatewayConfig.model_validate(yaml.safe_load((etc / "edge.yaml").read_text()))
    assert again.queue is not None and again.queue.transport == "/dev/ttyUSB0"
    assert again.uplink.batch_events == 500 and again.uplink.live_channel is False

    # a central that says so (or reads the province cluster) turns the live channel on
    settings = yaml.safe_load(conf.read_text())
    settings["provisioning"]["live_channel"] = True
    conf.write_text(yaml.safe_dump(settings))
    third = tmp_path / "third.tar.gz"
    run(CENTRAL, "gateway", "provision", *c, "--hall", "JQ", "--name", "gw01", "--out", str(third))
    run(EDGE, "provision", "apply", str(third), "--target", str(etc), "--data-dir", str(data))
    live = GatewayConfig.model_validate(yaml.safe_load((etc / "edge.yaml").read_text()))
    assert live.uplink.live_channel is True and live.uplink.batch_events == 500
    store = PkiStore.open(tmp_path / "central" / "pki")
    assert len([x for x in store.issued() if x.common_name == "gw.JQ.gw01"]) == 3
    assert len(store.revoked()) == 2

    # another hall's bundle over a gateway that has a journal: refused unless --force
    run(
        CENTRAL,
        "gateway",
        "provision",
        *c,
        "--hall",
        "XX",
        "--name",
        "gw02",
        "--out",
        str(tmp_path / "other.tar.gz"),
    )
    data.mkdir(exist_ok=True)
    (data / "journal.db").write_bytes(b"")
    refused = run(
        EDGE,
        "provision",
        "apply",
        str(tmp_path / "other.tar.gz"),
        "--target",
        str(etc),
        "--data-dir",
        str(data),
        ok=False,
    )
    assert refused.returncode == 2 and "--force" in refused.stderr

    # a command queued from the shell takes the gateway's next version
    queued = run(
        CENTRAL, "gateway", "command", "gw01", "replay_from", "--args", '{"seq": 1}', *c
    ).stdout
    assert "replay_from v1" in queued
    bad = run(
        CENTRAL, "gateway", "command", "gw01", "replay_from", "--args", '{"seq": 0}', *c, ok=False
    )
    assert bad.returncode == 2 and "seq" in bad.stderr

    run(CENTRAL, "gateway", "revoke", "gw01", *c)
    listed = json.loads(run(CENTRAL, "gateway", "list", "--json", *c).stdout)
    by_id = {g["gateway"]: g for g in listed}
    assert by_id["gw01"]["revoked"] is True and by_id["gw01"]["cert_serial"] is None
    assert by_id["gw02"]["revoked"] is False
    acl = (tmp_path / "central" / "broker" / "acl").read_text()
    assert "user gw.JQ.gw01" not in acl and "user gw.XX.gw02" in acl
    assert len(store.revoked()) == 3
    refused = run(CENTRAL, "gateway", "command", "gw01", "reread_devices", *c, ok=False)
    assert refused.returncode == 2 and "revoked" in refused.stderr
    synced = run(CENTRAL, "broker", "sync", *c).stdout
    assert "1 gateways allowed, 3 serials revoked" in synced
