"""hallwatch-central correlation …: hall setup from YAML (times as people write them), a run by
hand, a recompute, a bad file."""

from __future__ import annotations

import asyncio
from pathlib import Path

from typer.testing import CliRunner

from central.cli import app
from central.reporting import halls
from central.rules.indicators import HallSetup
from central.store.db import make_engine


def _stored(url: str) -> dict[str, HallSetup]:
    async def read() -> dict[str, HallSetup]:
        engine = make_engine(url)
        try:
            async with engine.connect() as conn:
                return await halls.stored_setups(conn)
        finally:
            await engine.dispose()

    return asyncio.run(read())


def test_hall_setup_run_and_recompute(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'central.db'}"
    config = tmp_path / "central.yaml"
    config.write_text(f"database_url: {url}\ndata_dir: {tmp_path / 'data'}\n")
    setup = tmp_path / "hall.yaml"
    # unquoted 13:00 is the integer 780 to YAML 1.1: it must still mean one o'clock
    setup.write_text(
        "hall: H1\nopening:\n  - {start: 09:00, end: 12:00}\n"
        "  - {start: 13:00, end: 17:30}\nwindows: {'1': 市场监管局, '2': 人社局}\n"
        "staff: {'000101': 王芳}\n"
    )
    runner = CliRunner()
    result = runner.invoke(app, ["correlation", "hall-setup", str(setup), "-c", str(config)])
    assert result.exit_code == 0, result.output
    stored = _stored(url)["H1"]
    assert [(p.start.isoformat(), p.end.isoformat()) for p in stored.opening] == [
        ("09:00:00", "12:00:00"),
        ("13:00:00", "17:30:00"),
    ]
    assert stored.windows == {"1": "市场监管局", "2": "人社局"}
    assert stored.staff == {"000101": "王芳"}

    result = runner.invoke(app, ["correlation", "run", "-c", str(config)])
    assert result.exit_code == 0, result.output
    assert "re-issued" in result.output
    result = runner.invoke(
        app, ["correlation", "recompute", "--hall", "H1", "--day", "2026-11-20", "-c", str(config)]
    )
    assert result.exit_code == 0 and "hall-days" in result.output, result.output

    setup.write_text("hall: H1\nopening:\n  - {start: '12:00', end: '09:00'}\n")
    result = runner.invoke(app, ["correlation", "hall-setup", str(setup), "-c", str(config)])
    assert result.exit_code == 2 and "bad hall setup" in result.output
    setup.write_text("hall: H1\nopening: [{start: '09:00', end: '12:00'}]\nstaff: {000101: 王芳}\n")
    result = runner.invoke(app, ["correlation", "hall-setup", str(setup), "-c", str(config)])
    assert result.exit_code == 2 and "quote staff numbers" in result.output, result.output
    bad = runner.invoke(
        app, ["correlation", "recompute", "--hall", "H1", "--day", "20.11.", "-c", str(config)]
    )
    assert bad.exit_code == 2
