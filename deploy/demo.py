"""The demo: a simulated hall end to end on the embedded defaults.

Starts a private Mosquitto, central (SQLite, API on http://127.0.0.1:8600), a simulated hall
(a $QM queue machine and a bus of FF 68 evaluators on pseudo-terminals, tickets flowing through
the windows, citizens pressing keys) and one gateway reading those devices through the real
bridges. Registers the gateway, creates a supervisor token and prints where to look. Everything
lives under var/demo/ and is stopped (by PID) on Ctrl-C or after --duration seconds.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import yaml

from central.broker_acl import render_dev_config

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"


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


def wait_port(port: int, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.3):
                return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"nothing listens on port {port} after {timeout}s; see var/demo/*.log")


def run(argv: list[str]) -> str:
    return subprocess.run(argv, check=True, capture_output=True, text=True).stdout.strip()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--duration", type=float, default=0, help="stop after N seconds")
    parser.add_argument("--windows", type=int, default=8, help="windows in the simulated hall")
    parser.add_argument("--speed", type=float, default=30,
                        help="hall seconds per real second (30: a morning in ten minutes)")
    args = parser.parse_args()

    data = ROOT / "var" / "demo"
    shutil.rmtree(data, ignore_errors=True)
    data.mkdir(parents=True)
    mqtt_port, api_port, hall_port = pick_port(18830), pick_port(8600), pick_port(8700)
    procs: list[subprocess.Popen[bytes]] = []

    def spawn(name: str, argv: list[str]) -> None:
        log = open(data / f"{name}.log", "ab")  # noqa: SIM115 - owned by the child
        procs.append(subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT))

    (data / "mosquitto.conf").write_text(render_dev_config(mqtt_port, data))
    central_cfg = data / "central.yaml"
    central_cfg.write_text(yaml.safe_dump({
        "database_url": f"sqlite+aiosqlite:///{data / 'central.db'}", "data_dir": str(data),
        "broker": {"port": mqtt_port}, "http": {"port": api_port}}))
    edge_cfg = data / "gateway.yaml"
    devices = data / "devices"
    edge_cfg.write_text(yaml.safe_dump({
        "hall": "JQ-ZWFW", "gateway": "jq-gw01", "data_dir": str(data / "gateway"),
        "broker": {"port": mqtt_port},
        "evaluator_buses": [{"port": str(devices / "ttyEVAL0"), "devices": [
            {"addr": 0x80 + w, "window": w} for w in range(1, args.windows + 1)]}],
        "queue": {"transport": str(devices / "ttyQM0")},
        "http": {"enabled": True, "host": "127.0.0.1", "port": hall_port,
                 "hall_name": "酒泉市政务服务中心（演示）"},
        "staff_names": {},
    }, allow_unicode=True))

    central_bin, edge_bin = str(BIN / "hallwatch-central"), str(BIN / "hallwatch-edge")
    run([central_bin, "migrate", "-c", str(central_cfg)])
    run([central_bin, "gateway", "add", "--hall", "JQ-ZWFW", "--gateway", "jq-gw01",
         "-c", str(central_cfg)])
    token = run([central_bin, "token", "create", "--role", "supervisor", "--label", "demo",
                 "-c", str(central_cfg)]).splitlines()[-1]
    hall_password = "demo-" + token[-8:]
    subprocess.run([central_bin, "user", "add", "supervisor", "--role", "supervisor",
                    "-c", str(central_cfg), "--password-stdin"], input=hall_password + "-c",
                   text=True, check=True, capture_output=True)
    subprocess.run([edge_bin, "user", "add", "manager", "-c", str(edge_cfg),
                    "--password-stdin"], input=hall_password, text=True, check=True,
                   capture_output=True)
    try:
        spawn("mosquitto", [MOSQUITTO, "-c", str(data / "mosquitto.conf")])
        wait_port(mqtt_port)
        spawn("central", [central_bin, "serve", "-c", str(central_cfg)])
        wait_port(api_port)
        spawn("hall-simulator", [sys.executable, "-m", "firmware_bridges.hallsim", str(devices),
                                 "--windows", str(args.windows), "--speed", str(args.speed)])
        spawn("gateway", [edge_bin, "run", "-c", str(edge_cfg)])
        api = f"http://127.0.0.1:{api_port}"
        print(f"""
Hallwatch demo is running (Ctrl-C stops everything).
  broker   mqtt://127.0.0.1:{mqtt_port}   (mosquitto_sub -p {mqtt_port} -t 'hw/v1/#' -v)
  hall     http://127.0.0.1:{hall_port}/   大厅状态页 (manager / {hall_password})
  central  {api}/overview      监察中心 dashboard (supervisor / {hall_password}-c)
           {api}/docs          API documentation
  token    {token}
  try      curl -s -H 'Authorization: Bearer {token}' {api}/api/v1/gateways
           curl -s -H 'Authorization: Bearer {token}' '{api}/api/v1/events?kind=evaluator.key'
  devices  {devices}/ttyEVAL0 (evaluators), {devices}/ttyQM0 (queue machine)
  truth    {devices}/ground-truth.jsonl (what each simulated citizen pressed, and why)
  logs     {data}/*.log
""", flush=True)
        stop_at = time.monotonic() + args.duration if args.duration else None
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
        headers = {"Authorization": f"Bearer {token}"}
        while stop_at is None or time.monotonic() < stop_at:
            time.sleep(5)
            try:
                gws = httpx.get(f"{api}/api/v1/gateways", headers=headers, timeout=5).json()
            except httpx.HTTPError as exc:
                print(f"central not answering: {exc}", flush=True)
                continue
            keys = httpx.get(f"{api}/api/v1/events", headers=headers, timeout=5,
                             params={"kind": "evaluator.key", "limit": 5000}).json()["items"]
            counted = [k["body"] for k in keys if "RETRANSMIT" not in k["body"]["marks"]]
            tally = " ".join(f"{label}{sum(1 for k in counted if k['label'] == label)}"
                             for label in ("非常满意", "基本满意", "服务态度不好", "办理时间太长",
                                           "业务不熟", "其他"))
            for gw in gws:
                print(f"{time.strftime('%H:%M:%S')} {gw['hall']}/{gw['gateway']}: "
                      f"{'在线' if gw['online'] else '离线'} 已提交 {gw['committed_through']} "
                      f"积压 {gw['backlog']} | 评价 {len(counted)}: {tally}", flush=True)
    except KeyboardInterrupt:
        pass
    finally:
        for proc in reversed(procs):
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
        print("demo stopped")


if __name__ == "__main__":
    main()
