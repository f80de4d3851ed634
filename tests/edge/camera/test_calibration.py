"""Calibration and honest health through the real parts: camera worker processes on an MJPEG
stream, the gateway in this process with its hall page, a command signed by central's signer,
and the command line in its own process."""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import httpx
import pytest

from central.gateways.command_signing import CommandSigner, generate_signing_key, write_public_key
from edge.app import Gateway
from edge.camera.events import CameraEvent, CameraHealth
from edge.camera.service import CameraService
from edge.config import GatewayConfig
from edge.web.accounts import AccountStore, Role
from firmware_bridges.camera.simulator import FrameFeed, MjpegServer, hall_scene
from hallkit.login import accounts as login_accounts
from protocols.envelope import encode
from tests.edge.camera.scenes import ROOT, hall_camera
from tests.support.procs import write_yaml

FPS = 10
HALL, GATEWAY = "H1", "gw1"


def empty_hall() -> FrameFeed:
    scene = hall_scene(still_s=5.0, break_s=5.0, lead_s=1000.0)  # nobody for 1000 s
    scene.duration = 20.0
    return FrameFeed.from_scene(scene, FPS)


async def collect(service: CameraService, into: list[CameraEvent]) -> None:
    async for event in service.events():
        into.append(event)


async def until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.1)


@pytest.mark.timeout(120)
async def test_a_frozen_stream_is_its_own_health_state_and_its_frames_are_not_judged(
    tmp_path: Path,
) -> None:
    server = MjpegServer(empty_hall()).start()
    camera = hall_camera(server.url, bootstrap_still_s=1.0)
    service = CameraService([camera], tmp_path / "evidence")
    events: list[CameraEvent] = []
    collector = asyncio.create_task(collect(service, events))
    try:
        await service.start()
        health = service.health
        await until(lambda: health()[camera.id].state == "online", 30, "online")
        await until(lambda: bool(service.worker_rss()), 10, "a heartbeat with the worker's RSS")
        assert 20e6 < service.worker_rss()["w1"] < 400e6
        server.freeze()
        await until(lambda: health()[camera.id].state == "frozen", 25, "frozen")
        frozen = health()[camera.id]
        assert "冻结" in frozen.reason and frozen.advice
        counted = service._state[camera.id].frames
        verdict = await service.verdict_at(1, time.monotonic())
        assert verdict.verdict == "unknown" and "frozen" in verdict.reason
        assert service._state[camera.id].frames == counted  # the resent picture is not judged
        server.thaw()
        await until(lambda: health()[camera.id].state == "online", 15, "online again")
    finally:
        await service.stop()
        collector.cancel()
        server.stop()
    reports = [e.body for e in events if e.kind == "camera.health"]
    states = [body.state for body in reports if isinstance(body, CameraHealth)]
    assert len(states) == len(reports), reports
    assert states == ["online", "frozen", "online"], states  # no flapping in between


@pytest.fixture(autouse=True)
def cheap_hashes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(login_accounts, "SCRYPT_N", 2**10)


@pytest.fixture
def signer() -> CommandSigner:
    return CommandSigner(generate_signing_key())


@pytest.fixture
async def site(tmp_path: Path, signer: CommandSigner) -> AsyncIterator[tuple[Gateway, Path]]:
    """A gateway with one camera on two windows, none of them calibrated, its page on."""
    server = MjpegServer(empty_hall()).start()
    write_public_key(tmp_path / "command-signing.pub", signer.public_key)
    camera = hall_camera(server.url, bootstrap_still_s=1000.0, no_reference_after_s=3.0)
    data = {
        "hall": HALL,
        "gateway": GATEWAY,
        "data_dir": str(tmp_path / "data"),
        "broker": {"port": 1},  # nothing listens: not needed here
        "clock": {"assume_synced": True},
        "http": {"enabled": True, "host": "127.0.0.1", "port": 0},
        "commands": {"public_key": str(tmp_path / "command-signing.pub")},
        "cameras": {
            "cameras": [camera.model_dump(mode="json")],
            "evidence_dir": str(tmp_path / "evidence"),
        },
    }
    config_path = write_yaml(tmp_path / "edge.yaml", data)
    accounts = AccountStore.in_data_dir(tmp_path / "data")
    accounts.set_password("zhuren", "manager-password", Role.ADMIN)
    accounts.set_password("dating", "viewer-password")
    gateway = Gateway(GatewayConfig.model_validate(data))
    await gateway.start()
    try:
        yield gateway, config_path
    finally:
        await gateway.stop()
        server.stop()


@pytest.mark.timeout(180)
async def test_calibration_by_remote_command_hall_page_and_command_line(
    site: tuple[Gateway, Path],
    signer: CommandSigner,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    gateway, config_path = site
    cameras = gateway.cameras
    assert cameras is not None  # started with the gateway
    health = cameras.health
    cam = "hall-cam-1"
    # Nobody calibrated and the seats were never still and empty long enough: it says so.
    await until(lambda: health()[cam].state == "no_reference", 40, "no_reference")
    assert "calibrate --window 1" in health()[cam].advice
    assert cameras.presence()[(cam, 1)] == "unknown"

    # 1. central's signed command, for window 1
    assert gateway.commands is not None
    command = signer.issue(HALL, GATEWAY, "calibrate_camera", {"window": 1}, version=1)
    await gateway.commands.handle(encode(command))
    result = gateway.commands.results[-1]
    assert result.accepted, result
    assert "w1-staff" in result.detail and "w1-citizen" in result.detail
    assert "w2-staff" not in result.detail and "snapshot" in result.detail
    refused = signer.issue(HALL, GATEWAY, "calibrate_camera", {"window": 7}, version=2)
    await gateway.commands.handle(encode(refused))
    assert not gateway.commands.results[-1].accepted
    assert "no camera watches window 7" in gateway.commands.results[-1].detail
    await until(lambda: cameras.presence()[(cam, 1)] == "away", 20, "window 1 judged: away")
    assert health()[cam].state == "no_reference" and "w2-staff" in health()[cam].reason

    # 2. the hall manager, for window 2, from the page; a viewer may not
    page = gateway.hall_page
    assert page is not None
    async with httpx.AsyncClient(base_url=page.url) as viewer:
        await viewer.post("/login", data={"username": "dating", "password": "viewer-password"})
        denied = await viewer.post("/api/windows/2/calibrate", headers={"origin": page.url})
        assert denied.status_code == 403
    async with httpx.AsyncClient(base_url=page.url, timeout=20) as manager:
        await manager.post("/login", data={"username": "zhuren", "password": "manager-password"})
        answer = await manager.post("/api/windows/2/calibrate", headers={"origin": page.url})
        assert answer.status_code == 200, answer.text
        assert answer.json()["snapshot"] is True and "w2-staff" in answer.json()["detail"]
        picture = await manager.get("/api/windows/2/calibration")
        assert picture.status_code == 200 and picture.content[:2] == b"\xff\xd8"  # a JPEG
        tiles = {t["window"]: t for t in (await manager.get("/api/board")).json()["tiles"]}
        assert tiles[2]["camera"]["calibration"] is True
        assert (
            await manager.post("/api/windows/9/calibrate", headers={"origin": page.url})
        ).status_code == 404
    await until(lambda: health()[cam].state == "online", 20, "online once all is calibrated")

    # 3. the technician's command line, from its own connection; the worker loads the files
    caplog.set_level(logging.INFO, logger="edge.camera.service")
    done = await asyncio.to_thread(
        subprocess.run,
        [
            sys.executable,
            "-m",
            "edge.cli",
            "camera",
            "calibrate",
            "--window",
            "1",
            "-c",
            str(config_path),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr
    assert "w1-staff" in done.stdout and "w2-staff" not in done.stdout
    shot = Path(done.stdout.strip().rsplit(" ", 1)[-1])
    assert (await asyncio.to_thread(shot.read_bytes))[:2] == b"\xff\xd8"  # a JPEG
    await until(
        lambda: "references reloaded after a calibration" in caplog.text,
        20,
        "the running worker to load the command line's references",
    )
    unknown = await asyncio.to_thread(
        subprocess.run,
        [
            sys.executable,
            "-m",
            "edge.cli",
            "camera",
            "calibrate",
            "--window",
            "5",
            "-c",
            str(config_path),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert unknown.returncode == 2 and "window" in unknown.stderr


@pytest.mark.timeout(90)
async def test_a_worker_over_its_memory_limit_is_restarted_and_says_why(tmp_path: Path) -> None:
    server = MjpegServer(empty_hall()).start()
    camera = hall_camera(server.url)
    # a limit below what any worker needs: the first heartbeat exceeds it
    service = CameraService([camera], tmp_path / "evidence", worker_max_rss_mb=16)
    events: list[CameraEvent] = []
    collector = asyncio.create_task(collect(service, events))
    try:
        await service.start()
        record = service.supervisor.record("camera.worker.w1")
        await until(lambda: record.restarts >= 1, 40, "a restart for memory")
        assert record.last_error is not None and "MiB (limit 16)" in record.last_error
        await until(
            lambda: any(
                e.kind == "camera.health"
                and isinstance(e.body, CameraHealth)
                and "MiB" in e.body.reason
                for e in events
            ),
            10,
            "the camera's health to say why",
        )
    finally:
        await service.stop()
        collector.cancel()
        server.stop()


@pytest.mark.timeout(120)
async def test_a_manager_calibrates_from_the_hall_page_in_a_browser(
    site: tuple[Gateway, Path],
) -> None:
    from playwright.async_api import Error, async_playwright

    from tests.edge.web.rig import CHROMIUM, CHROMIUM_FLAGS

    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is missing: run deploy/scripts/install-browser-test-deps.sh")
    gateway, _ = site
    assert gateway.hall_page is not None
    page_url = gateway.hall_page.url
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_FLAGS)
        try:
            for user, password, manager in (
                ("dating", "viewer-password", False),
                ("zhuren", "manager-password", True),
            ):
                context = await browser.new_context(locale="zh-CN")
                context.set_default_timeout(15_000)
                errors: list[str] = []
                page = await context.new_page()

                def record(error: Error, into: list[str] = errors) -> None:
                    into.append(str(error))

                page.on("pageerror", record)
                await page.goto(page_url + "/")
                await page.fill("input[name=username]", user)
                await page.fill("input[name=password]", password)
                await page.click("button[type=submit]")
                tile = page.locator('[data-window="1"] .tile-camera')
                await tile.wait_for()
                button = tile.locator("button.camera-calibrate")
                if not manager:
                    await page.wait_for_timeout(1000)  # the session answer has come by now
                    assert await button.count() == 0  # a viewer may not calibrate
                    await context.close()
                    continue
                await button.wait_for()
                page.on("dialog", lambda dialog: asyncio.ensure_future(dialog.accept()))
                async with context.expect_page() as popup_info:
                    await button.click()
                popup = await popup_info.value
                await popup.wait_for_load_state()
                assert popup.url.endswith("/api/windows/1/calibration")
                await tile.locator('a[href="/api/windows/1/calibration"]').wait_for()
                assert errors == []
                await context.close()
        finally:
            await browser.close()
    assert gateway.board.calibrations.get(1, "").endswith(".jpg")
