"""The example configurations in deploy/examples are valid, so a technician can start from them."""

from __future__ import annotations

from pathlib import Path

from central.config import CentralConfig
from edge.config import GatewayConfig
from hallkit.configtext import parse_yaml_model

EXAMPLES = Path(__file__).resolve().parents[1] / "deploy" / "examples"


def test_gateway_example_is_valid() -> None:
    cfg = parse_yaml_model(GatewayConfig, (EXAMPLES / "gateway.yaml").read_text(), "gateway")
    assert cfg.evaluator_buses[0].devices[2].addr == 0x83
    assert cfg.cameras is not None and cfg.cameras.cameras[0].windows[0].window == 1


def test_central_example_is_valid() -> None:
    cfg = parse_yaml_model(CentralConfig, (EXAMPLES / "central.yaml").read_text(), "central")
    assert cfg.database_url.startswith("postgresql+asyncpg://")
