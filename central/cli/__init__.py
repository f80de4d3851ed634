"""hallwatch-central: run the aggregator, manage gateways and API tokens."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

import typer

from central.cli import (
    anomalies,
    audits,
    bridges,
    cases,
    correlation,
    events,
    feed,
    gateways,
    halls,
    ledger,
    outbox,
    rollups,
    screens,
    tokens,
    users,
)
from central.cli.common import ConfigOption, load_config, open_engine, set_verbose
from central.config import CentralConfig
from central.rules.workdays import CalendarConfigError
from hallkit.configtext import ConfigError
from hallkit.heap import freeze_startup_heap

app = typer.Typer(
    help="Hallwatch central aggregator (电子监察中心).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.add_typer(bridges.bridge_app, name="bridge")  # bridge list (tier links, 上联)
app.add_typer(gateways.app)  # gateway add|provision|revoke|list|command, broker, backup
app.add_typer(ledger.app)  # verify-ledger, ledger head|append
app.add_typer(cases.cases_app, name="cases")  # cases import, cases ladder
app.add_typer(users.app)  # user add|passwd|disable|enable|list (dashboard logins)
app.add_typer(tokens.app)  # token create|list|revoke (API bearer tokens)
app.add_typer(correlation.correlation_app, name="correlation")  # run, recompute, hall-setup
app.add_typer(halls.halls_app, name="halls")  # halls import, halls list (the registry)
app.add_typer(screens.app)  # screen add|list|revoke (大屏 devices)
app.add_typer(feed.feed_app, name="feed")  # feed status (好差评 records sent upward)
app.add_typer(outbox.outbox_app, name="outbox")  # outbox status|release
app.add_typer(rollups.rollups_app, name="rollups")  # rollups rebuild (indicator rollups)
app.add_typer(anomalies.anomalies_app, name="anomalies")  # anomalies run (异常线索)
app.add_typer(audits.audits_app, name="audits")  # audits draw (抽查)
app.add_typer(events.events_app, name="events")  # events partitions|archive (PostgreSQL)


@app.callback()
def _options(
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="log at INFO (migrations included)")
    ] = False,
) -> None:
    """Hallwatch central aggregator (电子监察中心)."""
    set_verbose(verbose)


@app.command()
def serve(
    config: ConfigOption = None,
    api: Annotated[bool, typer.Option(help="serve the HTTP API in this process")] = True,
    ingest: Annotated[
        bool,
        typer.Option(
            help="consume and run the jobs in this process; --no-ingest: the API alone, "
            "its answers off the ingest path (aggregators run with --no-api)"
        ),
    ] = True,
) -> None:
    """Run an aggregator process (ingest + acknowledgements, and the API)."""
    cfg = load_config(config, check_files=True)
    if not ingest and not (api and cfg.http.enabled):
        typer.echo("--no-ingest 需要 API / --no-ingest serves the API alone: it needs it", err=True)
        raise typer.Exit(2)
    try:
        failure = asyncio.run(_serve(cfg, api and cfg.http.enabled, ingest))
    except (ConfigError, CalendarConfigError) as exc:
        typer.echo(f"配置错误 / configuration error:\n{exc}", err=True)
        raise typer.Exit(2) from None
    if failure is not None:
        typer.echo(
            f"汇聚服务因任务反复失败而停止 / stopped, a task keeps failing: {failure}", err=True
        )
        raise typer.Exit(1)


async def _serve(cfg: CentralConfig, with_api: bool, ingest: bool = True) -> str | None:
    """Until SIGTERM/SIGINT or a task given up (returned, for the exit status)."""
    import uvicorn

    from central.api.app import create_app
    from central.spine.aggregator import Aggregator

    aggregator = Aggregator(cfg)
    try:
        await (aggregator.start() if ingest else aggregator.start_api_only())
    except BaseException:
        await aggregator.stop()  # what did start (the database, the consumer) is closed
        raise
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    class ApiServer(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            yield  # SIGTERM/SIGINT are ours (above): we stop this server, then the aggregator

    server = None
    if with_api:
        server = ApiServer(
            uvicorn.Config(
                create_app(aggregator.engine, tasks=aggregator.supervisor if ingest else None),
                host=cfg.http.host,
                port=cfg.http.port,
                log_level="warning",
                lifespan="off",
                # the dashboard reads X-Forwarded-For itself, from http.trusted_proxies only
                proxy_headers=False,
            )
        )
        api_task = asyncio.create_task(server.serve())
    freeze_startup_heap()  # started: what lives now lives as long as the process
    try:
        await asyncio.wait(
            [asyncio.create_task(stop.wait()), asyncio.create_task(aggregator.failed.wait())],
            return_when=asyncio.FIRST_COMPLETED,
        )
    finally:
        if server is not None:
            server.should_exit = True
            await api_task
        await aggregator.stop()
    return aggregator.failure


@app.command()
def migrate(config: ConfigOption = None) -> None:
    """Bring the database schema up to date."""
    from central.store.migrate import current_revision

    cfg = load_config(config)

    async def go() -> str | None:
        async with open_engine(cfg, migrate=True) as engine:
            return await current_revision(engine)

    typer.echo(f"schema at revision {asyncio.run(go())}")


@app.command("schema")
def schema(
    out: Annotated[Path, typer.Argument(help="directory for the JSON Schema files")],
) -> None:
    """Export the wire contract as JSON Schema files."""
    from protocols.schema import message_schemas

    out.mkdir(parents=True, exist_ok=True)
    for name, doc in message_schemas().items():
        (out / f"{name}.schema.json").write_text(json.dumps(doc, indent=2, ensure_ascii=False))
    typer.echo(f"wrote {len(message_schemas())} schemas to {out}")


def main() -> None:
    sys.exit(app())
