"""Dashboard accounts: scrypt hashes, scope rules per role, and the real CLI."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import select

from central.security import accounts
from central.security.tokens import Role
from central.store.db import make_engine
from central.store.migrate import upgrade
from central.store.schema_dashboard import users
from hallkit.login import accounts as login_accounts
from tests.support.procs import write_yaml

CLI = Path(sys.executable).parent / "hallwatch-central"


def test_hashes_are_salted_scrypt_and_verify_only_the_right_password() -> None:
    a, b = (
        login_accounts.hash_password("同一个密码-2026"),
        login_accounts.hash_password("同一个密码-2026"),
    )
    assert a != b and a.startswith(f"scrypt${login_accounts.SCRYPT_N}$8$3$")
    assert login_accounts.check_password("同一个密码-2026", a)
    assert not login_accounts.check_password("同一个密码-2025", a)
    assert not login_accounts.check_password("x", "not-a-hash")


@pytest.mark.parametrize(
    ("role", "hall", "department"),
    [
        (Role.HALL_MANAGER, None, None),
        (Role.HALL_MANAGER, "H1", "公安局"),
        (Role.DEPARTMENT_LEADER, None, None),
        (Role.DEPARTMENT_LEADER, "H1", "公安局"),
        (Role.SUPERVISOR, "H1", None),
        (Role.TECHNICIAN, None, "公安局"),
    ],
)
def test_each_role_takes_exactly_its_own_scope(
    role: Role, hall: str | None, department: str | None
) -> None:
    with pytest.raises(login_accounts.AccountError):
        accounts.check_scope(role, hall, department)


async def test_accounts_are_stored_with_their_scope_and_never_the_password(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite+aiosqlite:///{tmp_path / 'c.db'}")
    await upgrade(engine)
    try:
        await accounts.add(
            engine, "lingdao", "部门领导-登录密码-2026", Role.DEPARTMENT_LEADER, department="公安局"
        )
        with pytest.raises(login_accounts.AccountError, match="已存在"):
            await accounts.add(engine, "lingdao", "another-pass", Role.SUPERVISOR)
        with pytest.raises(login_accounts.AccountError, match="至少"):
            await accounts.add(engine, "short", "short", Role.SUPERVISOR)
        account = await accounts.verify(engine, "lingdao", "部门领导-登录密码-2026")
        assert account is not None and account.principal.department == "公安局"
        assert await accounts.verify(engine, "lingdao", "wrong") is None
        async with engine.connect() as conn:
            row = (await conn.execute(select(users))).one()
        assert "部门领导" not in row.password_hash and row.disabled is False
    finally:
        await engine.dispose()


def _cli(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(CLI), "user", *args], input=stdin, text=True, capture_output=True, timeout=120
    )


def test_the_cli_adds_lists_disables_and_changes_passwords(tmp_path: Path) -> None:
    config = write_yaml(
        tmp_path / "central.yaml",
        {
            "database_url": f"sqlite+aiosqlite:///{tmp_path / 'c.db'}",
            "data_dir": str(tmp_path / "data"),
        },
    )
    c = str(config)
    # a department exists for central once a hall's roster (or a case) names it
    setup = write_yaml(
        tmp_path / "setup.yaml",
        {"hall": "H1", "opening": [{"start": "09:00", "end": "17:00"}], "windows": {"1": "公安局"}},
    )
    roster = subprocess.run(
        [str(CLI), "correlation", "hall-setup", str(setup), "-c", c],
        text=True,
        capture_output=True,
        timeout=120,
    )
    assert roster.returncode == 0, roster.stderr
    added = _cli(
        "add",
        "jiancha-wang",
        "--role",
        "supervisor",
        "--password-stdin",
        "-c",
        c,
        stdin="监察室-密码-2026\n",
    )
    assert added.returncode == 0, added.stderr
    assert "jiancha-wang" in added.stdout
    leader = _cli(
        "add",
        "gaj-li",
        "--role",
        "department_leader",
        "--department",
        "公安局",
        "--password-stdin",
        "-c",
        c,
        stdin="部门领导-密码-2026\n",
    )
    assert leader.returncode == 0, leader.stderr
    refused = _cli(
        "add",
        "h1",
        "--role",
        "hall_manager",
        "--password-stdin",
        "-c",
        c,
        stdin="大厅管理员-2026\n",
    )
    assert refused.returncode == 2 and "--hall" in refused.stderr
    assert _cli("add", "x", "--role", "boss", "-c", c).returncode == 2
    assert _cli("disable", "gaj-li", "-c", c).returncode == 0
    listed = _cli("list", "-c", c).stdout.splitlines()
    assert listed == [
        "gaj-li\tdepartment_leader\t公安局\tdisabled",
        "jiancha-wang\tsupervisor\t-\tenabled",
    ]
    assert (
        _cli(
            "passwd", "jiancha-wang", "--password-stdin", "-c", c, stdin="新的监察室密码-2026\n"
        ).returncode
        == 0
    )
    assert _cli("disable", "nobody", "-c", c).returncode == 2
    # the CLI hashes at the production cost (OWASP's scrypt N=2^15, r=8, p=3)
    with sqlite3.connect(tmp_path / "c.db") as db:
        (stored,) = db.execute("SELECT password_hash FROM users WHERE name = 'gaj-li'").fetchone()
    assert stored.startswith("scrypt$32768$8$3$")
