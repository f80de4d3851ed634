"""The gateway's configuration: one pydantic tree, loaded from YAML (see deploy/examples)."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

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
    keepalive_s: int = Field(default=15, ge=5, le=600)


class JournalConfig(_Section):
    path: Path | None = Field(default=None, description="default: <data_dir>/journal.db")
    limit_mb: float = Field(default=512, gt=0, description="bound on disk; acked rows go first")
    seq_floor: int = Field(default=0, ge=0, description="replacement gateway: start after this")


class UplinkConfig(_Section):
    batch_events: int = Field(default=1000, ge=1, le=1000)
    batch_bytes: int = Field(default=512 * 1024, ge=4096, le=1024 * 1024)
    window_events: int = Field(default=20_000, ge=1, description="published, not yet acked")
    ack_timeout_s: float = Field(default=5.0, gt=0, description="resend when acks stall")
    state_interval_s: float = Field(default=10.0, gt=0)


class GeneratorConfig(_Section):
    """A built-in event source for the demo, tests and benchmarks."""

    enabled: bool = False
    rate: float = Field(default=20.0, ge=0, description="events per second; 0 = flat out")
    total: int | None = Field(default=None, ge=0, description="stop after this many")
    chunk: int = Field(default=200, ge=1, description="events awaited together (flat out)")
    pad_bytes: int = Field(default=0, ge=0, le=4096)
    witness: Path | None = Field(
        default=None, description="append 'run seq n' for every event confirmed durable")


class ClockConfig(_Section):
    assume_synced: bool | None = Field(
        default=None, description="None: ask the kernel (adjtimex); true/false: override")


class GatewayConfig(_Section):
    hall: str = Field(pattern=f"^{ID_PATTERN}$", description="hall id (大厅)")
    gateway: str = Field(pattern=f"^{ID_PATTERN}$", description="this gateway's id")
    data_dir: Path = Path("var/edge")
    log_level: str = "INFO"
    broker: BrokerConfig = BrokerConfig()
    journal: JournalConfig = JournalConfig()
    uplink: UplinkConfig = UplinkConfig()
    generator: GeneratorConfig = GeneratorConfig()
    clock: ClockConfig = ClockConfig()

    @property
    def journal_path(self) -> Path:
        return self.journal.path or self.data_dir / "journal.db"
