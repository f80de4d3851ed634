"""hallwatch-central bridge list: the tier bridges' links (县/市 上联) as central hears them."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from central.cli.common import ConfigOption, load_config, run_with_engine

bridge_app = typer.Typer(
    help="Tier bridges (county → city → province): their links to this broker.",
    no_args_is_help=True,
)


@bridge_app.command("list")
def bridge_list(
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
    config: ConfigOption = None,
) -> None:
    """Each tier bridge central has heard of: 上联 正常/中断 since when; ``告警 alarm``: down for
    longer than ``bridges.down_grace_s``. Exits 1 when a link is in alarm (for monitoring)."""
    from sqlalchemy.ext.asyncio import AsyncEngine

    from central.spine import bridges
    from hallkit.clock import utc_now

    cfg = load_config(config, logs="untouched")

    async def read(engine: AsyncEngine) -> list[bridges.Link]:
        bridges.bind(engine, cfg.bridges.down_grace_s)
        return await bridges.links(engine)

    links = run_with_engine(cfg, read)
    now = utc_now()
    if as_json:
        doc = [
            {
                "bridge": link.bridge,
                "up": link.up,
                "since": link.changed_at.isoformat(),
                "heard_at": link.heard_at.isoformat(),
                "alarm": link.alarm,
            }
            for link in links
        ]
        typer.echo(json.dumps(doc, ensure_ascii=False, indent=1))
    elif not links:
        typer.echo("no tier bridge heard of yet / 尚无上联通知")
    for link in [] if as_json else links:
        alarm = "  告警 alarm" if link.alarm else ""
        typer.echo(f"{link.bridge}  {link.describe(now)}{alarm}")
    if any(link.alarm for link in links):
        raise typer.Exit(1)
