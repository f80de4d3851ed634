"""hallwatch-central screen add|list|revoke: a one-time link printed once, an unknown hall
refused, the list's states, and `token create`/`user add` never making a screen."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from central.cli import app


def test_add_list_revoke_and_no_screen_by_another_door(tmp_path: Path) -> None:
    config = tmp_path / "central.yaml"
    db = tmp_path / "central.db"
    config.write_text(f"database_url: sqlite+aiosqlite:///{db}\ndata_dir: {tmp_path / 'data'}\n")
    runner = CliRunner()

    def run(*args: str) -> tuple[int, str]:
        result = runner.invoke(app, [*args, "-c", str(config)])
        return result.exit_code, result.output

    code, out = run("screen", "add", "wall-1", "--url", "https://jiancha.example/")
    assert code == 0, out
    assert "https://jiancha.example/wall/enroll?code=hwe_" in out
    code, out = run("screen", "add", "wall-1")
    assert code == 2 and "exists" in out
    code, out = run("screen", "add", "wall-2", "--hall", "NOWHERE")  # a typo is refused
    assert code == 2 and "NOWHERE" in out
    code, out = run("screen", "list")
    assert code == 0 and "wall-1" in out and "waiting" in out and "wall-2" not in out
    code, out = run("screen", "revoke", "wall-1")
    assert code == 0 and "revoked" in out
    assert "revoked" in run("screen", "list")[1]
    code, out = run("screen", "revoke", "nobody")
    assert code == 2 and "no screen" in out
    code, out = run("token", "create", "--role", "screen")
    assert code == 2 and "screen add" in out
