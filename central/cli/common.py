"""What every hallwatch-central subcommand shares: the --config option, loading the config,
and an engine that is disposed of whatever happens."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal, TypeVar

import typer

from central.config import CentralConfig, load
from hallkit.configtext import ConfigError

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine

T = TypeVar("T")

ConfigOption = Annotated[Path | None, typer.Option("--config", "-c", help="central YAML config")]

# "config": log at the config's log_level (the aggregator and most commands);
# "warnings": only warnings, so progress bars and tables stay readable;
# "untouched": leave logging alone (the gateway and broker commands print their own lines)
LogSetup = Literal["config", "warnings", "untouched"]

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

# loggers whose INFO lines would greet every command (Alembic announces its context and each
# migration it runs); shown with `hallwatch-central -v`
CHATTY_LOGGERS = ("alembic",)


class _Verbosity:
    """Set once by the top-level ``-v`` option, before any subcommand runs."""

    verbose = False


def set_verbose(verbose: bool) -> None:
    _Verbosity.verbose = verbose


def configure_logging(setup: LogSetup, level: str | int) -> None:
    """Logging for one command: INFO everywhere with ``-v``; otherwise ``setup``, with the
    migration chatter kept to warnings."""
    if _Verbosity.verbose:
        logging.basicConfig(level=logging.INFO, format=LOG_FORMAT)
        logging.getLogger().setLevel(logging.INFO)
        return
    if setup == "config":
        logging.basicConfig(level=level, format=LOG_FORMAT)
    elif setup == "warnings":
        logging.basicConfig(level=logging.WARNING, format=LOG_FORMAT)
    for name in CHATTY_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)


def load_config(
    path: Path | None, *, check_files: bool = False, logs: LogSetup = "config"
) -> CentralConfig:
    """The central config, or exit 2 with the configuration error (it names the YAML line)."""
    try:
        cfg = load(path, check_files=check_files)
    except ConfigError as exc:
        typer.echo(f"配置错误 / configuration error:\n{exc}", err=True)
        raise typer.Exit(2) from None
    configure_logging(logs, cfg.log_level)
    if cfg.database_url.startswith("sqlite"):
        cfg.data_dir.mkdir(parents=True, exist_ok=True)
    return cfg


@asynccontextmanager
async def open_engine(cfg: CentralConfig, *, migrate: bool = False) -> AsyncIterator[AsyncEngine]:
    """An engine on the config's database (brought up to date first with ``migrate``)."""
    from central.store.db import make_engine
    from central.store.migrate import upgrade

    engine = make_engine(cfg.database_url)
    try:
        if migrate:
            await upgrade(engine)
        yield engine
    finally:
        await engine.dispose()


def run_with_engine(
    cfg: CentralConfig,
    work: Callable[[AsyncEngine], Awaitable[T]],
    *,
    refused: tuple[type[Exception], ...] = (ValueError,),
) -> T:
    """Run ``work(engine)`` on a migrated database; a ``refused`` error → its message, exit 2."""

    async def go() -> T:
        async with open_engine(cfg, migrate=True) as engine:
            return await work(engine)

    try:
        return asyncio.run(go())
    except refused as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from None
