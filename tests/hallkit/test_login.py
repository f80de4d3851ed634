"""The shared login kit in plain values: the one name rule, password checks, signed cookies,
the safe login target and the message catalogue."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hallkit.i18n import Catalogue, pick, script_json
from hallkit.login import accounts
from hallkit.login.forms import safe_next
from hallkit.login.sessions import CookieSigner

KEY = b"k" * 32


@pytest.mark.parametrize(
    "name", ["dating", "zhang.min", "jiancha-wang", "gaj_li", "大厅管理员", "li@gaj", "x" * 32]
)
def test_names_either_page_accepted_are_accepted(name: str) -> None:
    assert accounts.check_name(name) == name


@pytest.mark.parametrize("name", ["", "has space", "a/b", "x" * 33, "semi;colon"])
def test_other_names_are_refused(name: str) -> None:
    with pytest.raises(accounts.AccountError):
        accounts.check_name(name)


def test_password_rules_take_each_pages_minimum(monkeypatch: pytest.MonkeyPatch) -> None:
    assert accounts.check_new_password("12345678", 8) == "12345678"
    with pytest.raises(accounts.AccountError, match="至少 10"):
        accounts.check_new_password("12345678", 10)
    with pytest.raises(accounts.AccountError):
        accounts.check_new_password("p" * 300, 8)
    monkeypatch.setattr(accounts, "SCRYPT_N", 2**10)
    encoded = accounts.hash_password("long-enough")
    assert accounts.password_matches("long-enough", encoded)
    assert not accounts.password_matches("wrong-one", encoded)
    assert not accounts.password_matches("long-enough", None)  # no such account
    assert not accounts.password_matches("p" * 300, encoded)  # never hashed
    assert accounts.password_tag(encoded) != accounts.password_tag(accounts.hash_password("x"))


def test_cookies_carry_a_csrf_token_only_when_given() -> None:
    now = [1_000_000.0]
    signer = CookieSigner(KEY, 60, lambda: now[0])
    plain = signer.open(signer.issue("dating", "tag"))
    assert plain is not None and (plain.name, plain.password_tag, plain.csrf) == (
        "dating",
        "tag",
        None,
    )
    bound = signer.open(signer.issue("dating", "tag", "token"))
    assert bound is not None and bound.csrf == "token"
    assert CookieSigner(b"o" * 32, 60).open(signer.issue("dating", "tag")) is None
    assert signer.open("x" * 5000) is None and signer.open("") is None
    cookie = signer.issue("dating", "tag")
    now[0] += 61
    assert signer.open(cookie) is None  # expired
    with pytest.raises(ValueError):
        CookieSigner(b"short", 60)


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        (None, "/home"),
        ("/reviews?first=2026-11-01", "/reviews?first=2026-11-01"),
        ("https://evil.example/", "/home"),
        ("//evil.example/x", "/home"),
        ("/\\evil", "/home"),
        ("/login?next=/x", "/home"),
    ],
)
def test_a_login_only_leads_to_a_path_here(target: str | None, expected: str) -> None:
    assert safe_next(target, "/home") == expected


def test_catalogue_falls_back_to_chinese_then_the_key(tmp_path: Path) -> None:
    path = tmp_path / "messages.json"
    path.write_text(
        json.dumps({"zh": {"hi": "你好，{name}", "only": "仅中文"}, "en": {"hi": "Hello, {name}"}}),
        encoding="utf-8",
    )
    messages = Catalogue(path, cookie="lang")
    assert messages.translate("en", "hi", name="Li") == "Hello, Li"
    assert messages.translate("en", "only") == "仅中文"
    assert messages.translate("en", "missing") == "missing"
    assert pick(None, "fr", "en") == "en" and pick(None) == "zh"
    assert messages.page_values("en")["other_lang"] == "zh"
    assert script_json({"a": "</script>"}) == '{"a": "\\u003c/script>"}'
