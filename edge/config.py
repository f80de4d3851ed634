"""The gateway's configuration: one pydantic tree, loaded from YAML (see deploy/examples)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from edge.camera.config import CameraServiceConfig
from hallkit.configfiles import Named, tls_files
from hallkit.login.brake import TrustedProxies
from protocols.topics import ID_PATTERN
from protocols.transport import BrokerEndpoint, TlsFiles


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class BrokerConfig(BrokerEndpoint):
    """The broker the uplink publishes to."""


class JournalConfig(_Section):
    path: Path | None = Field(default=None, description="default: <data_dir>/journal.db")
    limit_mb: float = Field(default=512, gt=0, description="bound on disk; acked rows go first")
    seq_floor: int = Field(default=0, ge=0, description="replacement gateway: start after this")


class UplinkConfig(_Section):
    batch_events: int = Field(default=1000, ge=1, le=1000)
    batch_bytes: int = Field(default=512 * 1024, ge=4096, le=1024 * 1024)
    window_events: int = Field(default=20_000, ge=1, description="published, not yet acked")
    ack_timeout_s: float = Field(default=5.0, gt=0, description="resend after this silence")
    state_interval_s: float = Field(default=10.0, gt=0)
    live_lag_events: int | None = Field(
        default=1000,
        ge=0,
        description="journaled and unsent beyond this (a backlog): newer events go out at once "
        "beside the drain (the live lane); null: never",
    )
    live_events: int = Field(default=1000, ge=1, description="the most a live lane holds")
    drain_window_events: int = Field(
        default=5000, ge=1, description="the drain's window while a live lane is open"
    )
    live_channel: bool = Field(
        default=False,
        description="publish the live lane's batches on hw/v1/{hall}/{gateway}/live, which "
        "the province cluster reads ahead of every backlog; enable only once central and the "
        "broker's ACL or permissions know the channel (Mosquitto drops a publish its ACL "
        "denies, RabbitMQ closes the connection)",
    )


class GeneratorConfig(_Section):
    """A built-in event source for the demo, tests and benchmarks."""

    enabled: bool = False
    rate: float = Field(default=20.0, ge=0, description="events per second; 0 = flat out")
    total: int | None = Field(default=None, ge=0, description="stop after this many")
    chunk: int = Field(default=200, ge=1, description="events awaited together (flat out)")
    pad_bytes: int = Field(default=0, ge=0, le=4096)
    witness: Path | None = Field(
        default=None, description="append 'run seq n ok' for every event confirmed durable"
    )


class EvaluatorDevice(_Section):
    addr: int = Field(ge=0x81, le=0xFE, description="bus address (0x81–0xFE)")
    window: int = Field(ge=0, le=99_999, description="the window (窗口) this evaluator sits at")


class EvaluatorBusConfig(_Section):
    """One FF 68 bus (RS-485 segment) and the evaluators on it."""

    port: str = Field(description="serial device, e.g. /dev/serial/by-id/usb-…")
    baudrate: Literal[2400, 4800, 9600, 19200, 38400, 115200] = 9600
    poll_interval_s: float = Field(
        default=5.0, ge=0.5, le=10.0, description="STATUS_POLL period; the spec asks ≤ 10 s"
    )
    invite_timeout_s: int = Field(default=30, ge=5, le=255)
    devices: list[EvaluatorDevice] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique(self) -> EvaluatorBusConfig:
        addrs = [d.addr for d in self.devices]
        if len(set(addrs)) != len(addrs):
            raise ValueError("an address appears twice on this bus")
        return self


class QueueConfig(_Section):
    """The queue-number machine's feed (排队叫号机)."""

    transport: str = Field(description="serial device path, or tcp://host:4001")
    baudrate: Literal[9600, 19200, 115200] = 9600
    encoding: Literal["utf-8", "gb2312"] = "utf-8"


class ClockConfig(_Section):
    assume_synced: bool | None = Field(
        default=None, description="None: ask the kernel (adjtimex); true/false: override"
    )


class HttpConfig(_Section):
    """The hall page (大厅实时看板) served by the gateway for the hall manager's kiosk."""

    enabled: bool = False
    host: str = Field(default="0.0.0.0", description="listen address; the kiosk is on the LAN")
    port: int = Field(default=8700, ge=0, le=65535, description="0: any free port (tests)")
    tls: TlsFiles | None = Field(default=None, description="serve HTTPS (ca is not used)")
    hall_name: str = Field(default="", description="shown in the page title, e.g. 某区政务服务中心")
    timezone: str = Field(default="Asia/Shanghai", description="what 'today' means on the page")
    session_hours: float = Field(
        default=720, gt=0, le=24 * 366, description="login lifetime; a kiosk stays logged in"
    )
    trusted_proxies: TrustedProxies = Field(default_factory=list)


class CommandsConfig(_Section):
    """Remote commands from central (signed; see edge/commands.py)."""

    public_key: Path = Field(description="central's command-signing.pub (from the bundle)")
    state: Path | None = Field(
        default=None, description="replay memory; default <data_dir>/commands.json"
    )
    version_floor: int = Field(
        default=0, ge=0, description="refuse versions up to this (from the bundle)"
    )


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
    evaluator_buses: list[EvaluatorBusConfig] = Field(default_factory=list)
    queue: QueueConfig | None = None
    http: HttpConfig = HttpConfig()
    staff_names: dict[str, str] = Field(
        default_factory=dict, description="staff number → name shown on the evaluator"
    )
    commands: CommandsConfig | None = Field(
        default=None, description="accept signed remote commands; unset: none are accepted"
    )
    cameras: CameraServiceConfig | None = Field(
        default=None, description="window cameras: presence, citizen verdicts, evidence"
    )

    @model_validator(mode="after")
    def _one_evaluator_per_window(self) -> GatewayConfig:
        windows = [d.window for bus in self.evaluator_buses for d in bus.devices]
        doubled = sorted({w for w in windows if windows.count(w) > 1})
        if doubled:
            raise ValueError(f"windows with more than one evaluator: {doubled}")
        return self

    @property
    def journal_path(self) -> Path:
        return self.journal.path or self.data_dir / "journal.db"

    def named_files(self) -> list[Named]:
        """Files this configuration names that the service reads at start."""
        files = tls_files(("broker", "tls"), self.broker.tls)
        if self.http.enabled:
            files += tls_files(("http", "tls"), self.http.tls, ("cert", "key"))
        if self.commands is not None:
            files.append((("commands", "public_key"), self.commands.public_key))
        return files

    @property
    def command_state_path(self) -> Path:
        state = self.commands.state if self.commands is not None else None
        return state or self.data_dir / "commands.json"
