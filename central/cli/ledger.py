"""hallwatch-central verify-ledger / ledger head / ledger seal / ledger append."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from central.cli.common import ConfigOption, load_config, open_engine

if TYPE_CHECKING:
    from central.records.ledger.findings import Report
    from central.records.ledger.heads import Head

app = typer.Typer()
ledger_app = typer.Typer(help="The tamper-evident ledger (台账哈希链).", no_args_is_help=True)
app.add_typer(ledger_app, name="ledger")

HallOption = Annotated[str | None, typer.Option(help="only this hall")]


def _day(text: str | None) -> dt.date | None:
    if text is None:
        return None
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        typer.echo(f"日期格式应为 YYYY-MM-DD / --day must be YYYY-MM-DD, not {text!r}", err=True)
        raise typer.Exit(2) from None


@app.command("verify-ledger")
def verify_ledger(
    hall: HallOption = None,
    day: Annotated[
        str | None, typer.Option(help="only this business day (YYYY-MM-DD) of entry")
    ] = None,
    heads: Annotated[
        Path | None,
        typer.Option(help="published chain heads to check against (the output of `ledger head`)"),
    ] = None,
    seals: Annotated[
        bool, typer.Option(help="also check the heads sealed into the seal file (ledger.seal_file)")
    ] = True,
    config: ConfigOption = None,
) -> None:
    """Recompute the ledger: report every row changed, deleted or inserted behind the
    application's back (exit code 1 if anything is wrong)."""
    from central.records.ledger.heads import parse_heads
    from central.records.ledger.verify import verify

    cfg = load_config(config)
    on_day = _day(day)
    published: list[Head] = []
    files = [heads] if heads is not None else []
    if seals and cfg.seal_file.exists():
        files.append(cfg.seal_file)
    for path in files:
        try:
            published += parse_heads(path.read_text(encoding="utf-8").splitlines())
        except (OSError, ValueError, KeyError) as exc:
            typer.echo(f"无法读取链头文件 / cannot read {path}: {exc}", err=True)
            raise typer.Exit(2) from None
    if hall is not None or on_day is not None:
        published = [h for h in published if hall in (None, h.hall) and on_day in (None, h.day)]

    async def go() -> Report:
        async with open_engine(cfg) as engine:
            return await verify(engine, hall, on_day, published)

    report = asyncio.run(go())
    for finding in report.findings:
        typer.echo(finding.line())
    summary = (
        f"{report.chains} chain(s), {report.entries} entries checked; "
        f"{report.pending} record(s) not yet chained"
    )
    if report.ok:
        typer.echo(f"账本完好 / ledger intact: {summary}")
        return
    typer.echo(
        f"账本异常 / ledger NOT intact: {len(report.findings)} problem(s); {summary}", err=True
    )
    raise typer.Exit(1)


@ledger_app.command("head")
def ledger_head(
    day: Annotated[str, typer.Option(help="business day (YYYY-MM-DD)")],
    hall: HallOption = None,
    config: ConfigOption = None,
) -> None:
    """Print each hall's chain head for a day, one JSON object a line (publish or sign it
    once ``final`` is true: the day is over and no entry can join its chains)."""
    from central.records.ledger.heads import heads
    from central.rules.workdays import business_date

    cfg = load_config(config)
    on_day = _day(day)
    assert on_day is not None

    async def go() -> list[Head]:
        async with open_engine(cfg) as engine:
            return await heads(engine, on_day, hall)

    # entries go to the day of the pass that chains them; a pass takes seconds, so a minute
    # after midnight nothing can join the day before any more
    settled = business_date(dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1))
    for head in asyncio.run(go()):
        typer.echo(json.dumps({**head.as_json(), "final": on_day < settled}, ensure_ascii=False))


@ledger_app.command("seal")
def ledger_seal(config: ConfigOption = None) -> None:
    """Seal every grown chain of today and yesterday now (the aggregator does this every
    ledger.seal_every_s), into the database and the seal file."""
    from central.records.ledger.heads import seal_once

    cfg = load_config(config)

    async def go() -> list[Head]:
        async with open_engine(cfg) as engine:
            return await seal_once(engine, mirror=cfg.seal_file)

    sealed = asyncio.run(go())
    for head in sealed:
        typer.echo(json.dumps(head.as_json(), ensure_ascii=False))
    typer.echo(f"{len(sealed)} chain head(s) sealed into {cfg.seal_file}", err=True)


@ledger_app.command("append")
def ledger_append(config: ConfigOption = None) -> None:
    """Chain what has been stored since the last pass (the aggregator does this by itself)."""
    from central.records.ledger.append import append_once

    cfg = load_config(config)

    async def go() -> int:
        async with open_engine(cfg, migrate=True) as engine:
            total = 0
            while added := await append_once(engine):
                total += added
            return total

    typer.echo(f"{asyncio.run(go())} entries added")
