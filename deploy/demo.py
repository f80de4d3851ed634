# Long module: the demo's one script: it starts every part, makes the accounts and compares central
# with the ground truth, in the order a reader follows.
"""The demo: a simulated hall end to end on the embedded defaults.

Starts a private Mosquitto, central (SQLite, API on http://127.0.0.1:8600), a simulated hall
(``firmware_bridges.hallsim``: a $QM queue machine and a bus of FF 68 evaluators on
pseudo-terminals, staff and citizens behaving as in a real hall, a rendered camera view of
windows 1–2 as MJPEG), one gateway reading those devices through the real bridges and serving
the hall page, and the approval system's case feed (``deploy/approval_feeder.py``). Creates an
account for every role and prints where to look. Every press the simulated citizens make is in
the ground-truth file with the flags central should give it; every 15 s the demo prints how
central's results compare. Everything lives under var/demo/ (``--data-dir``) and is stopped (by
PID) on Ctrl-C or after ``--duration`` seconds; a second demo on the same directory refuses to
start while the first runs.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import IO, Any

import httpx
import yaml

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(ROOT))

from central.security.broker_acl import render_dev_config  # noqa: E402
from deploy.approval_feeder import roster  # noqa: E402
from firmware_bridges.hallsim import (  # noqa: E402
    CAMERA_WINDOWS,
    INVITE_TIMEOUT_S,
    compare,
    read_truth,
    staff_numbers,
)

BIN = Path(sys.executable).parent
MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
HALL, GATEWAY = "JQ-ZWFW", "jq-gw01"
HALL_NAME = "酒泉市政务服务中心（演示）"
STAFF_NAMES = (
    "王丽",
    "李明",
    "张伟",
    "刘芳",
    "陈静",
    "杨军",
    "赵敏",
    "黄磊",
    "周洋",
    "吴艳",
    "徐强",
    "孙悦",
    "马超",
    "朱琳",
    "胡斌",
    "郭婷",
)
KEY_LABELS = ("非常满意", "基本满意", "服务态度不好", "办理时间太长", "业务不熟", "其他")


class DemoRunning(SystemExit):
    pass


def take_lock(data: Path) -> IO[str]:
    """``<data>.lock``, held (flock) for the demo's life: a second demo on the same directory
    is told who runs it instead of deleting its data. The kernel drops the lock when the
    holder dies, so a crashed demo never blocks the next one."""
    path = data.with_name(data.name + ".lock")
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = path.open("a+", encoding="utf-8")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip() or "?"
        raise DemoRunning(
            f"演示已在运行（PID {holder}），数据目录 {data} 正在使用；先用 Ctrl-C 停止它，"
            f"或用 --data-dir 另选目录。\n"
            f"A demo is already running (PID {holder}) on {data}; stop it first (Ctrl-C, or "
            f"kill {holder}) or pass --data-dir for a separate one."
        ) from None
    handle.seek(0)
    handle.truncate()
    handle.write(f"{os.getpid()}\n")
    handle.flush()
    return handle


def port_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def pick_port(preferred: int) -> int:
    if port_free(preferred):
        return preferred
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_port(port: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.3):
                return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"nothing listens on port {port} after {timeout}s; see the logs")


def run(argv: list[str], stdin: str | None = None) -> str:
    done = subprocess.run(argv, capture_output=True, text=True, input=stdin, check=False)
    if done.returncode != 0:
        raise SystemExit(
            f"{' '.join(argv[:3])} … failed ({done.returncode}):\n"
            f"{done.stderr.strip() or done.stdout.strip()}"
        )
    return done.stdout.strip()


def camera_available() -> bool:
    try:
        import cv2  # noqa: F401
    except ImportError:
        return False
    return True


def camera_config(url: str) -> dict[str, Any]:
    """The gateway's camera section: regions are the rendered scene's layout."""
    from firmware_bridges.camera.simulator import HALL_LAYOUT

    def poly(points: tuple[tuple[float, float], ...]) -> dict[str, Any]:
        return {"points": [list(p) for p in points]}

    return {
        "id": "hall-cam-1",
        "url": url,
        "backend": "mjpeg",
        "fps": 2.0,
        "windows": [
            {
                "window": w,
                "staff_seat": poly(HALL_LAYOUT.staff_seats[w]),
                "citizen_side": poly(HALL_LAYOUT.citizen_sides[w]),
            }
            for w in CAMERA_WINDOWS
        ],
        "waiting_area": poly(HALL_LAYOUT.waiting_area),
        "bootstrap_still_s": 2.5,
        "away_after_s": 10.0,
        "open_timeout_s": 3.0,
        "read_timeout_s": 3.0,
    }


def accounts(
    central_bin: str,
    central_cfg: Path,
    edge_bin: str,
    edge_cfg: Path,
    password: str,
    department: str,
) -> list[tuple[str, str, str]]:
    """One account per role; returns (where, name, what) for the banner."""
    made = []
    for name, role, extra in (
        ("jiancha", "supervisor", []),
        ("bumen", "department_leader", ["--department", department]),
        ("dating", "hall_manager", ["--hall", HALL]),
        ("yunwei", "technician", []),
    ):
        run(
            [
                central_bin,
                "user",
                "add",
                name,
                "--role",
                role,
                *extra,
                "-c",
                str(central_cfg),
                "--password-stdin",
            ],
            password,
        )
        made.append(("central", name, role + (f" ({extra[1]})" if extra else "")))
    run(
        [
            edge_bin,
            "user",
            "add",
            "manager",
            "--role",
            "admin",
            "-c",
            str(edge_cfg),
            "--password-stdin",
        ],
        password,
    )
    made.append(("hall page", "manager", "admin"))
    return made


def evaluations(api: str, headers: dict[str, str]) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    cursor: str | None = None
    while True:
        params: dict[str, Any] = {"limit": 2000}
        if cursor:
            params["cursor"] = cursor
        page = httpx.get(
            f"{api}/api/v1/evaluations", headers=headers, params=params, timeout=10
        ).json()
        items += page["items"]
        cursor = page.get("next_cursor")
        if not cursor:
            return items


def status_line(api: str, headers: dict[str, str], truth: Path) -> str:
    gws = httpx.get(f"{api}/api/v1/gateways", headers=headers, timeout=10).json()
    results = evaluations(api, headers)
    counted = [e for e in results if e["counted"]]
    tally = " ".join(
        f"{label}{sum(1 for e in counted if e['key'] == k)}"
        for k, label in enumerate(KEY_LABELS, 1)
    )
    gateway = " ".join(f"{'在线' if g['online'] else '离线'} 积压{g['backlog']}" for g in gws)
    # Correlation runs every 30 s: presses older than a minute should all be there.
    check = compare(read_truth(truth), results, until=time.time() - 60)
    return (
        f"{time.strftime('%H:%M:%S')} 网关 {gateway} | 计入评价 {len(counted)}: {tally}\n"
        f"         真值对照 (一分钟前的按键): {check.summary()}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=float, default=0, help="stop after N seconds")
    parser.add_argument(
        "--hall-duration",
        type=float,
        default=None,
        help="stop issuing tickets after N seconds (the hall then empties)",
    )
    parser.add_argument(
        "--windows",
        type=int,
        default=8,
        help="staffed windows (one more is closed: its evaluator still gets stray presses)",
    )
    parser.add_argument(
        "--speed",
        type=float,
        default=20,
        help="hall seconds per real second for arrivals and service times "
        "(walking and pressing stay real time)",
    )
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--data-dir", type=Path, default=ROOT / "var" / "demo")
    parser.add_argument("--no-camera", action="store_true", help="no camera stream")
    args = parser.parse_args()

    data = args.data_dir.resolve()
    try:
        lock = take_lock(data)
    except DemoRunning as refusal:
        print(refusal.code, file=sys.stderr)
        sys.exit(1)
    shutil.rmtree(data, ignore_errors=True)
    data.mkdir(parents=True)
    mqtt_port, api_port, hall_port = pick_port(18830), pick_port(8600), pick_port(8700)
    camera_port = None if args.no_camera or not camera_available() else pick_port(8710)
    procs: list[subprocess.Popen[bytes]] = []

    def spawn(name: str, argv: list[str]) -> None:
        log = open(data / f"{name}.log", "ab")  # noqa: SIM115 - owned by the child
        procs.append(subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT))

    staff = staff_numbers(args.seed, args.windows)
    departments = roster(args.windows)
    names = {number: STAFF_NAMES[(w - 1) % len(STAFF_NAMES)] for w, number in staff.items()}
    (data / "mosquitto.conf").write_text(render_dev_config(mqtt_port, data))
    central_cfg = data / "central.yaml"
    central_cfg.write_text(
        yaml.safe_dump(
            {
                "database_url": f"sqlite+aiosqlite:///{data / 'central.db'}",
                "data_dir": str(data),
                "broker": {"port": mqtt_port},
                "http": {"port": api_port},
                "rules": {"ladder_every_s": 15},
            }
        )
    )
    # one hall's scan is cheap: its presses show correlated within seconds, not half a minute
    (data / "correlation.yaml").write_text(yaml.safe_dump({"scan_every_s": 5}))
    edge_cfg = data / "gateway.yaml"
    devices = data / "devices"
    gateway: dict[str, Any] = {
        "hall": HALL,
        "gateway": GATEWAY,
        "data_dir": str(data / "gateway"),
        "broker": {"port": mqtt_port},
        # Gateway and central share this machine's clock: whether it follows NTP changes
        # nothing here, so the hall page does not raise the alarm a real gateway would.
        "clock": {"assume_synced": True},
        "evaluator_buses": [
            {
                "port": str(devices / "ttyEVAL0"),
                "invite_timeout_s": INVITE_TIMEOUT_S,
                "devices": [{"addr": 0x80 + w, "window": w} for w in range(1, args.windows + 2)],
            }
        ],
        "queue": {"transport": str(devices / "ttyQM0")},
        "http": {"enabled": True, "host": "127.0.0.1", "port": hall_port, "hall_name": HALL_NAME},
        "staff_names": names,
    }
    if camera_port is not None:
        gateway["cameras"] = {
            "cameras": [camera_config(f"http://127.0.0.1:{camera_port}/stream.mjpg")],
            "evidence_dir": str(data / "gateway" / "evidence"),
        }
    edge_cfg.write_text(yaml.safe_dump(gateway, allow_unicode=True))

    central_bin, edge_bin = str(BIN / "hallwatch-central"), str(BIN / "hallwatch-edge")
    run([central_bin, "migrate", "-c", str(central_cfg)])
    run(
        [
            central_bin,
            "gateway",
            "add",
            "--hall",
            HALL,
            "--gateway",
            GATEWAY,
            "-c",
            str(central_cfg),
        ]
    )
    token = run(
        [
            central_bin,
            "token",
            "create",
            "--role",
            "supervisor",
            "--label",
            "demo",
            "-c",
            str(central_cfg),
        ]
    ).splitlines()[-1]
    password = "demo-" + secrets.token_hex(3)
    api = f"http://127.0.0.1:{api_port}"
    headers = {"Authorization": f"Bearer {token}"}
    truth = devices / "ground-truth.jsonl"
    stopping = False

    def stop(*_: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        spawn("mosquitto", [MOSQUITTO, "-c", str(data / "mosquitto.conf")])
        wait_port(mqtt_port)
        spawn("central", [central_bin, "serve", "-c", str(central_cfg)])
        wait_port(api_port)
        httpx.put(
            f"{api}/api/v1/halls/{HALL}/setup",
            headers=headers,
            timeout=10,
            json={
                # The demo hall is open whenever the demo runs, so 在岗率 has hours to cover.
                "hall": HALL,
                "opening": [{"start": "00:00", "end": "23:59"}],
                "windows": departments,
                "staff": names,
            },
        ).raise_for_status()
        # after the hall's setup: an account's department must be one central knows
        made = accounts(central_bin, central_cfg, edge_bin, edge_cfg, password, departments["1"])
        hallsim = [
            sys.executable,
            "-m",
            "firmware_bridges.hallsim",
            str(devices),
            "--windows",
            str(args.windows),
            "--speed",
            str(args.speed),
            "--seed",
            str(args.seed),
        ]
        if args.hall_duration:
            hallsim += ["--duration", str(args.hall_duration)]
        if camera_port is not None:
            hallsim += ["--camera-port", str(camera_port)]
        spawn("hall-simulator", hallsim)
        spawn("gateway", [edge_bin, "run", "-c", str(edge_cfg)])
        spawn(
            "approval-feeder",
            [
                sys.executable,
                str(ROOT / "deploy" / "approval_feeder.py"),
                "--api",
                api,
                "--token",
                token,
                "--hall",
                HALL,
                "--truth",
                str(truth),
                "--seed",
                str(args.seed),
                "--staff",
                ",".join(f"{w}={s}" for w, s in staff.items()),
            ],
        )
        wait_port(hall_port)
        (data / "demo.json").write_text(
            json.dumps(
                {
                    "pid": os.getpid(),
                    "api": api,
                    "token": token,
                    "hall_page": f"http://127.0.0.1:{hall_port}/",
                    "password": password,
                    "truth": str(truth),
                    "camera": camera_port is not None,
                }
            )
        )
        users = "\n".join(f"           {where:9} {name:8} {what}" for where, name, what in made)
        camera = (
            f"http://127.0.0.1:{camera_port}/stream.mjpg  (窗口 1–2 的摄像头画面)"
            if camera_port is not None
            else "off (OpenCV not installed, or --no-camera)"
        )
        print(
            f"""
Hallwatch demo is running (Ctrl-C stops everything).
  hall     http://127.0.0.1:{hall_port}/   大厅状态页 ({HALL_NAME})
  central  {api}/overview      监察中心 (总览、分析、评价审核、差评整改、通报)
           {api}/docs          API documentation
  accounts password for every account: {password}
{users}
           more: {central_bin} user add NAME -c {central_cfg} --role \\
                   supervisor|department_leader --department D|hall_manager --hall {HALL}|technician
                 {edge_bin} user add NAME --role viewer|admin -c {edge_cfg}
  token    {token}   (supervisor API token)
  try      curl -s -H 'Authorization: Bearer {token}' '{api}/api/v1/evaluations?limit=5'
  broker   mqtt://127.0.0.1:{mqtt_port}   (mosquitto_sub -p {mqtt_port} -t 'hw/v1/#' -v)
  camera   {camera}
  devices  {devices}/ttyEVAL0 (evaluators, window {args.windows + 1} closed), {devices}/ttyQM0
  truth    {truth}
           (every simulated press: what the citizen did and the flags central should give)
  logs     {data}/*.log
""",
            flush=True,
        )
        stop_at = time.monotonic() + args.duration if args.duration else None
        next_status = time.monotonic() + 15
        while not stopping and (stop_at is None or time.monotonic() < stop_at):
            time.sleep(0.5)
            if time.monotonic() < next_status:
                continue
            next_status = time.monotonic() + 15
            try:
                print(status_line(api, headers, truth), flush=True)
            except (httpx.HTTPError, ValueError, KeyError) as exc:
                print(f"central not answering: {exc}", flush=True)
    finally:
        for proc in reversed(procs):
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
        with contextlib.suppress(OSError):
            (data / "demo.json").unlink()
        lock.close()
        print("demo stopped", flush=True)


if __name__ == "__main__":
    main()
