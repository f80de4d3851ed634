"""On-demand evidence (调取取证) through the API of a running central, for the end-to-end
evidence test (tests/edge/camera/test_evidence_upload.py), which has the gateway, the camera
stream, the broker and central up already: a supervisor asks for window 1's picture and a clip;
the request ends ``done`` with the SHA-256 of bytes that are in central's vault. A window no
camera watches and a camera that went down end ``failed`` with the reason, never waiting
forever. Only supervisors may ask."""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx

from central.api.app import create_app
from central.gateways.command_signing import (
    generate_signing_key,
    write_public_key,
    write_signing_key,
)
from central.records.evidence import EvidenceVault
from central.security.tokens import Role, create_token
from central.store.db import make_engine


def share_signing_key(central_data_dir: Path, public_key: Path) -> Path:
    """Central's command key made ahead (central loads it), its public half for the gateway."""
    key = generate_signing_key()
    write_signing_key(central_data_dir / "command-signing.key", key)
    write_public_key(public_key, key)
    return public_key


async def _until_settled(
    http: httpx.AsyncClient, auth: dict[str, str], request_id: str, timeout: float
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        found: dict[str, Any] = (
            await http.get(f"/api/v1/evidence-requests/{request_id}", headers=auth)
        ).json()
        if found["state"] in ("done", "failed"):
            return found
        assert time.monotonic() < deadline, f"request still {found['state']} after {timeout} s"
        await asyncio.sleep(0.3)


async def _ask(
    http: httpx.AsyncClient, auth: dict[str, str], window: int, clip_s: int = 0
) -> dict[str, Any]:
    answer = await http.post(
        "/api/v1/evidence-requests",
        json={"hall": "H1", "window": window, "clip_s": clip_s},
        headers=auth,
    )
    assert answer.status_code == 202, answer.text
    body: dict[str, Any] = answer.json()
    assert body["state"] in ("queued", "sent") and body["requested_by"].startswith("supervisor")
    return body


@asynccontextmanager
async def supervisor_api(url: str, data_dir: Path) -> AsyncIterator[tuple[httpx.AsyncClient, Any]]:
    """Central's API on its database and vault, and a supervisor's bearer header."""
    engine = make_engine(url)
    try:
        app = create_app(engine)
        app.state.evidence = EvidenceVault.in_data_dir(data_dir)
        auth = {"Authorization": f"Bearer {await create_token(engine, Role.SUPERVISOR)}"}
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://central"
        ) as http:
            for role, hall in ((Role.TECHNICIAN, None), (Role.HALL_MANAGER, "H1")):
                other = {"Authorization": f"Bearer {await create_token(engine, role, hall=hall)}"}
                refused = await http.post(
                    "/api/v1/evidence-requests", json={"hall": "H1", "window": 1}, headers=other
                )
                assert refused.status_code == 403  # supervisors only
            yield http, auth
    finally:
        await engine.dispose()


async def ask_while_the_camera_is_live(url: str, data_dir: Path) -> dict[str, Any]:
    """Window 1's picture and a 2 s clip, in the vault; window 7 (no camera) refused. The
    request that ended ``done``."""
    vault = EvidenceVault.in_data_dir(data_dir)
    async with supervisor_api(url, data_dir) as (http, auth):
        nowhere = await http.post(
            "/api/v1/evidence-requests", json={"hall": "H9", "window": 1}, headers=auth
        )
        assert nowhere.status_code == 422 and "H9" in nowhere.json()["detail"]
        asked = await _ask(http, auth, 1, clip_s=2)
        done = await _until_settled(http, auth, asked["id"], 60)
        assert done["state"] == "done", done
        picture = await http.get(done["snapshot_url"], headers=auth)
        assert picture.status_code == 200
        assert hashlib.sha256(picture.content).hexdigest() == done["snapshot_sha256"]
        for sha in (done["snapshot_sha256"], done["clip_sha256"]):
            assert hashlib.sha256(vault.path_for(sha).read_bytes()).hexdigest() == sha
        listed = (await http.get("/api/v1/halls/H1/evidence-requests", headers=auth)).json()
        assert [r["id"] for r in listed] == [asked["id"]]

        unwatched = await _until_settled(http, auth, (await _ask(http, auth, 7))["id"], 40)
        assert unwatched["state"] == "failed"
        assert "no camera watches window 7" in unwatched["reason"]
        return done


async def ask_once_the_camera_is_down(url: str, data_dir: Path) -> None:
    """The camera's stream is gone: the request fails and says which camera, promptly."""
    async with supervisor_api(url, data_dir) as (http, auth):
        down = await _until_settled(http, auth, (await _ask(http, auth, 1))["id"], 40)
        assert down["state"] == "failed" and "hall-cam-1" in down["reason"], down
        assert down["snapshot_sha256"] is None


def captured_on_gateway(done: dict[str, Any], evidence_dir: Path) -> bool:
    """The files the request ended with are files the gateway captured, byte for byte."""
    on_gateway = {
        hashlib.sha256(p.read_bytes()).hexdigest()
        for p in evidence_dir.rglob("*")
        if p.suffix in (".jpg", ".mjpeg")
    }
    return {done["snapshot_sha256"], done["clip_sha256"]} <= on_gateway
