"""The hall page inside the gateway: started with it, fed by its journal, stopped with it."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from edge.app import Gateway
from edge.config import GatewayConfig
from edge.web.accounts import AccountStore
from hallkit.login import accounts as login_accounts
from protocols.devices import QueueEvent
from protocols.events import GeneratorSample


@pytest.fixture(autouse=True)
def cheap_hashes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(login_accounts, "SCRYPT_N", 2**10)


def config(tmp_path: Path, port: int = 0, *, enabled: bool = True) -> GatewayConfig:
    return GatewayConfig.model_validate(
        {
            "hall": "H1",
            "gateway": "gw1",
            "data_dir": str(tmp_path / "data"),
            "broker": {"port": 1},  # nothing listens: the page must not care
            "clock": {"assume_synced": True},
            "evaluator_buses": [
                {
                    "port": str(tmp_path / "ttyNONE"),
                    "devices": [{"addr": 0x81, "window": 1}, {"addr": 0x82, "window": 2}],
                }
            ],
            "queue": {"transport": str(tmp_path / "ttyQMNONE")},
            "http": {"enabled": enabled, "host": "127.0.0.1", "port": port},
        }
    )


async def board_sees_staff_log_in(gateway: Gateway, window: int, mseq: int) -> bool:
    """A queue message journaled (as the queue supervisor does) reaches the board."""
    event = QueueEvent(mseq=mseq, type="LI", raw=f"$QM,{mseq},LI", window=window, staff="100233")
    await gateway.journal.append("queue.event", event)
    for _ in range(100):
        tile = next(t for t in gateway.board.picture()["tiles"] if t["window"] == window)
        if tile["presence"] == "present":
            return True
        await asyncio.sleep(0.01)
    return False


@pytest.fixture
async def gateway(tmp_path: Path) -> AsyncIterator[Gateway]:
    AccountStore.in_data_dir(tmp_path / "data").set_password("dating", "viewer-password")
    gw = Gateway(config(tmp_path))
    await gw.start()
    try:
        yield gw
    finally:
        await gw.stop()


async def test_the_gateway_serves_its_page_and_feeds_the_board(gateway: Gateway) -> None:
    assert gateway.hall_page is not None
    async with httpx.AsyncClient(base_url=gateway.hall_page.url) as client:
        await client.post("/login", data={"username": "dating", "password": "viewer-password"})
        picture = (await client.get("/api/board")).json()
    assert [t["window"] for t in picture["tiles"]] == [1, 2]
    assert await board_sees_staff_log_in(gateway, 1, 1)


async def test_devices_rebuilt_by_a_remote_command_stay_hooked(gateway: Gateway) -> None:
    old = gateway.evaluators[0]
    await gateway.reread_devices([])
    assert gateway.evaluators[0] is not old
    assert await board_sees_staff_log_in(gateway, 2, 2)
    assert gateway.board.sources.evaluators[0] is gateway.evaluators[0]


async def test_stopping_ends_open_streams_cleanly(tmp_path: Path) -> None:
    AccountStore.in_data_dir(tmp_path / "data").set_password("dating", "viewer-password")
    gw = Gateway(config(tmp_path))
    await gw.start()
    assert gw.hall_page is not None
    url = gw.hall_page.url
    async with httpx.AsyncClient(base_url=url) as client:
        await client.post("/login", data={"username": "dating", "password": "viewer-password"})
        async with client.stream("GET", "/events") as response:
            lines = response.aiter_lines()
            while not (await anext(lines)).startswith("event: snapshot"):
                pass
            stopping = asyncio.create_task(gw.stop())
            # the stream ends with its last chunk, not cut off by the server's grace timeout
            rest = [line async for line in lines]
            await stopping
    assert not [line for line in rest if line.startswith("event:")]
    with pytest.raises(httpx.ConnectError):
        async with httpx.AsyncClient(base_url=url) as client:
            await client.get("/healthz")


async def test_a_port_in_use_leaves_the_gateway_running_without_a_page(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        gw = Gateway(config(tmp_path, taken.getsockname()[1]))
        await gw.start()
        try:
            assert gw.hall_page is None
            assert await gw.journal.append("gen.sample", GeneratorSample(n=1, run="t")) > 0
        finally:
            await gw.stop()


async def test_no_page_unless_enabled(tmp_path: Path) -> None:
    gw = Gateway(config(tmp_path, enabled=False))
    await gw.start()
    try:
        assert gw.hall_page is None
        gw.board.on_journaled(
            "queue.event", {"mseq": 1, "type": "LI", "raw": "", "window": 2, "staff": "100233"}
        )
    finally:
        await gw.stop()
