"""The demo end to end: ``deploy/demo.py`` with every part real (Mosquitto, central on SQLite,
the simulated hall on ptys, the gateway through the real bridges, the camera stream, the case
feed), a short hall day, then central's results against the simulator's ground truth."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from firmware_bridges.hallsim import FLAGS, compare, read_truth
from tests.support.procs import wait_until

ROOT = Path(__file__).resolve().parents[2]
HALL_SECONDS = 90  # tickets are issued this long; the hall then empties


def _evaluations(api: str, headers: dict[str, str]) -> list[dict[str, Any]]:
    page = httpx.get(
        f"{api}/api/v1/evaluations", headers=headers, params={"limit": 2000}, timeout=15
    ).json()
    return list(page["items"])


def test_demo_counts_and_flags_match_its_ground_truth(tmp_path: Path) -> None:
    data = tmp_path / "demo"
    argv = [
        sys.executable,
        str(ROOT / "deploy" / "demo.py"),
        "--data-dir",
        str(data),
        "--windows",
        "6",
        "--speed",
        "40",
        "--seed",
        "3",
        "--hall-duration",
        str(HALL_SECONDS),
        "--duration",
        "480",
    ]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with (tmp_path / "demo.out").open("wb") as out:
        demo = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
    try:
        info_file = data / "demo.json"
        wait_until(lambda: info_file.exists() or demo.poll() is not None, 120, "the demo to start")
        assert demo.poll() is None, (tmp_path / "demo.out").read_text()
        info = json.loads(info_file.read_text())
        api, headers = info["api"], {"Authorization": f"Bearer {info['token']}"}

        # A second demo on the same directory refuses, naming the running one, and leaves
        # its data alone.
        second = subprocess.run(argv, capture_output=True, text=True, env=env, cwd=ROOT, timeout=60)
        assert second.returncode == 1
        assert "already running" in second.stderr and str(demo.pid) in second.stderr
        assert json.loads(info_file.read_text()) == info and (data / "central.db").exists()

        # The hall day runs, empties and closes; central correlates every press.
        sim_log = data / "hall-simulator.log"
        wait_until(
            lambda: "hall closed" in sim_log.read_text(),
            HALL_SECONDS + 240,
            "the simulated hall to close",
        )
        truth = read_truth(Path(info["truth"]))

        def all_correlated() -> bool:
            check = compare(truth, _evaluations(api, headers))
            return check.matched == check.presses and not check.mismatches

        with contextlib.suppress(AssertionError):  # the comparison below says what differs
            wait_until(all_correlated, 100, "central to correlate every press", interval=1)
        check = compare(truth, _evaluations(api, headers))
        print(check.summary())
        print("\n".join(check.mismatches))

        invited = sum(1 for r in truth if r.get("kind") == "press" and r["why"] == "invited")
        assert invited >= 15, f"a short hall day still has evaluations: {invited}"
        assert check.matched == check.presses, check.mismatches
        assert check.counted_error <= 0.02, check.summary()
        # The opening plan shows every anomaly kind once; central flags each as the truth says.
        assert all(check.flags_truth[f] >= 1 for f in FLAGS), check.flags_truth
        assert check.flags_central == check.flags_truth, check.summary()

        # The case feed gave the dashboard cases, today's tied to their services, and a
        # backlog whose ladder shows lights and cards.
        cases = httpx.get(
            f"{api}/api/v1/cases", headers=headers, params={"limit": 500}, timeout=15
        ).json()
        assert cases["items"], cases
        # Each counted evaluation covers the cases the approval system accepted during its
        # service (一次办多件: all of them), and few are in doubt about them.
        posted: dict[tuple[int, str], set[str]] = {}
        for tie in read_truth(Path(info["truth"]).with_name("cases.jsonl")):
            posted.setdefault((tie["window"], tie["ticket"]), set()).add(tie["case_no"])
        counted = [e for e in _evaluations(api, headers) if e["counted"]]
        wrong = [
            e
            for e in counted
            if {c["case_no"] for c in e["cases"]} != posted.get((e["window"], e["ticket"]), set())
        ]
        assert len(wrong) <= 0.02 * len(counted), [
            (e["window"], e["ticket"], e["cases"]) for e in wrong
        ]
        ambiguous = [e for e in counted if "CASE_AMBIGUOUS" in e["flags"]]
        assert len(ambiguous) <= 0.05 * len(counted), [
            (e["window"], e["ticket"]) for e in ambiguous
        ]
        wait_until(
            lambda: (
                _stages(api, headers) >= {"yellow_light", "red_light", "yellow_card", "red_card"}
            ),
            60,
            "the ladder to place the backlog",
        )
        if info["camera"]:
            seen = [e["citizen"] for e in _evaluations(api, headers) if e["citizen"]]
            assert "present" in seen and "absent" in seen, seen
    finally:
        demo.send_signal(signal.SIGTERM)
        try:
            demo.wait(60)
        except subprocess.TimeoutExpired:
            demo.kill()
            raise
    assert demo.returncode == 0
    assert "demo stopped" in (tmp_path / "demo.out").read_text()
    assert not (data / "demo.json").exists()


def _stages(api: str, headers: dict[str, str]) -> set[str]:
    deadline = time.monotonic() + 5
    page = httpx.get(
        f"{api}/api/v1/cases",
        headers=headers,
        params={"limit": 500},
        timeout=max(1.0, deadline - time.monotonic()),
    ).json()
    return {c["ladder"]["stage"] for c in page["items"] if c.get("ladder")}
