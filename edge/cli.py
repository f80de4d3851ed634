"""hallwatch-edge: the gateway's command line (technicians and systemd use it)."""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from edge import cli_camera, cli_ops
from edge.cli_config import ConfigOption, load_config
from edge.web.users_cli import users

app = typer.Typer(
    help="Hallwatch hall gateway (大厅网关).", no_args_is_help=True, pretty_exceptions_enable=False
)
app.add_typer(users, name="user")

app.add_typer(cli_ops.app)  # provision apply, selftest, ports
app.add_typer(cli_camera.app, name="camera")  # camera calibrate


@app.command()
def run(config: ConfigOption) -> None:
    """Run the gateway service."""
    from edge.app import STOP_WITHIN_S, Gateway
    from edge.configstore import ConfigStore
    from edge.instance import AlreadyRunning

    cfg = load_config(config, check_files=True)
    active = ConfigStore(cfg.data_dir).load_active(cfg)  # a version central sent, if any
    logging.basicConfig(
        level=(active.config if active else cfg).log_level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    gateway = Gateway(active.config, config_version=active.version) if active else Gateway(cfg)
    try:
        asyncio.run(gateway.run_forever(exit_within_s=STOP_WITHIN_S))
    except AlreadyRunning as exc:
        typer.echo(f"网关服务已在运行 / {exc}", err=True)
        raise typer.Exit(1) from None
    if gateway.failure is not None:
        typer.echo(
            f"网关服务因任务反复失败而停止 / stopped, a task keeps failing: {gateway.failure}",
            err=True,
        )
        raise typer.Exit(1)
    if gateway.restart_requested:
        # A new configuration version needs a new process: the same command line again,
        # same PID (systemd's Type=exec unit does not notice), the new version in force.
        logging.getLogger(__name__).info("restarting for configuration v%d", gateway.config_version)
        os.execv(sys.executable, [sys.executable, "-m", "edge.cli", *sys.argv[1:]])


@app.command("check-config")
def check_config(path: Annotated[Path, typer.Argument(help="config file to check")]) -> None:
    """Validate a config file and the files it names; errors point at the offending line."""
    cfg = load_config(path, check_files=True)
    typer.echo(f"OK: {path} (hall {cfg.hall}, gateway {cfg.gateway})")


def main() -> None:
    sys.exit(app())


if __name__ == "__main__":
    main()
