"""hallwatch-central screen add|list|revoke: 大屏 devices (wall displays)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from central.cli.common import ConfigOption, load_config, run_with_engine

if TYPE_CHECKING:
    from central.security.screens import ScreenInfo

app = typer.Typer()
screen_app = typer.Typer(help="大屏设备 / wall screens (read-only kiosks).", no_args_is_help=True)
app.add_typer(screen_app, name="screen")


def _base(url: str | None, config: Path | None) -> str:
    if url:
        return url.rstrip("/")
    http = load_config(config, logs="warnings").http
    return f"http://{http.host}:{http.port}"


@screen_app.command("add")
def add(
    name: Annotated[str, typer.Argument(help="the screen's name, e.g. jiancha-wall-1")],
    hall: Annotated[
        str | None, typer.Option(help="show this hall and the halls below it (default: all)")
    ] = None,
    url: Annotated[
        str | None, typer.Option(help="central's address as the screen reaches it")
    ] = None,
    config: ConfigOption = None,
) -> None:
    """Register a screen and print its one-time enrolment link (valid 7 days)."""
    from central.security import screens

    code = run_with_engine(
        load_config(config, logs="warnings"),
        lambda engine: screens.add(engine, name, hall),
        refused=(screens.ScreenError,),
    )
    link = f"{_base(url, config)}/wall/enroll?code={code}"
    typer.echo(f"在大屏上打开一次 / open once on the screen:\n{link}")


@screen_app.command("list")
def list_screens(config: ConfigOption = None) -> None:
    """Every screen: name, scope, state (waiting for its link, enrolled, revoked)."""
    from central.security.screens import list_screens as listed

    for info in run_with_engine(load_config(config, logs="warnings"), listed):
        typer.echo(_line(info))


@screen_app.command("revoke")
def revoke(
    name: Annotated[str, typer.Argument(help="the screen's name")],
    config: ConfigOption = None,
) -> None:
    """Revoke a screen at once: its next request and its live stream are refused."""
    from central.security import screens

    info = run_with_engine(
        load_config(config, logs="warnings"),
        lambda engine: screens.revoke(engine, name),
        refused=(screens.ScreenError,),
    )
    typer.echo(f"已吊销 / revoked: {_line(info)}")


def _line(info: ScreenInfo) -> str:
    enrolled = f"{info.enrolled_at:%Y-%m-%d %H:%M}" if info.enrolled_at else "-"
    return f"{info.name:<24} {info.hall or '*':<12} {info.state:<9} enrolled {enrolled}"
