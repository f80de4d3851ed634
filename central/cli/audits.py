"""hallwatch-central audits draw: the monthly 抽查 sample of finished cases per department."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from central.cli.common import ConfigOption, load_config, run_with_engine

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine

    from central.audits.store import Sample

audits_app = typer.Typer(
    help="抽查 (audits): the monthly sample for call-backs.", no_args_is_help=True
)


@audits_app.command("draw")
def draw(
    month: Annotated[str, typer.Option(help="YYYY-MM, a month that has ended (Beijing)")],
    seed: Annotated[
        str | None, typer.Option(help="the draw's seed (default: a new random one)")
    ] = None,
    config: ConfigOption = None,
) -> None:
    """Draw the month's sample (audits.sample / audits.departments in the configuration).
    A month drawn before is shown as it was drawn; nothing is added. Exit status 2: a month
    not ended, a bad month or seed."""
    import re

    from central.audits.sample import MONTH_PATTERN
    from central.audits.store import AuditError, draw_month
    from hallkit.clock import utc_now

    if not re.match(MONTH_PATTERN, month):
        typer.echo("月份格式应为 YYYY-MM / month must be YYYY-MM", err=True)
        raise typer.Exit(2)
    cfg = load_config(config, logs="warnings")

    async def go(engine: AsyncEngine) -> Sample:
        return await draw_month(engine, month, cfg.audits, seed=seed, by="cli", now=utc_now())

    sample = run_with_engine(cfg, go, refused=(ValueError, AuditError))
    state = "新抽取 / drawn now" if sample.created else "此前已抽取 / drawn before"
    typer.echo(f"{sample.month} seed={sample.seed} ({state})")
    for name, doc in sorted(sample.departments.items()):
        typer.echo(f"{name}\t{doc['size']}/{doc['population']}")
