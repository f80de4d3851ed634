"""Evidence snapshots reach central: a real gateway with a camera, a real central, a broker.

A key press gets a verdict with a snapshot; the snapshot's bytes arrive at central after the
verdict, hash to what the gateway journaled, and the review API points at them. An upload
whose bytes were changed is refused and quarantined. A key pressed while central is down
has its snapshot delivered after central comes back. A supervisor's on-demand request
(调取取证) brings window 1's picture and a clip into the vault; a window without a camera and
a camera that went down fail with the reason (tests/edge/camera/on_demand.py).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import sqlite3
import threading
from pathlib import Path
from typing import Any

import httpx
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from central.api.app import create_app
from central.records.evidence import EvidenceVault
from central.security.tokens import Role, create_token
from central.store.db import make_engine
from firmware_bridges.camera.simulator import FrameFeed, MjpegServer, hall_scene
from firmware_bridges.ff68.simulator import EvaluatorBusSimulator
from protocols.evidence import EvidenceHeader, EvidenceReceipt, encode_upload
from protocols.topics import Channel, topic
from tests.edge.camera.on_demand import (
    ask_once_the_camera_is_down,
    ask_while_the_camera_is_live,
    captured_on_gateway,
    share_signing_key,
)
from tests.edge.camera.scenes import hall_camera
from tests.support import procs
from tests.support.broker import Broker
from tests.support.loop_thread import LoopThread


def _rows(db: Path, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    with sqlite3.connect(db) as conn:
        return list(conn.execute(sql, args))


def _camera_down_reported(db: Path, camera: str) -> bool:
    """Central holds the gateway's camera.health event saying ``camera`` is not online."""
    bodies = _rows(db, "SELECT body FROM events WHERE kind = 'camera.health' ORDER BY seq")
    states = [json.loads(b) for (b,) in bodies]
    mine = [b["state"] for b in states if b.get("camera") == camera]
    return bool(mine) and mine[-1] != "online"


def _verdicts(db: Path) -> list[tuple[int, dict[str, Any]]]:
    return [
        (seq, json.loads(body))
        for seq, body in _rows(
            db, "SELECT seq, body FROM events WHERE kind = 'camera.verdict' ORDER BY seq"
        )
    ]


def _stored(db: Path) -> dict[int, str]:
    return {
        seq: sha256 for seq, sha256 in _rows(db, "SELECT event_seq, sha256 FROM evidence_files")
    }


def _tampered_upload(port: int, header: EvidenceHeader, data: bytes) -> EvidenceReceipt:
    """Publish as the gateway would, with changed bytes; return central's receipt. The gateway's
    own receipts share the topic (a resend of the genuine upload, another event with the same
    image: 'stored'), so the answer to this upload is the refusal; without one, the first receipt
    for the image is returned for the caller to judge."""
    got: list[EvidenceReceipt] = []
    done = threading.Event()
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="tamperer")

    def on_message(_c: Any, _u: Any, message: mqtt.MQTTMessage) -> None:
        receipt = EvidenceReceipt.model_validate_json(message.payload)
        if receipt.sha256 == header.sha256:
            got.append(receipt)
            if receipt.status == "refused":
                done.set()

    subscribed = threading.Event()
    client.on_message = on_message
    client.on_subscribe = lambda *_a: subscribed.set()
    client.connect("127.0.0.1", port)
    client.loop_start()
    try:
        client.subscribe(topic(header.hall, header.gateway, Channel.RECEIPT), 1)
        assert subscribed.wait(10)
        client.publish(
            topic(header.hall, header.gateway, Channel.EVIDENCE), encode_upload(header, data), qos=1
        ).wait_for_publish(10)
        done.wait(20)
    finally:
        client.disconnect()
        client.loop_stop()
    assert got, "no receipt for the tampered upload"
    return next((r for r in got if r.status == "refused"), got[0])


async def _api_checks(url: str, data_dir: Path, key_seq: int, sha256: str) -> bytes:
    engine = make_engine(url)
    try:
        app = create_app(engine)
        app.state.evidence = EvidenceVault.in_data_dir(data_dir)
        supervisor = await create_token(engine, Role.SUPERVISOR)
        stranger = await create_token(engine, Role.HALL_MANAGER, hall="H2")
        technician = await create_token(engine, Role.TECHNICIAN)
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://central"
        ) as http:
            auth = {"Authorization": f"Bearer {supervisor}"}
            review = (
                await http.get(f"/api/v1/evaluations/gw1/{key_seq}/reviews", headers=auth)
            ).json()
            (evidence,) = review["evidence"]
            assert evidence["snapshot_sha256"] == sha256
            assert evidence["image_url"] == f"/api/v1/evidence/{sha256}"
            image = await http.get(evidence["image_url"], headers=auth)
            assert image.status_code == 200 and image.headers["content-type"] == "image/jpeg"
            # another hall's manager: as if it did not exist; a technician: no faces at all
            for token, refused in ((stranger, 404), (technician, 403)):
                other = await http.get(
                    evidence["image_url"], headers={"Authorization": f"Bearer {token}"}
                )
                assert other.status_code == refused
            assert (await http.get(evidence["image_url"])).status_code == 401
            return image.content
    finally:
        await engine.dispose()


def test_snapshot_reaches_central_verified_and_served(tmp_path: Path, broker: Broker) -> None:
    db = tmp_path / "central.db"
    url = f"sqlite+aiosqlite:///{db}"
    procs.prepare_central(url, [("H1", "gw1")])
    scene = hall_scene(still_s=5.0, break_s=6.0, lead_s=8.0)
    central_config = procs.central_config(tmp_path, broker.port, url)
    with MjpegServer(FrameFeed.from_scene(scene, 10)) as server, LoopThread() as sims:
        bus = EvaluatorBusSimulator(tmp_path / "ttyEVAL0", seed=3)
        sims.run(bus.start())
        sims.call(lambda: bus.add(0x81))
        camera = hall_camera(server.url).model_dump(mode="json")
        config = procs.edge_config(
            tmp_path,
            broker.port,
            evaluator_buses=[
                {"port": str(tmp_path / "ttyEVAL0"), "devices": [{"addr": 0x81, "window": 1}]}
            ],
            cameras={"cameras": [camera], "evidence_dir": str(tmp_path / "evidence")},
            commands={
                "public_key": str(share_signing_key(tmp_path / "central", tmp_path / "cmd.pub"))
            },
        )
        cen = procs.central(central_config, tmp_path / "central.log")
        gw = procs.edge(config, tmp_path / "edge.log")
        try:
            procs.wait_until(
                lambda: bool(_rows(db, "SELECT 1 FROM events WHERE kind = 'camera.health'")),
                40,
                "the camera to come online at central",
            )
            sims.call(lambda: bus.press(0x81, 1))
            procs.wait_until(lambda: bool(_verdicts(db)), 40, "a verdict for the key press")
            ((verdict_seq, verdict),) = _verdicts(db)
            assert verdict["snapshot"] and verdict["snapshot_sha256"]
            procs.wait_until(
                lambda: verdict_seq in _stored(db), 30, "the verdict's snapshot at central"
            )
            # a supervisor's on-demand picture, while the scene still plays
            on_demand = asyncio.run(ask_while_the_camera_is_live(url, tmp_path / "central"))
            assert captured_on_gateway(on_demand, tmp_path / "evidence")

            # bytes changed on the way (or on the gateway's disk): refused, quarantined
            original = (tmp_path / "evidence" / verdict["snapshot"]).read_bytes()
            forged = bytearray(original)
            forged[len(forged) // 2] ^= 0xFF
            header = EvidenceHeader(
                hall="H1",
                gateway="gw1",
                path=verdict["snapshot"],
                sha256=verdict["snapshot_sha256"],
                size=len(forged),
                manifest_seq=verdict["manifest_seq"],
                event_seq=verdict_seq,
            )
            receipt = _tampered_upload(broker.port, header, bytes(forged))
            assert receipt.status == "refused" and "tampered" in receipt.reason

            # central down while a key is pressed: the snapshot arrives after its restart
            cen.stop()
            sims.call(lambda: bus.press(0x81, 3))
            procs.wait_until(
                lambda: (tmp_path / "edge-gw1" / "evidence-uploads.sqlite").exists(),
                5,
                "the upload queue",
            )
            cen = procs.central(central_config, tmp_path / "central.log")
            procs.wait_until(lambda: len(_verdicts(db)) == 2, 40, "the second verdict")
            second_seq, second = _verdicts(db)[1]
            procs.wait_until(
                lambda: second_seq in _stored(db), 40, "the second snapshot after central's restart"
            )
            server.stop()  # the camera goes down
            # ask once the gateway has said so: a request within STALE_S of the last frame
            # rightly gets that frame (a loaded machine delivers it that fast)
            procs.wait_until(
                lambda: _camera_down_reported(db, "hall-cam-1"),
                40,
                "the gateway reporting hall-cam-1 down",
            )
            asyncio.run(ask_once_the_camera_is_down(url, tmp_path / "central"))
        finally:
            gw.stop()
            cen.stop()
            sims.run(bus.stop())

    vault = EvidenceVault.in_data_dir(tmp_path / "central")
    stored = vault.path_for(verdict["snapshot_sha256"]).read_bytes()
    assert stored == original
    assert hashlib.sha256(stored).hexdigest() == verdict["snapshot_sha256"]
    assert (
        hashlib.sha256(vault.path_for(second["snapshot_sha256"]).read_bytes()).hexdigest()
        == second["snapshot_sha256"]
    )
    # the refused bytes are kept for inspection, never served
    (reject,) = _rows(db, "SELECT claimed_sha256, actual_sha256, quarantine FROM evidence_rejects")
    assert reject[0] == verdict["snapshot_sha256"]
    assert reject[1] == hashlib.sha256(forged).hexdigest()
    assert (vault.quarantine / reject[2]).read_bytes() == bytes(forged)
    assert not vault.path_for(reject[1]).exists()
    (key_seq,) = [
        s for (s,) in _rows(db, "SELECT seq FROM events WHERE kind = 'evaluator.key' ORDER BY seq")
    ][:1]
    assert verdict["key_seq"] == key_seq
    served = asyncio.run(
        _api_checks(url, tmp_path / "central", key_seq, verdict["snapshot_sha256"])
    )
    assert served == original
