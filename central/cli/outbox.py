"""hallwatch-central outbox status|release: what waits to be sent, and sending again what was
held by the rate limit or given up."""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Annotated

import typer

from central.cli.common import ConfigOption, load_config, run_with_engine

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine

outbox_app = typer.Typer(
    help="发送队列 / the outbox (feed, SMS, e-mail, webhooks).", no_args_is_help=True
)


@outbox_app.command("status")
def status(config: ConfigOption = None) -> None:
    """Messages by channel and status."""
    from central.outbox.store import by_channel

    async def read(engine: AsyncEngine) -> dict[str, dict[str, int]]:
        async with engine.connect() as conn:
            return await by_channel(conn)

    for channel, counts in sorted(
        run_with_engine(load_config(config, logs="warnings"), read).items()
    ):
        typer.echo(f"{channel}\t" + "  ".join(f"{name} {n}" for name, n in counts.items()))


@outbox_app.command("release")
def release(
    ids: Annotated[list[int], typer.Argument(help="message ids (held or failed)")],
    config: ConfigOption = None,
) -> None:
    """Send held or failed messages again from now, attempts counted afresh."""
    from central.outbox.store import release as release_messages

    async def go(engine: AsyncEngine) -> int:
        async with engine.begin() as conn:
            return await release_messages(conn, ids, dt.datetime.now(dt.UTC))

    count = run_with_engine(load_config(config, logs="warnings"), go)
    typer.echo(f"已重新发送 {count} 条 / {count} messages released")
