"""hallwatch-central's conventions, as a technician meets them: `user add` refuses a hall or
department central does not know (naming the near ones), `gateway provision` never puts a
loopback broker into a bundle and says what it wrote, and commands are quiet unless -v."""

from __future__ import annotations

import subprocess
import sys
import tarfile
from pathlib import Path

import yaml

BIN = Path(sys.executable).parent
CENTRAL = str(BIN / "hallwatch-central")


def run(*argv: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [CENTRAL, *argv], input=stdin, capture_output=True, text=True, timeout=120
    )


def ok(*argv: str, stdin: str = "") -> str:
    done = run(*argv, stdin=stdin)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout + done.stderr


def _config(tmp: Path, **extra: object) -> tuple[str, str]:
    conf = tmp / "central.yaml"
    conf.write_text(
        yaml.safe_dump(
            {
                "database_url": f"sqlite+aiosqlite:///{tmp / 'central.db'}",
                "data_dir": str(tmp / "central"),
                **extra,
            }
        )
    )
    return ("-c", str(conf))


def _add_user(c: tuple[str, str], name: str, *scope: str) -> subprocess.CompletedProcess[str]:
    return run("user", "add", name, *scope, "--password-stdin", *c, stdin="long-enough-pw\n")


def test_user_add_refuses_unknown_hall_and_department(tmp_path: Path) -> None:
    c = _config(tmp_path)
    # nothing known yet: refused, and it says central knows no hall
    fresh = _add_user(c, "dating", "--role", "hall_manager", "--hall", "JQ")
    assert fresh.returncode == 2
    assert "大厅 JQ 不存在" in fresh.stderr and "knows no hall" in fresh.stderr

    ok("gateway", "add", "--hall", "JQ-ZWFW", "--gateway", "gw1", *c)
    setup = tmp_path / "setup.yaml"
    setup.write_text(
        yaml.safe_dump(
            {
                "hall": "LQ-ZWFW",
                "opening": [{"start": "09:00", "end": "17:00"}],
                "windows": {"1": "市场监管局", "2": "税务局"},
            },
            allow_unicode=True,
        ),
        encoding="utf-8",
    )
    ok("correlation", "hall-setup", str(setup), *c)

    typo = _add_user(c, "dating", "--role", "hall_manager", "--hall", "JQ-ZWF")
    assert typo.returncode == 2, typo.stdout
    assert typo.stderr.startswith("大厅 JQ-ZWF 不存在")  # Chinese first
    assert "did you mean: JQ-ZWFW" in typo.stderr
    bad_dept = _add_user(c, "bumen", "--role", "department_leader", "--department", "市场监管")
    assert bad_dept.returncode == 2
    assert bad_dept.stderr.startswith("部门 市场监管 不存在") and "市场监管局" in bad_dept.stderr
    assert "dating" not in ok("user", "list", *c) and "bumen" not in ok("user", "list", *c)

    # a registered gateway's hall, a hall with a stored setup, a department on its roster
    for name, scope in (
        ("dating", ("--role", "hall_manager", "--hall", "JQ-ZWFW")),
        ("dating2", ("--role", "hall_manager", "--hall", "LQ-ZWFW")),
        ("bumen", ("--role", "department_leader", "--department", "市场监管局")),
    ):
        done = _add_user(c, name, *scope)
        assert done.returncode == 0, done.stderr
        assert done.stdout.startswith(f"已创建 / created: {name}")


def test_provision_broker_from_config_or_refused(tmp_path: Path) -> None:
    # no broker in the config, none given: refused, nothing written
    c = _config(tmp_path)
    bundle = tmp_path / "gw.tar.gz"
    args = ("gateway", "provision", "--hall", "JQ", "--name", "gw01", "--out", str(bundle))
    refused = run(*args, *c)
    assert refused.returncode == 2 and "--broker" in refused.stderr
    assert "未指定代理地址" in refused.stderr and not bundle.exists()

    # a loopback address in the config is no address for a hall's gateway
    loop = _config(tmp_path, provisioning={"broker_url": "mqtts://localhost:8883"})
    refused = run(*args, *loop)
    assert refused.returncode == 2 and "loopback" in refused.stderr and not bundle.exists()

    # the config's public address goes into the bundle, and the output says so
    public = _config(tmp_path, provisioning={"broker_url": "mqtts://mqtt.zwfw.example.cn:8883"})
    out = ok(*args, *public)
    assert f"bundle: {bundle}" in out
    assert "hall JQ, gateway gw01, broker mqtts://mqtt.zwfw.example.cn:8883" in out
    assert "mqtt.zwfw.example.cn" in _manifest(bundle)

    # an explicit --broker wins over the config
    again = ok(*args, "--broker", "mqtts://10.1.2.3:8883", *public)
    assert "broker mqtts://10.1.2.3:8883" in again and "10.1.2.3" in _manifest(bundle)


def _manifest(bundle: Path) -> str:
    with tarfile.open(bundle) as tar:
        for member in tar.getmembers():
            if member.name.endswith("manifest.json"):
                extracted = tar.extractfile(member)
                assert extracted is not None
                return extracted.read().decode()
    raise AssertionError("no manifest in the bundle")


def test_quiet_by_default_verbose_with_v(tmp_path: Path) -> None:
    c = _config(tmp_path)
    for argv in (("migrate", *c), ("user", "list", *c), ("token", "list", *c)):
        assert "alembic" not in ok(*argv), argv
        assert "INFO" not in ok(*argv), argv
    (tmp_path / "other").mkdir()
    fresh = _config(tmp_path / "other")
    verbose = run("-v", "migrate", *fresh)
    assert verbose.returncode == 0, verbose.stderr
    assert "INFO alembic" in verbose.stderr and "Running upgrade" in verbose.stderr
    assert verbose.stdout.startswith("schema at revision ")
