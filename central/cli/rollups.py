"""hallwatch-central rollups rebuild: recompute the daily indicator rollups the dashboards read
(after a calendar or opening-hours change, or to fill them for days correlated before they
existed)."""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Annotated

import typer

from central.cli.common import ConfigOption, load_config, run_with_engine

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine

rollups_app = typer.Typer(help="指标日汇总 / daily indicator rollups.", no_args_is_help=True)


@rollups_app.command("rebuild")
def rebuild(
    since: Annotated[
        str | None, typer.Option(help="first business day, YYYY-MM-DD (default: every day)")
    ] = None,
    config: ConfigOption = None,
) -> None:
    """Recompute the rollups of every correlated hall-day, from --since on."""
    from central.correlation.job import calendar_of
    from central.reporting import rollups

    try:
        first = None if since is None else dt.date.fromisoformat(since)
    except ValueError:
        typer.echo(f"日期格式应为 YYYY-MM-DD / bad date {since!r}", err=True)
        raise typer.Exit(2) from None
    cfg = load_config(config, logs="warnings")

    async def work(engine: AsyncEngine) -> int:
        return await rollups.rebuild(engine, calendar_of(cfg), first)

    count = run_with_engine(cfg, work)
    typer.echo(f"已重算 {count} 个大厅日 / {count} hall-days recomputed")
