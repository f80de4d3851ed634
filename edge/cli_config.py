"""The gateway's YAML config as every ``hallwatch-edge`` command reads it: the ``--config``
option, and loading it with errors on stderr and exit code 2."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from edge.config import GatewayConfig
from hallkit.configfiles import check_readable
from hallkit.configtext import ConfigError, parse_yaml_model

ConfigOption = Annotated[Path, typer.Option("--config", "-c", help="gateway YAML config")]


def load_config(path: Path, *, check_files: bool = False) -> GatewayConfig:
    """``check_files``: also the certificates and keys it names must be readable."""
    try:
        text = path.read_text(encoding="utf-8")
        config = parse_yaml_model(GatewayConfig, text, str(path))
        if check_files:
            check_readable(text, str(path), config.named_files())
        return config
    except OSError as exc:
        typer.echo(f"无法读取配置 / cannot read {path}: {exc.strerror}", err=True)
        raise typer.Exit(2) from None
    except ConfigError as exc:
        typer.echo(f"配置错误 / configuration error:\n{exc}", err=True)
        raise typer.Exit(2) from None
