"""hallwatch-central halls import|list: the registry of halls (names and the tree)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from central.cli.common import ConfigOption, load_config, run_with_engine

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine

    from central.reporting.registry import HallEntry

halls_app = typer.Typer(help="大厅名录 / the registry of halls.", no_args_is_help=True)


@halls_app.command("import")
def import_csv(
    file: Annotated[
        Path,
        typer.Argument(
            help="CSV (UTF-8): hall_id/大厅编号, name/名称, level/级别, parent_id/上级, "
            "region_code/区划代码, address/地址, opening_hours/办公时间"
        ),
    ],
    config: ConfigOption = None,
) -> None:
    """Add or replace halls from a CSV file; nothing is written if any row is bad."""
    from central.reporting.registry import RegistryError, put_halls, registry
    from central.reporting.registry_csv import CsvRegistryError, parse_registry_csv

    try:
        data = file.read_bytes()
    except OSError as exc:
        typer.echo(f"无法读取 / cannot read {file}: {exc}", err=True)
        raise typer.Exit(2) from None

    async def load(engine: AsyncEngine) -> int:
        async with engine.begin() as conn:
            entries = parse_registry_csv(data, await registry(conn))
            await put_halls(conn, entries, dt.datetime.now(dt.UTC))
        return len(entries)

    try:
        count = run_with_engine(
            load_config(config, logs="warnings"), load, refused=(CsvRegistryError, RegistryError)
        )
    except typer.Exit:
        typer.echo("未导入任何大厅 / nothing imported", err=True)
        raise
    typer.echo(f"已导入 {count} 个大厅 / {count} halls imported")


@halls_app.command("list")
def list_halls(config: ConfigOption = None) -> None:
    """The registry as a tree: id, level, 名称, region code."""
    from central.reporting.registry import children_of, registry

    async def read(engine: AsyncEngine) -> dict[str, HallEntry]:
        async with engine.connect() as conn:
            return await registry(conn)

    entries = run_with_engine(load_config(config, logs="warnings"), read)
    below = children_of(entries.values())

    def show(hall: str, depth: int) -> None:
        e = entries[hall]
        typer.echo(f"{'  ' * depth}{e.hall_id}\t{e.level}\t{e.name}\t{e.region_code}")
        for child in sorted(below.get(hall, ())):
            show(child, depth + 1)

    for top in sorted(h for h, e in entries.items() if e.parent_id is None):
        show(top, 0)
