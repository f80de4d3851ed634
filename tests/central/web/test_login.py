"""Login, the session cookie and CSRF: the pages' fetches use the same API as bearer clients,
with the cookie instead of a token, and every state-changing call needs the CSRF token."""

from __future__ import annotations

import base64
import json

import pytest

from central.security import accounts
from central.security.tokens import Role
from central.web.sessions import CSRF_COOKIE, SESSION_COOKIE
from tests.central.web.conftest import Site, csrf_of, hidden_csrf, logged_in, login


async def test_pages_send_strangers_to_the_login_form_and_the_api_refuses_them(site: Site) -> None:
    async with site.client() as c:
        page = await c.get("/reviews?first=2026-11-01")
        assert page.status_code == 303
        assert page.headers["location"] == "/login?next=%2Freviews%3Ffirst%3D2026-11-01"
        assert (await c.get("/api/v1/overview")).status_code == 401
        form = await c.get("/login")
        assert form.status_code == 200 and "监察中心登录" in form.text


async def test_login_sets_a_strict_httponly_session_and_a_readable_csrf_cookie(site: Site) -> None:
    async with site.client() as c:
        reply = await login(c, "jiancha")
        assert reply.status_code == 303 and reply.headers["location"] == "/overview"
        cookies = {h.split("=", 1)[0]: h for h in reply.headers.get_list("set-cookie")}
        session = cookies[SESSION_COOKIE].lower()
        assert "httponly" in session and "samesite=strict" in session and "path=/" in session
        assert "httponly" not in cookies[CSRF_COOKIE].lower()
        assert "samesite=strict" in cookies[CSRF_COOKIE].lower()
        assert (await c.get("/api/v1/overview")).status_code == 200
        page = await c.get("/overview")
        assert page.status_code == 200 and 'id="user-name">jiancha<' in page.text


async def test_wrong_password_unknown_name_and_disabled_account_are_refused_alike(
    site: Site,
) -> None:
    await accounts.set_disabled(site.engine, "yunwei", True)
    async with site.client() as c:
        for name, password in (
            ("jiancha", "wrong-password"),
            ("nobody", "监察-Test-2026"),
            ("yunwei", "监察-Test-2026"),
        ):
            reply = await login(c, name, password)
            assert reply.status_code == 401, name
            assert "用户名或密码错误" in reply.text
            assert SESSION_COOKIE not in reply.headers.get("set-cookie", "")


async def test_a_session_ends_when_the_account_is_disabled(site: Site) -> None:
    async with logged_in(site, "jiancha") as client:
        assert (await client.get("/api/v1/overview")).status_code == 200
        await accounts.set_disabled(site.engine, "jiancha", True)
        assert (await client.get("/api/v1/overview")).status_code == 401
        assert (await client.get("/overview")).status_code == 303


async def test_a_session_ends_when_the_password_changes(site: Site) -> None:
    async with logged_in(site, "h2-guanli") as client:
        assert (await client.get("/api/v1/overview")).status_code == 200
        await accounts.set_password(site.engine, "h2-guanli", "a-new-pass-2026")
        assert (await client.get("/api/v1/overview")).status_code == 401


async def test_forged_or_tampered_cookies_are_not_sessions(site: Site) -> None:
    async with logged_in(site, "h2-guanli") as client:
        real = client.cookies[SESSION_COOKIE]
        version, body, signature = real.split(".")
        payload = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
        payload["u"] = "jiancha"  # pretend to be the supervisor
        forged = base64.urlsafe_b64encode(json.dumps(payload).encode()).rstrip(b"=").decode()
        for cookie in (f"{version}.{forged}.{signature}", real[:-2] + "xx", "v1.e30.AAAA"):
            client.cookies.set(SESSION_COOKIE, cookie)
            assert (await client.get("/api/v1/overview")).status_code == 401


async def test_cookie_posts_need_the_csrf_token_and_the_same_origin(site: Site) -> None:
    gateway, seq = site.seed.flagged["no_session"]
    url = f"/api/v1/evaluations/{gateway}/{seq}/reviews"
    body = {"flag": "NO_SESSION", "decision": "confirmed", "note": "核实属实"}
    async with logged_in(site, "jiancha") as client:
        token = csrf_of(client)
        assert (await client.post(url, json=body)).status_code == 403
        assert (
            await client.post(url, json=body, headers={"X-CSRF-Token": "x" + token[1:]})
        ).status_code == 403
        cross = {"X-CSRF-Token": token, "Origin": "https://evil.example"}
        assert (await client.post(url, json=body, headers=cross)).status_code == 403
        ok = await client.post(
            url, json=body, headers={"X-CSRF-Token": token, "Origin": "http://central.test"}
        )
        assert ok.status_code == 201, ok.text
    # a bearer client needs no CSRF token: a browser never sends a bearer token by itself
    async with site.client() as c:
        headers = await site.bearer(Role.SUPERVISOR)
        reply = await c.post(url, json={**body, "supersedes": ok.json()["id"]}, headers=headers)
        assert reply.status_code == 201, reply.text


async def test_logout_needs_the_form_token_and_clears_the_cookies(site: Site) -> None:
    async with logged_in(site, "jiancha") as client:
        page = await client.get("/overview")
        refused = await client.post("/logout", data={"csrf": "wrong"})
        assert refused.status_code == 403
        reply = await client.post("/logout", data={"csrf": hidden_csrf(page.text)})
        assert reply.status_code == 303 and reply.headers["location"] == "/login"
        assert not client.cookies.get(SESSION_COOKIE)
        assert (await client.get("/api/v1/overview")).status_code == 401


async def test_login_is_throttled_after_repeated_failures(site: Site) -> None:
    async with site.client() as c:
        for _ in range(5):
            assert (await login(c, "jiancha", "guess-guess")).status_code == 401
        throttled = await login(c, "jiancha")  # even the right password now waits
        assert throttled.status_code == 429 and "秒后再试" in throttled.text


@pytest.mark.parametrize(
    "target", ["https://evil.example/", "//evil.example/x", "/\\evil", "/login?next=/x"]
)
async def test_login_never_redirects_off_site(site: Site, target: str) -> None:
    async with site.client() as c:
        reply = await c.post(
            "/login", data={"username": "jiancha", "password": "监察-Test-2026", "next": target}
        )
        assert reply.headers["location"] == "/overview"


async def test_login_from_another_origin_is_refused(site: Site) -> None:
    async with site.client() as c:
        reply = await c.post(
            "/login",
            data={"username": "jiancha", "password": "监察-Test-2026"},
            headers={"Origin": "https://evil.example"},
        )
        assert reply.status_code == 403


async def test_english_is_a_switch_away_and_remembered(site: Site) -> None:
    async with logged_in(site, "jiancha") as client:
        english = await client.get("/overview?lang=en")
        assert 'lang="en"' in english.text and "Supervision centre" in english.text
        again = await client.get("/bulletin")
        assert 'lang="en"' in again.text and "Monthly bulletin" in again.text
        chinese = await client.get("/bulletin?lang=zh")
        assert 'lang="zh-CN"' in chinese.text and "月度通报" in chinese.text


async def test_pages_allow_no_framing_and_no_foreign_scripts(site: Site) -> None:
    async with logged_in(site, "jiancha") as client:
        page = await client.get("/overview")
    policy = page.headers["content-security-policy"]
    assert "script-src 'self'" in policy and "frame-ancestors 'none'" in policy
    assert page.headers["x-frame-options"] == "DENY"
    assert page.headers["cache-control"] == "no-store"
