"""hallwatch-central correlation …: run the correlation job by hand, recompute a hall-day,
set a hall's opening hours and window roster."""

from __future__ import annotations

import asyncio
import datetime as dt
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from central.cli.common import ConfigOption, load_config, open_engine
from central.config import CentralConfig
from hallkit.configtext import ConfigError

correlation_app = typer.Typer(
    help="关联 (correlation): service sessions, evaluations, bad-review follow-up.",
    no_args_is_help=True,
)


async def _run(cfg: CentralConfig, marks: list[tuple[str, dt.date]]) -> None:
    from central.correlation import intake
    from central.correlation.config import load_config as correlation_config
    from central.correlation.job import calendar_of, run_once

    async with open_engine(cfg, migrate=True) as engine:
        async with engine.begin() as conn:
            for hall, day in marks:
                await intake.mark_dirty(conn, hall, day)
        report = await run_once(
            engine, cfg=correlation_config(cfg.data_dir), calendar=calendar_of(cfg)
        )
    if report.skipped:
        typer.echo("另一个进程正在关联，本次跳过 / another process holds the correlation lock")
        raise typer.Exit(1)
    table = Table("项目 / item", "数量 / count")
    for label, value in (
        ("新事件 / new events", report.new_events),
        ("时钟修正 / repaired stamps", report.repaired_events),
        ("变更办件 / changed cases", report.changed_cases),
        ("重算日 / hall-days", len(report.days)),
        ("新结果 / new results", report.new_results),
        ("重发结果 / re-issued", report.reissued),
        ("新整改事项 / follow-ups opened", report.followups_opened),
        ("升级督办 / escalations", report.escalations),
    ):
        table.add_row(label, str(value))
    Console().print(table)


@correlation_app.command("run")
def run(config: ConfigOption = None) -> None:
    """Run the correlation job once: every hall-day with new input, follow-up escalation."""
    asyncio.run(_run(load_config(config, logs="warnings"), []))


@correlation_app.command("recompute")
def recompute(
    hall: Annotated[str, typer.Option(help="hall id")],
    day: Annotated[str, typer.Option(help="business day, YYYY-MM-DD")],
    config: ConfigOption = None,
) -> None:
    """Correlate one hall-day again (results change only where the outcome does)."""
    try:
        when = dt.date.fromisoformat(day)
    except ValueError:
        typer.echo(f"日期格式应为 YYYY-MM-DD / bad date {day!r}", err=True)
        raise typer.Exit(2) from None
    asyncio.run(_run(load_config(config, logs="warnings"), [(hall, when)]))


@correlation_app.command("hall-setup")
def hall_setup(
    file: Annotated[
        Path,
        typer.Argument(
            help="YAML: hall, opening [{start, end}], windows "
            "{window: department}, staff {number: name}"
        ),
    ],
    config: ConfigOption = None,
) -> None:
    """Set a hall's opening hours, window → department roster (used by the indicators) and
    staff names (shown beside staff numbers)."""
    from pydantic import ValidationError

    from central.reporting import halls
    from hallkit.configtext import parse_yaml_model

    cfg = load_config(config, logs="warnings")
    try:
        text = file.read_text(encoding="utf-8")
        setup = parse_yaml_model(halls.SetupText, text, str(file)).to_setup()
    except (ConfigError, OSError, ValidationError) as exc:
        typer.echo(f"配置错误 / bad hall setup:\n{exc}", err=True)
        raise typer.Exit(2) from None

    async def save() -> None:
        async with open_engine(cfg, migrate=True) as engine, engine.begin() as conn:
            await halls.save_setup(conn, setup, dt.datetime.now(dt.UTC))

    asyncio.run(save())
    typer.echo(
        f"{setup.hall}: {len(setup.opening)} opening periods, "
        f"{len(setup.windows)} windows in the roster"
    )
