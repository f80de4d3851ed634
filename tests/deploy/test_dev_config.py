"""deploy/mosquitto/hallwatch-dev.conf: the settings it promises, and that it runs both ways."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import pytest

from central.security.broker_acl import DEPLOY_MOSQUITTO, DEV_CONF, render_dev_config
from tests.deploy.support import Peer, peers
from tests.support.broker import MOSQUITTO, Broker, free_port, wait_port


def _settings(text: str) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for line in text.splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.strip().partition(" ")
            found.setdefault(key, []).append(value)
    return found


def test_dev_file_says_what_it_is_and_sets_no_silent_loss_by_count() -> None:
    text = (DEPLOY_MOSQUITTO / DEV_CONF).read_text()
    assert "DEVELOPMENT ONLY" in text and "仅限开发" in text
    settings = _settings(text)
    assert "listener" not in settings and "persistence_location" not in settings
    assert settings["allow_anonymous"] == ["true"]
    assert settings["max_queued_messages"] == ["0"]
    assert int(settings["max_queued_bytes"][0]) > 0
    # The guard must sit well above a queue: reaching it starves subscribers (README.md).
    assert int(settings["memory_limit"][0]) >= 4 * int(settings["max_queued_bytes"][0])
    assert settings["persistence"] == ["true"]
    assert 0 < int(settings["autosave_interval"][0]) <= 300


def _start(conf: Path, cwd: Path, port: int, *args: str) -> subprocess.Popen[bytes]:
    with (cwd / "mosquitto.log").open("ab") as log:
        process = subprocess.Popen(
            [MOSQUITTO, "-c", str(conf), *args], cwd=cwd, stdout=log, stderr=subprocess.STDOUT
        )
    try:
        wait_port(port)
    except TimeoutError:
        process.kill()
        raise
    return process


def _stop(process: subprocess.Popen[bytes]) -> None:
    os.kill(process.pid, signal.SIGTERM)
    process.wait(10)


def test_rendered_dev_config_runs_and_persists_in_its_data_dir(tmp_path: Path) -> None:
    port = free_port()
    conf = tmp_path / "mosquitto.conf"
    conf.write_text(render_dev_config(port, tmp_path / "data"))
    (tmp_path / "data").mkdir()
    process = _start(conf, tmp_path, port)
    try:
        with peers(Peer(port, None)) as (client,):
            assert client.connect()
            client.publish("hw/v1/hallA/gw-1/state", b"retained across restarts", retain=True)
    finally:
        _stop(process)
    assert (tmp_path / "data" / "mosquitto.db").exists()

    process = _start(conf, tmp_path, port)
    try:
        with peers(Peer(port, None)) as (client,):
            assert client.connect()
            client.subscribe("hw/v1/+/+/state")
            client.wait_for(b"retained across restarts")
    finally:
        _stop(process)


def test_dev_file_with_port_on_the_command_line(tmp_path: Path) -> None:
    """``mosquitto -c hallwatch-dev.conf -p PORT``: -p counts because the file has no listener."""
    port = free_port()
    process = _start(DEPLOY_MOSQUITTO / DEV_CONF, tmp_path, port, "-p", str(port))
    try:
        with peers(Peer(port, None), Peer(port, None)) as (sub, pub):
            assert sub.connect() and pub.connect()
            sub.subscribe("hw/v1/+/+/events")
            pub.publish("hw/v1/hallA/gw-1/events", b"hello")
            sub.wait_for(b"hello")
    finally:
        _stop(process)


def test_shared_test_fixture_accepts_the_dev_file(tmp_path: Path) -> None:
    """tests.support.broker (used across the project) reads this file too."""
    broker = Broker(free_port(), tmp_path / "broker").start()
    try:
        with peers(Peer(broker.port, None)) as (client,):
            assert client.connect()
            client.subscribe("t")
            client.publish("t", b"ok")
            client.wait_for(b"ok")
    finally:
        broker.stop()
    log = (tmp_path / "broker" / "mosquitto.log").read_text()
    # Configuration errors would stop the broker; started as root without a "user" line it
    # cannot save its database in a private directory (render_dev_config sets the user).
    assert "Unknown configuration" not in log and "Duplicate" not in log


@pytest.mark.parametrize("value", ["1\nallow_anonymous true", "x # y", " padded"])
def test_rendering_refuses_values_that_would_inject_directives(tmp_path: Path, value: str) -> None:
    with pytest.raises(ValueError):
        render_dev_config(1883, tmp_path, bind=value)
