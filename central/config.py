"""Central's configuration (YAML, see deploy/examples/central.yaml)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

from central.audits.config import AuditConfig
from central.complaints.model import ComplaintsConfig
from central.gaming.config import GamingConfig
from central.haocha.config import HaochaConfig
from central.outbox.config import OutboxConfig
from central.rules.timelimit import LadderConfig
from central.store.db import DEFAULT_URL
from hallkit.configfiles import Named, check_readable, tls_files
from hallkit.configtext import ConfigError, parse_yaml_model
from hallkit.login.brake import TrustedProxies
from protocols.topics import ID_PATTERN
from protocols.transport import BrokerEndpoint, TlsFiles


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class AmqpIntake(_Section):
    """Where the aggregators read the province broker's partitions (``broker.kind: rabbitmq``)."""

    urls: list[SecretStr] = Field(
        min_length=1,
        description="amqp://user:password@host:port/ of each cluster node, tried in turn",
    )
    partitions: int = Field(
        default=4,
        ge=1,
        le=64,
        description="quorum queues the gateways' messages are hashed into (by topic)",
    )
    prefetch: int = Field(
        default=500, ge=1, le=65535, description="unacknowledged deliveries per partition"
    )
    live_prefetch: int = Field(
        default=100,
        ge=1,
        le=65535,
        description="unacknowledged deliveries per live partition (the gateways' live lanes)",
    )


class BrokerConfig(BrokerEndpoint):
    kind: Literal["mosquitto", "rabbitmq"] = Field(
        default="mosquitto",
        description="mosquitto: one shared MQTT subscription (a city); rabbitmq: the "
        "province cluster, read over AMQP from partitioned quorum queues (broker.amqp)",
    )
    amqp: AmqpIntake | None = None
    keepalive_s: int = Field(default=30, ge=5, le=600)
    feed_tls: TlsFiles | None = Field(
        default=None,
        description="the case feed client's own certificate (central.<name>); "
        "over TLS the broker uses the certificate name as client id",
    )
    group: str = Field(
        default="central",
        pattern=f"^{ID_PATTERN}$",
        description="shared-subscription group of the aggregator processes",
    )
    instance: str = Field(default_factory=lambda: f"p{os.getpid()}", pattern=f"^{ID_PATTERN}$")

    @model_validator(mode="after")
    def _rabbitmq_has_its_nodes(self) -> BrokerConfig:
        if self.kind == "rabbitmq" and self.amqp is None:
            raise ValueError("broker.kind rabbitmq needs broker.amqp.urls (one per node)")
        return self

    @model_validator(mode="after")
    def _feed_has_its_own_identity(self) -> BrokerConfig:
        # over TLS the broker names a client after its certificate (use_username_as_clientid):
        # two clients with one certificate share one client id and knock each other off.
        # (No feed_tls at all: the case feed is not started, and says so in /healthz.)
        if (
            self.tls is not None
            and self.feed_tls is not None
            and _same_file(self.feed_tls.cert, self.tls.cert)
        ):
            raise ValueError(
                "broker.feed_tls: the case feed needs a certificate of its own "
                "(`hallwatch-central broker setup` issues central.<name>-cases); "
                "with the consumer's certificate the broker gives both one client "
                "id and they knock each other off"
            )
        return self


def _same_file(a: Path, b: Path) -> bool:
    """One certificate, even as a copy under another name."""
    if a.resolve() == b.resolve():
        return True
    try:
        return a.read_bytes() == b.read_bytes()
    except OSError:  # not there yet: the clients say so when they start
        return False


class IngestConfig(_Section):
    max_group: int = Field(default=64, ge=1, description="messages per database transaction")
    max_pending: int = Field(default=256, ge=1, description="received, not yet committed")
    quarantine_rows_per_gateway: int = Field(
        default=1000, ge=1, description="quarantine kept per gateway; the oldest go first"
    )
    quarantine_mb_per_gateway: float = Field(
        default=8, gt=0, description="quarantine bytes kept per gateway; the oldest go first"
    )
    throttle: bool = Field(
        default=True, description="per-gateway budgets below apply when other gateways wait"
    )
    gateway_mb_per_s: float = Field(
        default=1.0,
        gt=0,
        le=1024,
        description="a gateway's bytes read per second under "
        "contention; the rest is dropped unread and resent",
    )
    gateway_messages_per_s: float = Field(
        default=50,
        gt=0,
        le=100_000,
        description="a gateway's messages read per second under contention",
    )
    gateway_burst_s: float = Field(
        default=2.0, gt=0, le=60, description="seconds of budget a quiet gateway saves up"
    )


class BridgesConfig(_Section):
    """Tier bridges (county → city → province) whose links central watches."""

    down_grace_s: float = Field(
        default=60.0,
        ge=0,
        le=86_400,
        description="a link down for longer than this is an alarm (the bridge retries from 5 s)",
    )


class HttpConfig(_Section):
    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = Field(default=8600, ge=1, le=65535)
    trusted_proxies: TrustedProxies = Field(default_factory=list)


class ProvisioningConfig(_Section):
    """Gateway identities and remote commands (deploy/README.md has the production paths)."""

    pki_dir: Path | None = Field(default=None, description="the CA; default <data_dir>/pki")
    command_key: Path | None = Field(
        default=None,
        description="Ed25519 command signing key; default <data_dir>/command-signing.key",
    )
    broker_url: str | None = Field(
        default=None,
        description="the address gateways connect to, put in bundles (mqtts://host:8883); "
        "unset: `gateway provision` needs --broker",
    )
    broker_dir: Path | None = Field(
        default=None,
        description="where the broker's acl and crl.pem are written; default <data_dir>/broker",
    )
    broker_pid_file: Path | None = Field(
        default=None,
        description="SIGHUP this broker after a change; unset: a systemd path "
        "unit reloads it (hallwatch-broker-reload.path)",
    )
    live_channel: bool | None = Field(
        default=None,
        description="uplink.live_channel in new bundles (fresh events on hw/v1/H/G/live, read "
        "ahead of every backlog); unset: on when central reads the province cluster "
        "(broker.kind rabbitmq), whose permissions and this central's broker ACL allow it",
    )
    central_users: list[str] = Field(
        default_factory=lambda: ["central.main"],
        description="broker usernames (certificate CNs) of the aggregator processes",
    )


class TimeseriesConfig(_Section):
    """The time-series sink (InfluxDB 2.x/3.x write API; VictoriaMetrics accepts it too)."""

    enabled: bool = False
    url: str = Field(default="http://127.0.0.1:8086", description="the store's base URL")
    org: str = "hallwatch"
    bucket: str = "hallwatch"
    token: SecretStr = Field(
        default=SecretStr(""),
        description="API token (user:password with auth_basic); a secret: never logged",
    )
    auth_basic: bool = Field(
        default=False,
        description="send the token as HTTP basic auth (VictoriaMetrics with -httpAuth.*)",
    )
    interval_s: float = Field(default=5.0, gt=0, le=3600, description="pause when idle")
    batch_events: int = Field(default=5000, ge=1, description="events per gateway per pass")
    write_chunk: int = Field(default=5000, ge=1, description="points per write request")
    gateway_sample_s: int = Field(default=60, ge=1, description="gateway gauges every …")
    timeout_s: float = Field(default=10.0, gt=0)


class RulesConfig(_Section):
    """Working-day calendar and time-limit ladder (central/rules/README.md)."""

    calendar_overrides: Path | None = Field(
        default=None, description="site calendar file: next year's holidays and 调休 workdays"
    )
    ladder: LadderConfig = Field(
        default_factory=LadderConfig,
        description="ladder thresholds, working days from the deadline",
    )
    ladder_every_s: float = Field(
        default=120, ge=1, le=3600, description="ladder job interval (it also runs after 00:00)"
    )


class LedgerConfig(_Section):
    """The tamper-evident ledger (central/records/ledger/)."""

    seal_every_s: float = Field(
        default=300,
        ge=5,
        le=86400,
        description="seal every chain's head this often, so that a "
        "rewrite of today's chain is caught too",
    )
    seal_file: Path | None = Field(
        default=None,
        description="sealed heads are also appended here, outside the "
        "database; default <data_dir>/ledger-seals.jsonl",
    )


class RetentionConfig(_Section):
    """Raw events kept per site policy (PostgreSQL, where events are partitioned by month;
    central/records/event_archive.py). The rollups are kept whatever this says."""

    events_keep_months: int | None = Field(
        default=None,
        ge=1,
        le=1200,
        description="months of raw events kept besides the current one; older months are "
        "archived to archive_dir and dropped (default: keep forever)",
    )
    archive_dir: Path | None = Field(
        default=None, description="where archived months go; default <data_dir>/archive"
    )
    check_every_s: float = Field(
        default=86400,
        ge=60,
        le=7 * 86400,
        description="how often the aggregator creates months ahead and applies the policy",
    )


class AnomaliesConfig(_Section):
    """Gaming detection's job (central/gaming/): each day over yesterday, each Monday over the
    last ISO week, the hall-periods shared out like correlation's hall-days."""

    enabled: bool = True
    check_every_s: float = Field(
        default=300, ge=1, le=86400, description="how often the job looks for a period due"
    )
    after_hour: int = Field(
        default=2,
        ge=0,
        le=23,
        description="a day (a week) is detected from this hour (Beijing) of the next day on, "
        "so evaluations uploaded late are correlated first",
    )
    lease_s: float = Field(default=120, ge=5, le=3600, description="a worker's hold on its batch")
    batch: int = Field(
        default=64,
        ge=1,
        le=10000,
        description="hall-periods detected together (false-discovery control spans a batch)",
    )
    baseline_weeks: int = Field(
        default=4,
        ge=0,
        le=52,
        description="the hall's baseline: the weeks before the period (0: the period itself)",
    )
    detector: GamingConfig = Field(
        default_factory=GamingConfig, description="thresholds (central/gaming/README.md)"
    )


class CentralConfig(_Section):
    database_url: str = DEFAULT_URL
    data_dir: Path = Path("var/central")
    log_level: str = "INFO"
    broker: BrokerConfig = BrokerConfig()
    ingest: IngestConfig = IngestConfig()
    http: HttpConfig = HttpConfig()
    rules: RulesConfig = RulesConfig()
    provisioning: ProvisioningConfig = ProvisioningConfig()
    timeseries: TimeseriesConfig = TimeseriesConfig()
    ledger: LedgerConfig = LedgerConfig()
    outbox: OutboxConfig = OutboxConfig()
    haocha: HaochaConfig = HaochaConfig()
    anomalies: AnomaliesConfig = AnomaliesConfig()
    audits: AuditConfig = AuditConfig()
    retention: RetentionConfig = RetentionConfig()
    complaints: ComplaintsConfig = ComplaintsConfig()
    bridges: BridgesConfig = BridgesConfig()

    @model_validator(mode="after")
    def _feed_has_its_channel(self) -> CentralConfig:
        channel = self.haocha.feed.channel
        if channel is not None and getattr(self.outbox, channel) is None:
            raise ValueError(f"haocha.feed.channel {channel} needs outbox.{channel}")
        return self

    def named_files(self) -> list[Named]:
        """Files this configuration names that an aggregator process reads at start."""
        return tls_files(("broker", "tls"), self.broker.tls) + tls_files(
            ("broker", "feed_tls"), self.broker.feed_tls
        )

    @property
    def pki_dir(self) -> Path:
        return self.provisioning.pki_dir or self.data_dir / "pki"

    @property
    def command_key_path(self) -> Path:
        return self.provisioning.command_key or self.data_dir / "command-signing.key"

    @property
    def seal_file(self) -> Path:
        return self.ledger.seal_file or self.data_dir / "ledger-seals.jsonl"

    @property
    def archive_dir(self) -> Path:
        return self.retention.archive_dir or self.data_dir / "archive"

    @property
    def broker_dir(self) -> Path:
        return self.provisioning.broker_dir or self.data_dir / "broker"


def load(path: Path | None, *, check_files: bool = False) -> CentralConfig:
    """``check_files``: also the certificates and keys it names must be readable (serve)."""
    if path is None:
        return CentralConfig()
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    config = parse_yaml_model(CentralConfig, text, str(path))
    if check_files:
        check_readable(text, str(path), config.named_files())
    return config
