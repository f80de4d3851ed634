"""Correlation settings: tolerances, the RAPID_REPEAT interval, follow-up deadlines.

Read from ``correlation.yaml`` in central's data directory when it exists (every field
optional); the defaults are argued in README.md beside this file.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from central.correlation.machine_clock import MachineClockConfig
from central.rules.followup import FollowUpConfig
from hallkit.configtext import ConfigError, parse_yaml_model

FILE_NAME = "correlation.yaml"


class CorrelationConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    rapid_repeat_s: float = Field(
        default=3.0,
        ge=0,
        le=600,
        description="RAPID_REPEAT: a press this soon after the previous one on the same device",
    )
    after_service_s: float = Field(
        default=120.0,
        ge=0,
        le=3600,
        description="a press with no invitation still belongs to the service that ended this "
        "long before it, if no other ticket was called in between",
    )
    case_tolerance_s: float = Field(
        default=300.0,
        ge=0,
        le=7200,
        description="a case accepted this long before its service started can still belong to "
        "it (the approval system's clock)",
    )
    case_entry_lag_s: float = Field(
        default=600.0,
        ge=0,
        le=7200,
        description="a case accepted this long after its service ended can still belong to it "
        "(entered in the approval system after the citizen left)",
    )
    case_ambiguity_s: float = Field(
        default=60.0,
        ge=0,
        le=3600,
        description="a case tie is ambiguous (CASE_AMBIGUOUS) when another free service fits "
        "its acceptance time within this many seconds of the chosen one",
    )
    late_grace_s: float = Field(
        default=30.0,
        ge=0,
        le=600,
        description="LATE when the next service never started: pressed more than this after "
        "the next ticket was called there",
    )
    invite_slack_s: float = Field(
        default=30.0,
        ge=0,
        le=600,
        description="how far past an invitation's timeout a key may still answer it (clock "
        "jitter, bus retransmissions)",
    )
    verdict_window_s: float = Field(
        default=60.0,
        gt=0,
        le=3600,
        description="a camera verdict belongs to the press with its device seq this close in time",
    )
    scan_margin_s: float = Field(
        default=600.0,
        ge=0,
        le=86400,
        description="events received this long before the last scan are looked at again "
        "(a transaction may commit after a later one was scanned)",
    )
    reporting_gap_s: float = Field(
        default=120.0,
        ge=30,
        le=3600,
        description="queue messages further apart than this: the feed was not reporting in "
        "between (在岗率 counts only reported time; the machine beats every 30 s)",
    )
    scan_every_s: float = Field(
        default=30.0,
        ge=1,
        le=3600,
        description="new input is indexed and its hall-days queued this often (a scan re-reads "
        "hours of each active gateway's queue messages: not much sooner at a province's scale)",
    )
    workers: int = Field(
        default=1,
        ge=0,
        le=32,
        description="correlation workers in each aggregator process, each computing one "
        "hall-day at a time from the shared work queue (0: this process only scans)",
    )
    lease_s: float = Field(
        default=10.0,
        ge=1,
        le=600,
        description="a claimed hall-day is another worker's after this long without news "
        "(a worker killed mid-work)",
    )
    followup: FollowUpConfig = Field(default_factory=FollowUpConfig)
    queue_clock: MachineClockConfig = Field(
        default_factory=MachineClockConfig,
        description="queue messages received late are placed by the machine's own clock",
    )


def load_config(data_dir: Path | None) -> CorrelationConfig:
    """``data_dir/correlation.yaml`` if there is one, else the defaults."""
    if data_dir is None:
        return CorrelationConfig()
    path = data_dir / FILE_NAME
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return CorrelationConfig()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    return parse_yaml_model(CorrelationConfig, text, str(path))
