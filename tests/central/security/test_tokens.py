"""API tokens on SQLite and PostgreSQL: they expire (90 days by default), can be listed without
being shown, and revoked by their id; a revoked or expired token opens nothing."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine
from typer.testing import CliRunner

from central.api.app import create_app
from central.cli import app as cli
from central.security.tokens import (
    Role,
    TokenError,
    create_token,
    list_tokens,
    resolve,
    revoke_token,
)
from central.store.db import make_engine
from central.store.migrate import upgrade


@pytest.fixture
def database_at_head() -> bool:
    return True  # every test migrates first: start from the migrated template


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    eng = make_engine(database_url)
    await upgrade(eng)
    yield eng
    await eng.dispose()


async def gateways_status(engine: AsyncEngine, token: str) -> int:
    transport = httpx.ASGITransport(app=create_app(engine))
    async with httpx.AsyncClient(transport=transport, base_url="http://central.test") as c:
        reply = await c.get("/api/v1/gateways", headers={"Authorization": f"Bearer {token}"})
    return reply.status_code


async def test_tokens_expire_by_default_are_listed_hashed_and_revoked_by_id(
    engine: AsyncEngine,
) -> None:
    before = dt.datetime.now(dt.UTC)
    token = await create_token(engine, Role.TECHNICIAN, label="运维 张工")
    other = await create_token(
        engine, Role.HALL_MANAGER, hall="H1", label="大厅", lifetime=dt.timedelta(days=7)
    )
    assert await gateways_status(engine, token) == 200
    listed = {t.label: t for t in await list_tokens(engine)}
    tech = listed["运维 张工"]
    assert tech.expires_at is not None
    assert dt.timedelta(days=90) <= tech.expires_at - before < dt.timedelta(days=90, minutes=1)
    hall = listed["大厅"]
    assert hall.expires_at is not None
    assert hall.expires_at - hall.created_at == dt.timedelta(days=7)
    assert all(token not in repr(t) and other not in repr(t) for t in listed.values())
    assert tech.state(dt.datetime.now(dt.UTC)) == "valid"

    with pytest.raises(TokenError):
        await revoke_token(engine, tech.id[:4])  # too short to name one token safely
    revoked = await revoke_token(engine, tech.id)
    assert revoked.state(dt.datetime.now(dt.UTC)) == "revoked"
    assert await resolve(engine, token) is None
    assert await gateways_status(engine, token) == 401
    assert (await resolve(engine, other)) is not None  # only that one
    assert (await revoke_token(engine, token)).revoked_at == revoked.revoked_at  # idempotent
    with pytest.raises(TokenError):
        await revoke_token(engine, "0" * 12 if not tech.id.startswith("0" * 12) else "f" * 12)


async def test_an_expired_token_opens_nothing(engine: AsyncEngine) -> None:
    token = await create_token(engine, Role.SUPERVISOR, lifetime=dt.timedelta(seconds=2))
    expires = (await list_tokens(engine))[0].expires_at
    assert expires is not None
    if dt.datetime.now(dt.UTC) < expires:  # a loaded host may already be past it
        assert await resolve(engine, token) is not None
    await asyncio.sleep(max(0.0, (expires - dt.datetime.now(dt.UTC)).total_seconds()) + 0.01)
    assert await resolve(engine, token) is None
    assert await gateways_status(engine, token) == 401
    with pytest.raises(TokenError):
        await create_token(engine, Role.SUPERVISOR, lifetime=dt.timedelta(days=4000))


def test_cli_create_list_revoke(tmp_path: Path) -> None:
    cfg = tmp_path / "central.yaml"
    cfg.write_text(f"database_url: sqlite+aiosqlite:///{tmp_path / 'c.db'}\ndata_dir: {tmp_path}\n")
    runner = CliRunner()
    made = runner.invoke(
        cli,
        [
            "token",
            "create",
            "--role",
            "technician",
            "--label",
            "laptop",
            "--days",
            "30",
            "-c",
            str(cfg),
        ],
    )
    assert made.exit_code == 0, made.output
    token = made.output.strip()
    listed = runner.invoke(cli, ["token", "list", "-c", str(cfg)])
    assert listed.exit_code == 0 and token not in listed.output
    (line,) = listed.output.splitlines()
    token_id = line.split()[0]
    expected = (dt.datetime.now(dt.UTC) + dt.timedelta(days=30)).date()
    assert "laptop" in line and line.endswith("valid")
    assert any(f"expires {d}" in line for d in (expected, expected - dt.timedelta(days=1)))
    revoked = runner.invoke(cli, ["token", "revoke", token_id, "-c", str(cfg)])
    assert revoked.exit_code == 0 and "revoked" in revoked.output
    assert runner.invoke(cli, ["token", "list", "-c", str(cfg)]).output.strip().endswith("revoked")
    unknown = runner.invoke(cli, ["token", "revoke", "abcdef0123", "-c", str(cfg)])
    assert unknown.exit_code == 2
