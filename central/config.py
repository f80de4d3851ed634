"""Central's configuration (YAML, see deploy/examples/central.yaml)."""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from central.store.db import DEFAULT_URL
from protocols.configtext import ConfigError, parse_yaml_model
from protocols.topics import ID_PATTERN


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TlsFiles(_Section):
    ca: Path
    cert: Path
    key: Path


class BrokerConfig(_Section):
    host: str = "127.0.0.1"
    port: int = Field(default=1883, ge=1, le=65535)
    tls: TlsFiles | None = None
    keepalive_s: int = Field(default=30, ge=5, le=600)
    group: str = Field(default="central", pattern=f"^{ID_PATTERN}$",
                       description="shared-subscription group of the aggregator processes")
    instance: str = Field(default_factory=lambda: f"p{os.getpid()}", pattern=f"^{ID_PATTERN}$")


class IngestConfig(_Section):
    max_group: int = Field(default=64, ge=1, description="messages per database transaction")
    max_pending: int = Field(default=256, ge=1, description="received, not yet committed")


class HttpConfig(_Section):
    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = Field(default=8600, ge=1, le=65535)


class CentralConfig(_Section):
    database_url: str = DEFAULT_URL
    data_dir: Path = Path("var/central")
    log_level: str = "INFO"
    broker: BrokerConfig = BrokerConfig()
    ingest: IngestConfig = IngestConfig()
    http: HttpConfig = HttpConfig()


def load(path: Path | None) -> CentralConfig:
    if path is None:
        return CentralConfig()
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    return parse_yaml_model(CentralConfig, text, str(path))
