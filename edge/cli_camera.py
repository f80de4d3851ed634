"""hallwatch-edge camera …: what a technician does with the window cameras on site."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from edge.cli_ops import CONFIG_NAME, DEFAULT_TARGET
from edge.cli_ops import _load as load_config

app = typer.Typer(help="Window cameras (窗口摄像头).", no_args_is_help=True)


@app.command("calibrate")
def calibrate(
    window: Annotated[
        list[int], typer.Option("--window", "-w", help="window number (repeat for several)")
    ],
    config: Annotated[
        Path, typer.Option("--config", "-c", help="gateway YAML config")
    ] = DEFAULT_TARGET / CONFIG_NAME,
    camera: Annotated[
        str | None,
        typer.Option(help="only this camera (default: every camera that watches the window)"),
    ] = None,
) -> None:
    """Take the empty seat and counter of a window as they are now: run it while nobody sits
    or stands there. Prints a snapshot to check that they really were empty."""
    from edge.camera.calibrate import CalibrationFailed, calibrate_camera
    from edge.camera.evidence import STATE_DIR

    cfg, _ = load_config(config)
    cams = cfg.cameras
    if cams is None:
        typer.echo("此网关未配置摄像头 / no cameras configured", err=True)
        raise typer.Exit(2)
    chosen = [
        c
        for c in cams.cameras
        if (camera is None or c.id == camera) and {w.window for w in c.windows} & set(window)
    ]
    if not chosen:
        typer.echo(
            f"没有摄像头对着窗口 {window} / no camera watches window(s) {window}"
            + (f" as {camera}" if camera else ""),
            err=True,
        )
        raise typer.Exit(2)
    state_dir = cams.state_dir or cams.evidence_dir / STATE_DIR
    failed = False
    for cam in chosen:
        try:
            done = calibrate_camera(cam, state_dir, list(window))
        except CalibrationFailed as exc:
            typer.echo(f"校准失败 / calibration failed: {exc}", err=True)
            failed = True
            continue
        typer.echo(f"已校准 / calibrated: camera {done.camera}: {', '.join(done.regions)}")
        typer.echo(
            f"  请核对截图中座位和柜台无人 / check the seat and counter are empty in: "
            f"{done.snapshot}"
        )
    if failed:
        raise typer.Exit(1)
