"""hallwatch-central feed status: the 好差评 feed's records and where each stands."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from central.cli.common import ConfigOption, load_config, run_with_engine

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine

    from central.haocha.status import FeedStatus

feed_app = typer.Typer(help="好差评上报 / the feed of evaluations upward.", no_args_is_help=True)


@feed_app.command("status")
def status(
    config: ConfigOption = None,
    hall: Annotated[str | None, typer.Option(help="one hall's records")] = None,
    limit: Annotated[int, typer.Option(min=0, help="records listed, newest first")] = 20,
) -> None:
    """Records by status (pending, sending, delivered, failed, held), then the newest."""
    from central.haocha.status import feed_status

    async def read(engine: AsyncEngine) -> FeedStatus:
        async with engine.connect() as conn:
            halls = None if hall is None else frozenset({hall})
            return await feed_status(conn, halls, limit=max(limit, 1))

    found = run_with_engine(load_config(config, logs="warnings"), read)
    typer.echo("  ".join(f"{name} {n}" for name, n in found.counts.items()))
    for r in found.records[:limit]:
        error = f"\t{r.last_error}" if r.last_error else ""
        typer.echo(
            f"{r.gateway}:{r.seq} v{r.version}\t{r.hall}\t{r.op}\t{r.status}"
            f"\tattempts {r.attempts}\tmapping {r.mapping_version}{error}"
        )
