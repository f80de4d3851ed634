"""The central API over real storage: tokens, role scope, filters, paging."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from central.api.app import create_app
from central.security.tokens import Role, create_token
from central.spine.ingest import Ingestor
from central.spine.registry import register
from central.store.db import make_engine
from central.store.migrate import upgrade
from tests.central.spine.test_ingest import message
from tests.support.hallevents import Gateway, health, key_press, queue


@pytest.fixture
def database_at_head() -> bool:
    return True  # every test migrates first: start from the migrated template


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    eng = make_engine(database_url)
    await upgrade(eng)
    await register(eng, "H1", "gw1")
    await register(eng, "H2", "gw2")
    ingestor = Ingestor(eng)
    await ingestor.ingest([message(range(1, 121))])
    await ingestor.ingest([message(range(1, 11), hall="H2", gateway="gw2")])
    yield eng
    await eng.dispose()


@pytest.fixture
async def client(engine: AsyncEngine) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=create_app(engine))
    async with httpx.AsyncClient(transport=transport, base_url="http://central") as c:
        yield c


async def bearer(
    engine: AsyncEngine,
    role: Role,
    *,
    hall: str | None = None,
    department: str | None = None,
    label: str = "",
) -> dict[str, str]:
    token = await create_token(engine, role, hall=hall, department=department, label=label)
    return {"Authorization": f"Bearer {token}"}


async def test_no_or_bad_token_is_refused(client: httpx.AsyncClient) -> None:
    assert (await client.get("/api/v1/events")).status_code == 401
    bad = {"Authorization": "Bearer hwt_not-a-real-token"}
    assert (await client.get("/api/v1/gateways", headers=bad)).status_code == 401


async def test_supervisor_pages_through_everything_in_order(
    client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    headers = await bearer(engine, Role.SUPERVISOR)
    seen: list[tuple[str, int]] = []
    cursor = None
    while True:
        params: dict[str, str | int] = {"limit": 50}
        if cursor:
            params["cursor"] = cursor
        page = (await client.get("/api/v1/events", headers=headers, params=params)).json()
        seen += [(i["gateway"], i["seq"]) for i in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert len(seen) == 130 and len(set(seen)) == 130
    filtered = (
        await client.get(
            "/api/v1/events", headers=headers, params={"gateway": "gw2", "kind": "gen."}
        )
    ).json()
    assert [i["seq"] for i in filtered["items"]] == list(range(1, 11))


async def test_hall_manager_sees_only_own_hall(
    client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    headers = await bearer(engine, Role.HALL_MANAGER, hall="H2")
    items = (await client.get("/api/v1/events", headers=headers)).json()["items"]
    assert {i["hall"] for i in items} == {"H2"}
    assert (
        await client.get("/api/v1/events", headers=headers, params={"hall": "H1"})
    ).status_code == 403
    gws = (await client.get("/api/v1/gateways", headers=headers)).json()
    assert [g["gateway"] for g in gws] == ["gw2"]
    assert (await client.get("/api/v1/quarantine", headers=headers)).status_code == 403


async def test_gateways_report_committed_seq(
    client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    headers = await bearer(engine, Role.TECHNICIAN)
    gws = {g["gateway"]: g for g in (await client.get("/api/v1/gateways", headers=headers)).json()}
    assert gws["gw1"]["committed_through"] == 120 and gws["gw2"]["committed_through"] == 10
    assert gws["gw1"]["online"] is False  # no state message yet


def test_token_create_cli_prints_a_working_token(tmp_path: Path) -> None:
    cfg = tmp_path / "central.yaml"
    cfg.write_text(f"database_url: sqlite+aiosqlite:///{tmp_path / 'c.db'}\ndata_dir: {tmp_path}\n")
    cli = [str(Path(sys.executable).parent / "hallwatch-central")]
    out = subprocess.run(
        [*cli, "token", "create", "--role", "supervisor", "-c", str(cfg)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    assert out.startswith("hwt_") and len(out) > 40
    bad = subprocess.run(
        [*cli, "token", "create", "--role", "hall_manager", "-c", str(cfg)],
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 2 and "--hall" in bad.stderr


async def test_a_technician_reads_device_health_never_peoples_events(engine: AsyncEngine) -> None:
    """Raw events: a technician's token gets the device-health kinds only; the quarantine
    without the raw start of each payload (device text can name people)."""
    gw = Gateway("H3", "gw3")
    await register(engine, "H3", "gw3")
    at = datetime.now(UTC)
    await Ingestor(engine).ingest(
        [
            gw.batch(
                [
                    ("evaluator.health", health(3, stuck_key=True), at),
                    ("evaluator.key", key_press(3, 5), at),
                    ("queue.event", queue(7, "FN", ticket="A007", window=3, staff="100231"), at),
                    ("evaluator.key", {"window": 3, "staff": "100231"}, at),
                ]
            )
        ]
    )  # refused: quarantined
    transport = httpx.ASGITransport(app=create_app(engine))
    async with httpx.AsyncClient(transport=transport, base_url="http://central") as c:
        tech, sup = await bearer(engine, Role.TECHNICIAN), await bearer(engine, Role.SUPERVISOR)
        mine = (await c.get("/api/v1/events", headers=tech, params={"hall": "H3"})).json()
        assert [i["kind"] for i in mine["items"]] == ["evaluator.health"]
        everything = (await c.get("/api/v1/events", headers=sup, params={"hall": "H3"})).json()
        assert len(everything["items"]) == 3
        assert (await c.get("/api/v1/events", headers=tech, params={"kind": "queue."})).json()[
            "items"
        ] == []
        refused = (await c.get("/api/v1/quarantine", headers=tech)).json()
        assert refused and all(q["payload_head"] is None for q in refused)
        assert "100231" not in json.dumps(refused)
        seen = (await c.get("/api/v1/quarantine", headers=sup)).json()
        assert any("100231" in (q["payload_head"] or "") for q in seen)


async def test_events_received_long_after_they_happened_are_history(
    client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    """补传: a backlog's events (stamped long before central received them) are marked, a live
    one is not."""
    await Ingestor(engine).ingest([message([11], hall="H2", gateway="gw2", utc=datetime.now(UTC))])
    headers = await bearer(engine, Role.SUPERVISOR)
    page = await client.get("/api/v1/events", headers=headers, params={"gateway": "gw2"})
    history = {i["seq"]: i["history"] for i in page.json()["items"]}
    assert history == {**dict.fromkeys(range(1, 11), True), 11: False}
