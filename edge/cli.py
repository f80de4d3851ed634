"""hallwatch-edge: the gateway's command line (technicians and systemd use it)."""

from __future__ import annotations

import asyncio
import logging
import sys
from pathlib import Path
from typing import Annotated

import typer

from edge.config import GatewayConfig
from protocols.configtext import ConfigError, parse_yaml_model

app = typer.Typer(help="Hallwatch hall gateway (大厅网关).", no_args_is_help=True,
                  pretty_exceptions_enable=False)

ConfigOption = Annotated[Path, typer.Option("--config", "-c", help="gateway YAML config")]


def _load(path: Path) -> GatewayConfig:
    try:
        return parse_yaml_model(GatewayConfig, path.read_text(encoding="utf-8"), str(path))
    except OSError as exc:
        typer.echo(f"无法读取配置 / cannot read {path}: {exc.strerror}", err=True)
        raise typer.Exit(2) from None
    except ConfigError as exc:
        typer.echo(f"配置错误 / configuration error:\n{exc}", err=True)
        raise typer.Exit(2) from None


@app.command()
def run(config: ConfigOption) -> None:
    """Run the gateway service."""
    from edge.app import Gateway

    cfg = _load(config)
    logging.basicConfig(level=cfg.log_level,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    asyncio.run(Gateway(cfg).run_forever())


@app.command("check-config")
def check_config(path: Annotated[Path, typer.Argument(help="config file to check")]) -> None:
    """Validate a config file; errors point at the offending line."""
    cfg = _load(path)
    typer.echo(f"OK: {path} (hall {cfg.hall}, gateway {cfg.gateway})")


def main() -> None:
    sys.exit(app())
