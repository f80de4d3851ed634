"""hallwatch-central anomalies run: gaming detection (异常线索) by hand, over a day or an ISO
week, for every hall correlated in it or the ones named."""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from central.cli.common import ConfigOption, load_config, open_engine
from central.config import CentralConfig
from central.gaming.model import Period
from central.rules.workdays import business_date
from hallkit.clock import utc_now

anomalies_app = typer.Typer(
    help="异常线索 (gaming detection): run the detector over a day or an ISO week.",
    no_args_is_help=True,
)


async def _run(cfg: CentralConfig, period: Period, halls: list[str] | None) -> None:
    from central.gaming.job import run_once

    async with open_engine(cfg, migrate=True) as engine:
        report = await run_once(engine, [period], cfg=cfg.anomalies, halls=halls)
    table = Table("项目 / item", "数量 / count")
    for label, value in (
        ("大厅 × 统计期 / hall-periods", len(report.detected)),
        ("发现异常 / anomalies found", report.anomalies),
        ("新开线索 / cases opened", report.opened),
    ):
        table.add_row(label, str(value))
    Console().print(table)


def _date(value: str | None, name: str) -> dt.date | None:
    if value is None:
        return None
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        typer.echo(f"日期格式应为 YYYY-MM-DD / bad {name} {value!r}", err=True)
        raise typer.Exit(2) from None


@anomalies_app.command("run")
def run(
    day: Annotated[
        str | None, typer.Option(help="a business day, YYYY-MM-DD (default: yesterday)")
    ] = None,
    week: Annotated[
        str | None, typer.Option(help="any day of the ISO week to detect over, YYYY-MM-DD")
    ] = None,
    hall: Annotated[list[str] | None, typer.Option(help="only this hall (repeatable)")] = None,
    config: ConfigOption = None,
) -> None:
    """Detect over one day or one ISO week now; cases already opened are not opened again."""
    if day is not None and week is not None:
        typer.echo("--day 与 --week 只能选一个 / give --day or --week, not both", err=True)
        raise typer.Exit(2)
    on_week = _date(week, "--week")
    on_day = _date(day, "--day") or business_date(utc_now()) - dt.timedelta(days=1)
    period = Period.iso_week(on_week) if on_week is not None else Period.day(on_day)
    asyncio.run(_run(load_config(config, logs="warnings"), period, hall or None))
