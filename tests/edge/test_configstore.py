"""Remote configuration versions beside the provisioned file, and one service per data dir."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge.config import GatewayConfig
from edge.configstore import KEEP, ConfigStore, RemoteConfigError, merge_remote, restart_scope
from edge.instance import AlreadyRunning, InstanceLock, service_running


def _base(tmp: Path) -> GatewayConfig:
    return GatewayConfig.model_validate(
        {
            "hall": "H1",
            "gateway": "gw1",
            "data_dir": str(tmp / "data"),
            "broker": {
                "host": "broker",
                "port": 8883,
                "tls": {
                    "ca": str(tmp / "ca.crt"),
                    "cert": str(tmp / "gw.crt"),
                    "key": str(tmp / "gw.key"),
                },
            },
            "commands": {"public_key": str(tmp / "command-signing.pub")},
        }
    )


def test_pinned_fields_come_from_provisioning(tmp_path: Path) -> None:
    base = _base(tmp_path)
    # a remote config may leave identity out: it is taken from the running one
    merged = merge_remote(
        base, {"broker": {"host": "broker", "port": 8883}, "staff_names": {"100001": "李四"}}
    )
    assert merged.broker.tls == base.broker.tls and merged.commands == base.commands
    assert restart_scope(base, merged) == "devices"
    assert restart_scope(base, merge_remote(base, {"broker": {"host": "other"}})) == "process"
    assert restart_scope(base, base) == "none"
    for change in (
        {"gateway": "gw2"},
        {"data_dir": "/elsewhere"},
        {"commands": {"public_key": "/tmp/other.pub"}},
        {"broker": {"tls": {"ca": "/a", "cert": "/b", "key": "/c"}}},
    ):
        with pytest.raises(RemoteConfigError, match="provisioning"):
            merge_remote(base, change)
    with pytest.raises(RemoteConfigError, match=r"broker\.port"):
        merge_remote(base, {"broker": {"port": 0}})


def test_versions_are_kept_and_only_a_higher_one_installs(tmp_path: Path) -> None:
    base = _base(tmp_path)
    store = ConfigStore(base.data_dir)
    assert store.load_active(base) is None
    for version in range(1, KEEP + 3):
        store.install(version, merge_remote(base, {"staff_names": {"1": str(version)}}))
    active = store.load_active(base)
    assert active is not None and active.version == KEEP + 2
    assert active.config.staff_names == {"1": str(KEEP + 2)}
    kept = sorted(p.name for p in store.directory.glob("edge-v*.yaml"))
    assert len(kept) == KEEP and "edge-v1.yaml" not in kept
    with pytest.raises(RemoteConfigError, match="not above"):
        store.install(3, base)
    # re-provisioned for another gateway: the old remote version no longer applies
    other = base.model_copy(update={"gateway": "gw9"})
    assert store.load_active(other) is None


def test_one_service_per_data_directory(tmp_path: Path) -> None:
    assert not service_running(tmp_path)
    first = InstanceLock(tmp_path)
    first.acquire()
    try:
        assert service_running(tmp_path)
        with pytest.raises(AlreadyRunning):
            InstanceLock(tmp_path).acquire()
    finally:
        first.release()
    assert not service_running(tmp_path)
