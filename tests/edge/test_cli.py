"""hallwatch-edge's technician commands."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

EDGE = str(Path(sys.executable).parent / "hallwatch-edge")


def test_check_config_points_at_the_offending_line(tmp_path: Path) -> None:
    cfg = tmp_path / "gw.yaml"
    cfg.write_text(
        "hall: JQ-ZWFW\ngateway: jq-gw01\nbroker:\n  host: 127.0.0.1\n"
        "  port: 70000\nuplink:\n  batch_events: 10\n"
    )
    result = subprocess.run([EDGE, "check-config", str(cfg)], capture_output=True, text=True)
    assert result.returncode == 2
    assert f"{cfg}:5: broker.port" in result.stderr


def test_check_config_accepts_a_good_file_and_names_bad_yaml(tmp_path: Path) -> None:
    good = tmp_path / "ok.yaml"
    good.write_text("hall: H1\ngateway: gw1\n")
    assert subprocess.run([EDGE, "check-config", str(good)], capture_output=True).returncode == 0
    broken = tmp_path / "broken.yaml"
    broken.write_text("hall: H1\ngateway: [gw1\n")
    result = subprocess.run([EDGE, "check-config", str(broken)], capture_output=True, text=True)
    assert result.returncode == 2 and "not valid YAML" in result.stderr
    unknown = tmp_path / "unknown.yaml"
    unknown.write_text("hall: H1\ngateway: gw1\nbrokr: {}\n")
    result = subprocess.run([EDGE, "check-config", str(unknown)], capture_output=True, text=True)
    assert result.returncode == 2 and f"{unknown}:3: brokr" in result.stderr


def test_check_config_and_run_name_a_certificate_or_key_that_cannot_be_read(tmp_path: Path) -> None:
    (tmp_path / "ca.pem").write_text("ca")
    (tmp_path / "gw.key").write_text("key")
    cfg = tmp_path / "gw.yaml"
    cfg.write_text(
        f"hall: H1\ngateway: gw1\ndata_dir: {tmp_path / 'data'}\nbroker:\n  tls:\n"
        f"    ca: {tmp_path / 'ca.pem'}\n    cert: {tmp_path / 'gw.pem'}\n"
        f"    key: {tmp_path / 'gw.key'}\ncommands:\n"
        f"  public_key: {tmp_path / 'central.pub'}\n"
    )
    for argv in (["check-config", str(cfg)], ["run", "-c", str(cfg)]):
        result = subprocess.run([EDGE, *argv], capture_output=True, text=True, timeout=60)
        assert result.returncode == 2, result.stderr
        assert (
            f"{cfg}:7: broker.tls.cert: 无法读取 / cannot read {tmp_path / 'gw.pem'}"
            in result.stderr
        )
        assert f"{cfg}:10: commands.public_key" in result.stderr
        assert "ca:" not in result.stderr and "Traceback" not in result.stderr
