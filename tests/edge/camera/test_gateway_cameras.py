"""Cameras inside the real gateway process: every key press gets a camera verdict, journaled
beside the key and tied to it, and the camera's own events reach central."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from firmware_bridges.camera.simulator import FrameFeed, MjpegServer, hall_scene
from firmware_bridges.ff68.simulator import EvaluatorBusSimulator
from tests.edge.camera.scenes import hall_camera
from tests.support import procs
from tests.support.broker import Broker
from tests.support.loop_thread import LoopThread


def _central_rows(db: Path, kind: str) -> list[tuple[int, str]]:
    with sqlite3.connect(db) as conn:
        return list(
            conn.execute("SELECT seq, body FROM events WHERE kind = ? ORDER BY seq", (kind,))
        )


def test_key_press_gets_a_camera_verdict_tied_to_it(tmp_path: Path, broker: Broker) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'central.db'}"
    procs.prepare_central(url, [("H1", "gw1")])
    scene = hall_scene(still_s=5.0, break_s=6.0, lead_s=8.0)
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
        )
        cen = procs.central(
            procs.central_config(tmp_path, broker.port, url), tmp_path / "central.log"
        )
        gw = procs.edge(config, tmp_path / "edge.log")
        try:
            procs.wait_until(
                lambda: bool(_central_rows(tmp_path / "central.db", "camera.health")),
                40,
                "the camera to come online at central",
            )
            sims.call(lambda: bus.press(0x81, 1))
            procs.wait_until(
                lambda: bool(_central_rows(tmp_path / "central.db", "camera.verdict")),
                40,
                "a camera verdict for the key press",
            )
        finally:
            gw.stop()
            cen.stop()
            sims.run(bus.stop())
    ((key_seq, _),) = _central_rows(tmp_path / "central.db", "evaluator.key")
    ((_, verdict_doc),) = _central_rows(tmp_path / "central.db", "camera.verdict")
    verdict = json.loads(verdict_doc)
    assert verdict["key_seq"] == key_seq and verdict["addr"] == 0x81 and verdict["window"] == 1
    assert verdict["verdict"] in ("present", "absent", "unknown")
    health = [
        json.loads(b)["state"] for _, b in _central_rows(tmp_path / "central.db", "camera.health")
    ]
    assert health[0] == "online"
    assert _central_rows(tmp_path / "central.db", "camera.evidence") or verdict["snapshot"] is None
