"""Local accounts, sessions and the login brake of the hall page."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from edge.cli import app as cli
from edge.web.accounts import AccountStore, Permission, Role
from edge.web.sessions import SessionSigner, load_or_create_key
from hallkit.login.accounts import SCRYPT_N, AccountError, check_password, hash_password
from hallkit.login.brake import LoginBrake


class FakeClock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_password_hash_is_salted_scrypt_with_its_parameters() -> None:
    first, second = hash_password("窗口管理员2026"), hash_password("窗口管理员2026")
    assert first != second  # a fresh salt each time
    scheme, n, r, p, _, _ = first.split("$")
    assert (scheme, int(n), int(r), int(p)) == ("scrypt", SCRYPT_N, 8, 3)
    assert check_password("窗口管理员2026", first)
    assert not check_password("窗口管理员2025", first)
    assert not check_password("窗口管理员2026", first[:-4] + "AAA=")  # hash altered
    assert not check_password("x", "md5$abc")  # not ours


def test_store_is_private_and_keeps_roles(tmp_path: Path) -> None:
    store = AccountStore.in_data_dir(tmp_path)
    assert store.set_password("dating", "long-enough") is True
    assert store.set_password("zhang.min", "also-long-enough", Role.ADMIN) is True
    assert stat.S_IMODE(store.path.stat().st_mode) == 0o600
    text = store.path.read_text()
    assert "long-enough" not in text and "scrypt$" in text
    viewer, admin = (
        store.verify("dating", "long-enough"),
        store.verify("zhang.min", "also-long-enough"),
    )
    assert viewer is not None and viewer.role is Role.VIEWER
    assert viewer.may(Permission.VIEW) and not viewer.may(Permission.MANAGE)
    assert admin is not None and admin.may(Permission.MANAGE)
    assert store.verify("dating", "wrong-password") is None
    assert store.verify("nobody", "long-enough") is None
    # a new password keeps the role and the creation time
    created = viewer.created_utc
    assert store.set_password("dating", "another-password") is False
    again = store.get("dating")
    assert again is not None and again.role is Role.VIEWER and again.created_utc == created


def test_a_running_gateway_sees_accounts_changed_by_the_cli(tmp_path: Path) -> None:
    gateway_view = AccountStore.in_data_dir(tmp_path)
    assert gateway_view.accounts() == {}
    AccountStore.in_data_dir(tmp_path).set_password("dating", "long-enough")
    assert "dating" in gateway_view.accounts()
    AccountStore.in_data_dir(tmp_path).remove("dating")
    assert gateway_view.get("dating") is None


@pytest.mark.parametrize(
    ("name", "password"),
    [
        ("", "long-enough"),
        ("has space", "long-enough"),
        ("x" * 33, "long-enough"),
        ("a/b", "long-enough"),
        ("dating", "short"),
        ("dating", "p" * 300),
    ],
)
def test_unusable_names_and_passwords_are_refused(tmp_path: Path, name: str, password: str) -> None:
    with pytest.raises(AccountError):
        AccountStore.in_data_dir(tmp_path).set_password(name, password)


def test_chinese_names_are_fine(tmp_path: Path) -> None:
    store = AccountStore.in_data_dir(tmp_path)
    store.set_password("大厅管理员", "long-enough")
    assert store.verify("大厅管理员", "long-enough") is not None


def test_session_cookie_is_signed_and_ends_with_the_password(tmp_path: Path) -> None:
    store = AccountStore.in_data_dir(tmp_path)
    store.set_password("dating", "long-enough")
    clock = FakeClock()
    signer = SessionSigner(load_or_create_key(tmp_path), store, 3600, clock)
    account = store.get("dating")
    assert account is not None
    cookie = signer.issue(account)
    session = signer.check(cookie)
    assert session is not None and session.account.name == "dating"

    version, body, signature = cookie.split(".")
    forged_body = body[:-2] + ("A" if body[-2] != "A" else "B") + body[-1]
    assert signer.check(f"{version}.{forged_body}.{signature}") is None
    other_key = SessionSigner(b"k" * 32, store, 3600, clock)
    assert other_key.check(cookie) is None
    assert signer.check("garbage") is None and signer.check(None) is None

    clock.now += 3601
    assert signer.check(cookie) is None  # expired
    clock.now -= 3601
    store.set_password("dating", "a-new-password")
    assert signer.check(cookie) is None  # the old password's sessions end
    fresh = signer.issue(store.get("dating"))  # type: ignore[arg-type]
    store.remove("dating")
    assert signer.check(fresh) is None


def test_session_key_survives_a_restart_and_is_private(tmp_path: Path) -> None:
    key = load_or_create_key(tmp_path)
    assert load_or_create_key(tmp_path) == key and len(key) == 32
    assert stat.S_IMODE((tmp_path / "hall-session.key").stat().st_mode) == 0o600


def test_login_brake_counts_first_and_slows_an_account_rather_than_locking_it() -> None:
    clock = FakeClock()
    brake = LoginBrake(
        pair_limit=5,
        address_limit=8,
        account_limit=6,
        window_s=300,
        account_spacing_s=30,
        clock=clock,
    )
    assert [brake.admit("dating", "10.0.0.5") for _ in range(7)] == [0] * 5 + [301, 301]
    assert brake.admit("dating", "10.0.0.9") == 0  # another address may still try the name
    assert brake.admit("dating", "10.0.0.8") == 31  # past the account's limit: spaced
    clock.now += 30
    assert brake.admit("dating", "10.0.0.8") == 0
    assert brake.admit("other", "10.0.0.5") == 0  # the address's own limit: 8 in all
    assert brake.admit("third", "10.0.0.5") == 0
    assert brake.admit("fourth", "10.0.0.5") == 0
    assert brake.admit("fifth", "10.0.0.5") > 0
    brake.succeeded("dating", "10.0.0.8")  # the owner got in: the account is not slowed
    assert brake.admit("dating", "10.0.0.7") == 0
    clock.now += 301
    assert brake.admit("dating", "10.0.0.5") == 0


def _config(tmp_path: Path) -> Path:
    path = tmp_path / "edge.yaml"
    path.write_text(
        yaml.safe_dump({"hall": "H1", "gateway": "gw1", "data_dir": str(tmp_path / "data")})
    )
    return path


def test_cli_user_add_list_remove(tmp_path: Path) -> None:
    config = _config(tmp_path)
    runner = CliRunner()
    added = runner.invoke(
        cli, ["user", "add", "dating", "-c", str(config), "--password-stdin"], input="long-enough\n"
    )
    assert added.exit_code == 0, added.output
    assert "dating" in added.output
    admin = runner.invoke(
        cli,
        ["user", "add", "zhang", "-c", str(config), "--role", "admin", "--password-stdin"],
        input="another-secret\n",
    )
    assert admin.exit_code == 0, admin.output
    store = AccountStore.in_data_dir(tmp_path / "data")
    assert store.verify("dating", "long-enough") is not None
    assert store.verify("zhang", "another-secret").role is Role.ADMIN  # type: ignore[union-attr]

    listed = runner.invoke(cli, ["user", "list", "-c", str(config)])
    assert [line.split("\t")[:2] for line in listed.output.splitlines()] == [
        ["dating", "viewer"],
        ["zhang", "admin"],
    ]
    assert "scrypt" not in listed.output

    short = runner.invoke(
        cli, ["user", "add", "li", "-c", str(config), "--password-stdin"], input="short\n"
    )
    assert short.exit_code == 2 and "密码至少" in short.output
    assert runner.invoke(cli, ["user", "remove", "dating", "-c", str(config)]).exit_code == 0
    assert runner.invoke(cli, ["user", "remove", "dating", "-c", str(config)]).exit_code == 1
    names = [a["name"] for a in json.loads(store.path.read_text())["accounts"]]
    assert names == ["zhang"]


def test_cli_prompts_for_the_password_twice(tmp_path: Path) -> None:
    config = _config(tmp_path)
    result = CliRunner().invoke(
        cli, ["user", "add", "dating", "-c", str(config)], input="long-enough\nlong-enough\n"
    )
    assert result.exit_code == 0, result.output
    assert "long-enough" not in result.output  # hidden input
    assert AccountStore.in_data_dir(tmp_path / "data").verify("dating", "long-enough")
