"""Configuration versions sent by central (``apply_config``), kept beside the provisioned one.

The provisioned file (``/etc/hallwatch/edge.yaml``) is read-only to the service; a remote
version is written to ``<data_dir>/config/edge-v<version>.yaml`` and ``active`` is a symlink
swapped in one rename, so a power cut leaves either the old or the new version active, never
half of one. The previous versions stay beside it for a rollback (``KEEP`` of them).

What only provisioning may change is fixed: a remote version keeps the hall, the gateway id,
the data directory, the broker's TLS files and the command key of the provisioned file.
"""

from __future__ import annotations

import logging
import os
import re
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from edge.config import GatewayConfig
from hallkit.atomicfile import write_atomic
from hallkit.configtext import ConfigError, parse_yaml_model

log = logging.getLogger(__name__)

ACTIVE = "active"
KEEP = 5
_VERSION_FILE = re.compile(r"^edge-v(\d{1,19})\.yaml$")
# Fields only provisioning sets: taken from the running configuration when a remote one omits
# them, refused when it names other values.
PINNED = ("hall", "gateway", "data_dir", "commands")


class RemoteConfigError(ValueError):
    """A remote configuration that cannot be installed; nothing was changed."""


@dataclass(frozen=True, slots=True)
class ConfigVersion:
    version: int
    path: Path
    config: GatewayConfig


def _dump(config: GatewayConfig) -> dict[str, Any]:
    return config.model_dump(mode="json", exclude_none=True)


def merge_remote(current: GatewayConfig, remote: dict[str, Any]) -> GatewayConfig:
    """Validate a remote configuration against the running one (see ``PINNED``)."""
    base = _dump(current)
    merged = dict(remote)
    for name in PINNED:
        if name not in merged and name in base:
            merged[name] = base[name]
    broker = dict(merged.get("broker") or {})
    if "tls" not in broker and "tls" in base.get("broker", {}):
        broker["tls"] = base["broker"]["tls"]
    merged["broker"] = broker
    try:
        config = GatewayConfig.model_validate(merged)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "config"
        raise RemoteConfigError(f"{exc.error_count()} error(s); {where}: {first['msg']}") from None
    new = _dump(config)
    for name in PINNED:
        if new.get(name) != base.get(name):
            raise RemoteConfigError(f"{name} is set by provisioning, not by a remote config")
    if new["broker"].get("tls") != base["broker"].get("tls"):
        raise RemoteConfigError("broker.tls is set by provisioning, not by a remote config")
    return config


def restart_scope(old: GatewayConfig, new: GatewayConfig) -> str:
    """``none``, ``devices`` (restart the device supervisors) or ``process``."""
    before, after = _dump(old), _dump(new)
    changed = {k for k in before.keys() | after.keys() if before.get(k) != after.get(k)}
    if not changed:
        return "none"
    if changed <= {"evaluator_buses", "queue", "staff_names"}:
        return "devices"
    return "process"


class ConfigStore:
    def __init__(self, data_dir: Path) -> None:
        self.directory = data_dir / "config"

    def active(self) -> tuple[int, Path] | None:
        link = self.directory / ACTIVE
        try:
            target = os.readlink(link)
        except OSError:
            return None
        match = _VERSION_FILE.match(target)
        if match is None:
            return None
        return int(match.group(1)), self.directory / target

    def load_active(self, provisioned: GatewayConfig) -> ConfigVersion | None:
        """The remote version in force, checked against the provisioned file again.

        A version that no longer fits (the gateway was re-provisioned for another identity)
        is ignored with a warning rather than keeping the gateway from starting.
        """
        found = self.active()
        if found is None:
            return None
        version, path = found
        try:
            raw = parse_yaml_model(GatewayConfig, path.read_text(encoding="utf-8"), str(path))
            config = merge_remote(provisioned, _dump(raw))
        except (OSError, ConfigError, RemoteConfigError) as exc:
            log.warning("ignoring remote configuration %s: %s", path, exc)
            return None
        return ConfigVersion(version, path, config)

    def install(self, version: int, config: GatewayConfig) -> Path:
        """Write version ``version`` and make it active; refuses a version not above the
        active one (the command's own replay protection already guarantees that)."""
        found = self.active()
        if found is not None and version <= found[0]:
            raise RemoteConfigError(
                f"config version {version} is not above the active version {found[0]}"
            )
        self.directory.mkdir(parents=True, exist_ok=True)
        name = f"edge-v{version}.yaml"
        text = (
            "# Installed by a remote apply_config command from central; the provisioned\n"
            "# file stays as it was. Delete the 'active' link to go back to it.\n"
            + yaml.safe_dump(_dump(config), allow_unicode=True, sort_keys=False)
        )
        _write_atomic(self.directory / name, text.encode())
        link = self.directory / f".{ACTIVE}-{secrets.token_hex(6)}"
        os.symlink(name, link)
        os.replace(link, self.directory / ACTIVE)
        _fsync_dir(self.directory)
        versions = sorted(
            (int(m.group(1)), p)
            for p in self.directory.iterdir()
            if (m := _VERSION_FILE.match(p.name))
        )
        for _, old in versions[:-KEEP]:
            old.unlink(missing_ok=True)
        return self.directory / name


def _write_atomic(path: Path, data: bytes) -> None:
    write_atomic(path, data, 0o640)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
