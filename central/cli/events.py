"""hallwatch-central events partitions | archive: the raw events' months on PostgreSQL (list
with sizes; archive and drop the months before a given one, per site policy)."""

from __future__ import annotations

import datetime as dt
import re
from typing import TYPE_CHECKING, Annotated

import typer

from central.cli.common import ConfigOption, load_config, run_with_engine

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine

    from central.records.event_archive import Archived
    from central.store.partitions import Partition

events_app = typer.Typer(help="原始事件按月分区 / raw events by month.", no_args_is_help=True)


def _size(count: int) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if count < 1024:
            return f"{count:.0f} {unit}"
        count //= 1024
    return f"{count} TB"


def _line(partition: Partition) -> str:
    month = "default" if partition.month is None else partition.month.isoformat()[:7]
    state = "attached" if partition.attached else "DETACHED (archive pending)"
    rows = "?" if partition.rows < 0 else f"≈{partition.rows}"
    return f"{month:8} {partition.name:24} {rows:>12} rows {_size(partition.bytes):>8}  {state}"


@events_app.command("partitions")
def list_months(config: ConfigOption = None) -> None:
    """List the months of raw events (rows estimated, size with indexes)."""
    from central.store.partitions import list_partitions

    cfg = load_config(config, logs="warnings")

    async def work(engine: AsyncEngine) -> list[Partition]:
        async with engine.connect() as conn:
            return await list_partitions(conn)

    found = run_with_engine(cfg, work)
    if not found:
        typer.echo("事件表未分区（SQLite）/ events are one plain table (SQLite)")
        return
    typer.echo("月份      分区 partition              行数 rows      大小 size")
    for partition in found:
        typer.echo(_line(partition))


@events_app.command("archive")
def archive_months(
    before: Annotated[str, typer.Option(help="archive every month before this one, YYYY-MM")],
    yes: Annotated[bool, typer.Option("--yes", help="act (default: only show the plan)")] = False,
    config: ConfigOption = None,
) -> None:
    """Write the months before --before to the archive directory, verify, then drop them."""
    from central.records import event_archive

    if re.fullmatch(r"\d{4}-\d{2}", before) is None:
        typer.echo(f"月份格式应为 YYYY-MM / bad month {before!r}", err=True)
        raise typer.Exit(2)
    try:
        first_kept = dt.date.fromisoformat(f"{before}-01")
    except ValueError:
        typer.echo(f"月份无效 / bad month {before!r}", err=True)
        raise typer.Exit(2) from None
    cfg = load_config(config, logs="warnings")
    if not cfg.database_url.startswith("postgresql"):
        typer.echo("仅适用于 PostgreSQL / PostgreSQL only: SQLite keeps one table", err=True)
        raise typer.Exit(2)

    async def plan(engine: AsyncEngine) -> list[Partition]:
        return await event_archive.due(engine, first_kept)

    async def act(engine: AsyncEngine) -> list[Archived]:
        return await event_archive.archive(engine, first_kept, cfg.archive_dir)

    if not yes:
        months = run_with_engine(cfg, plan)
        for partition in months:
            typer.echo(_line(partition))
        typer.echo(
            f"试运行：{len(months)} 个月将归档到 {cfg.archive_dir}，加 --yes 执行 / dry run: "
            f"{len(months)} month(s) would be archived; --yes to act"
        )
        return
    for done in run_with_engine(cfg, act, refused=(event_archive.ArchiveError,)):
        typer.echo(f"{done.partition}: {done.rows} rows → {done.file} sha256 {done.sha256}")


@events_app.command("verify-archive")
def verify_archive(config: ConfigOption = None) -> None:
    """Check every archived month's file against the SHA-256 in the archive's manifest."""
    from central.records.event_archive import check_archive, read_manifest

    cfg = load_config(config, logs="warnings")
    problems = check_archive(cfg.archive_dir)
    for problem in problems:
        typer.echo(f"不符 / mismatch: {problem}", err=True)
    if problems:
        raise typer.Exit(1)
    count = len(read_manifest(cfg.archive_dir))
    typer.echo(f"{count} 个归档月份完好 / {count} archived month(s) match the manifest")
