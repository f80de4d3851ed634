"""hallwatch-central cases …: import the approval system's CSV, run the ladder by hand."""

from __future__ import annotations

import asyncio
import datetime as dt
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from central.cli.common import ConfigOption, load_config, open_engine

cases_app = typer.Typer(
    help="办件 (cases): CSV import and the time-limit ladder.", no_args_is_help=True
)

MAX_SHOWN = 200  # bad rows listed one by one; the rest are only counted


@cases_app.command("import")
def import_(
    file: Annotated[Path, typer.Argument(help="CSV file exported by the approval system")],
    encoding: Annotated[
        str, typer.Option(help="auto | utf-8 | gb18030 (Excel on a Chinese Windows writes GB18030)")
    ] = "auto",
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="validate and report what would change; store nothing")
    ] = False,
    config: ConfigOption = None,
) -> None:
    """Import cases from a CSV file: bad rows are listed with their line numbers and skipped.

    Exit status 0: every row imported; 1: some rows were rejected (the others are stored);
    2: the file or the configuration cannot be used."""
    from central.cases.context import CaseContext
    from central.cases.csvfeed import CsvError, ImportReport, import_csv, read
    from hallkit.clock import utc_now

    cfg = load_config(config, logs="warnings")
    out = Console(soft_wrap=True)
    err = Console(stderr=True, soft_wrap=True)  # a bad row stays on one line for grep
    try:
        data = read(file)
        context = CaseContext.from_config(cfg)
    except (CsvError, ValueError) as exc:
        err.print(f"[red]{exc}[/red]", highlight=False)
        raise typer.Exit(2) from None

    async def go() -> ImportReport:
        async with open_engine(cfg, migrate=True) as engine:
            with Progress(
                TextColumn("导入办件 / importing"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                console=err,
                transient=False,
            ) as bar:
                task = bar.add_task("rows", total=None)

                def progress(done: int, total: int) -> None:
                    bar.update(task, completed=done, total=total)

                return await import_csv(
                    engine,
                    data,
                    context.masker,
                    encoding=encoding,
                    dry_run=dry_run,
                    now=utc_now(),
                    progress=progress,
                )

    try:
        report = asyncio.run(go())
    except CsvError as exc:
        err.print(f"[red]{exc}[/red]", highlight=False)
        raise typer.Exit(2) from None
    for bad in report.rejected[:MAX_SHOWN]:
        who = f" {bad.case_no}" if bad.case_no else ""
        err.print(
            f"第 {bad.index} 行{who}: " + "; ".join(bad.errors), highlight=False, markup=False
        )
    if len(report.rejected) > MAX_SHOWN:
        err.print(f"… {len(report.rejected) - MAX_SHOWN} more rejected rows", highlight=False)
    if report.ignored_columns:
        err.print(
            "忽略的列 / ignored columns: " + ", ".join(report.ignored_columns),
            highlight=False,
            markup=False,
        )
    c = report.counts
    mode = "（试运行，未保存 / dry run, nothing stored）" if report.dry_run else ""
    out.print(
        f"{file.name}: {report.rows} 行 / rows ({report.encoding}){mode}; "
        f"新增 created {c['created']}, 更新 revised {c['revised']}, "
        f"未变 unchanged {c['unchanged']}, 拒绝 rejected {c['rejected']}",
        highlight=False,
        markup=False,
    )
    raise typer.Exit(1 if report.rejected else 0)


@cases_app.command("ladder")
def ladder(
    today: Annotated[
        str | None,
        typer.Option(help="business date to run for (YYYY-MM-DD); default: today in Beijing"),
    ] = None,
    config: ConfigOption = None,
) -> None:
    """Run the time-limit ladder job once and say how many steps it recorded."""
    from central.cases.ladder import SHARES, LadderRun, calendar_from, run_once
    from central.rules.workdays import CalendarError, business_date
    from hallkit.clock import utc_now

    cfg = load_config(config, logs="warnings")
    try:
        day = dt.date.fromisoformat(today) if today else business_date(utc_now())
        calendar = calendar_from(cfg.rules.calendar_overrides)
    except (ValueError, CalendarError) as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from None

    async def go() -> LadderRun:
        async with open_engine(cfg, migrate=True) as engine:
            return await run_once(engine, day, calendar, cfg.rules.ladder)

    run = asyncio.run(go())
    typer.echo(
        f"{day}: {run.cases} cases looked at, {run.steps_recorded} steps recorded"
        + (
            f" ({len(run.skipped_shares)} of {SHARES} shares of halls held by another process)"
            if run.skipped
            else ""
        )
    )
    for case_no, why in list(run.failed.items())[:MAX_SHOWN]:
        typer.echo(f"{case_no}: {why}", err=True)
    raise typer.Exit(1 if run.failed else 0)
