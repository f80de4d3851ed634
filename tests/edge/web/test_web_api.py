"""The hall page over real HTTP: login, sessions, roles, headers, the JSON and the event stream.

The application runs in the same uvicorn embedding the gateway uses, on a real socket, over a
board fed by a real journal.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import json
import re
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from edge.clock import Clock
from edge.hallboard import BoardSources, HallBoard
from edge.journal import Journal
from edge.web import i18n
from edge.web.accounts import AccountStore, Role
from edge.web.app import create_app
from edge.web.server import HallPageServer
from edge.web.sessions import COOKIE, SessionSigner, load_or_create_key
from hallkit.i18n import LANGUAGES
from hallkit.login import accounts as login_accounts
from protocols.transport import TlsFiles

WEB = Path(__file__).resolve().parents[3] / "edge" / "web"


@pytest.fixture(autouse=True)
def cheap_hashes(monkeypatch: pytest.MonkeyPatch) -> None:
    """The real scrypt code with a small cost: these tests are about HTTP, not hashing (the
    cost is stored with each hash, so verification follows it)."""
    monkeypatch.setattr(login_accounts, "SCRYPT_N", 2**10)


@dataclass
class Site:
    url: str
    board: HallBoard
    accounts: AccountStore
    evidence: Path


@pytest.fixture
async def site(tmp_path: Path) -> AsyncIterator[Site]:
    async with Journal(tmp_path / "journal.db", Clock(assume_synced=True)) as journal:
        evidence = tmp_path / "evidence"
        board = HallBoard(
            BoardSources(journal, journal.clock),
            hall="H1",
            gateway="gw1",
            hall_name="锦江区政务服务中心",
            evidence_dir=evidence,
        )
        await board.start()
        accounts = AccountStore.in_data_dir(tmp_path)
        accounts.set_password("dating", "viewer-password")
        accounts.set_password("zhang", "admin-password", Role.ADMIN)
        signer = SessionSigner(load_or_create_key(tmp_path), accounts, 3600)
        server = HallPageServer(create_app(board, accounts, signer), "127.0.0.1", 0)
        await server.start()
        try:
            yield Site(server.url, board, accounts, evidence)
        finally:
            await board.stop()
            await server.stop()


@pytest.fixture
async def client(site: Site) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=site.url, timeout=10) as c:
        yield c


async def login(
    client: httpx.AsyncClient, name: str, password: str, *, next_page: str = "/", **headers: str
) -> httpx.Response:
    return await client.post(
        "/login", data={"username": name, "password": password, "next": next_page}, headers=headers
    )


async def test_nothing_without_a_login(client: httpx.AsyncClient) -> None:
    page = await client.get("/")
    assert page.status_code == 303 and page.headers["location"] == "/login?next=%2F"
    for path in (
        "/api/board",
        "/events",
        "/api/session",
        "/api/accounts",
        "/api/windows/1/snapshot",
    ):
        response = await client.get(path)
        assert response.status_code == 401, path
    form = await client.get("/login")
    assert form.status_code == 200 and "大厅管理员登录" in form.text
    assert "锦江区" not in form.text  # not even the hall's name before a login
    assert (await client.get("/healthz")).json() == {"status": "ok", "tasks": {}}


async def test_wrong_password_and_unknown_name_get_the_same_answer(
    client: httpx.AsyncClient,
) -> None:
    wrong = await login(client, "dating", "not-the-password")
    unknown = await login(client, "nobody", "not-the-password")
    for response in (wrong, unknown):
        assert response.status_code == 401
        assert "用户名或密码错误" in response.text
        assert COOKIE not in response.cookies
    assert (await client.get("/api/board")).status_code == 401


async def test_login_sets_a_strict_httponly_cookie_and_returns_to_the_page(
    client: httpx.AsyncClient,
) -> None:
    response = await login(client, "dating", "viewer-password", next_page="/?lang=en")
    assert response.status_code == 303 and response.headers["location"] == "/?lang=en"
    cookie = response.headers["set-cookie"]
    assert cookie.startswith(f"{COOKIE}=v1.")
    attributes = {part.strip().lower() for part in cookie.split(";")[1:]}
    assert {"httponly", "samesite=strict", "path=/", "max-age=3600"} <= attributes
    assert "secure" not in attributes  # plain HTTP on the hall's LAN; see the TLS test
    page = await client.get("/")
    assert page.status_code == 200 and "锦江区政务服务中心" in page.text
    session = (await client.get("/api/session")).json()
    assert session["user"] == "dating" and session["permissions"] == ["view"]


@pytest.mark.parametrize("target", ["//evil.example/", "https://evil.example/", "/\\evil"])
async def test_login_never_sends_anyone_elsewhere(client: httpx.AsyncClient, target: str) -> None:
    response = await login(client, "dating", "viewer-password", next_page=target)
    assert response.status_code == 303 and response.headers["location"] == "/"


async def test_a_login_form_posted_from_another_site_is_refused(client: httpx.AsyncClient) -> None:
    response = await login(client, "dating", "viewer-password", origin="http://evil.example")
    assert response.status_code == 403 and COOKIE not in response.cookies
    ours = await login(client, "dating", "viewer-password", origin=str(client.base_url))
    assert ours.status_code == 303


async def test_read_only_by_default_and_admins_see_the_accounts(site: Site) -> None:
    async with (
        httpx.AsyncClient(base_url=site.url) as viewer,
        httpx.AsyncClient(base_url=site.url) as admin,
    ):
        await login(viewer, "dating", "viewer-password")
        await login(admin, "zhang", "admin-password")
        assert (await viewer.get("/api/accounts")).status_code == 403
        listed = await admin.get("/api/accounts")
        assert listed.status_code == 200
        assert [(a["name"], a["role"]) for a in listed.json()] == [
            ("dating", "viewer"),
            ("zhang", "admin"),
        ]
        assert "scrypt" not in listed.text


async def test_sessions_end_when_forged_or_the_password_changes(
    site: Site, client: httpx.AsyncClient
) -> None:
    await login(client, "dating", "viewer-password")
    cookie = client.cookies[COOKIE]
    head, body, signature = cookie.split(".")
    client.cookies.set(COOKIE, f"{head}.{body}x.{signature}")
    assert (await client.get("/api/board")).status_code == 401
    client.cookies.set(COOKIE, cookie)
    assert (await client.get("/api/board")).status_code == 200
    site.accounts.set_password("dating", "changed-password")
    assert (await client.get("/api/board")).status_code == 401
    page = await client.get("/")
    assert page.status_code == 303 and page.headers["location"].startswith("/login")


async def test_logout_clears_the_cookie(client: httpx.AsyncClient) -> None:
    await login(client, "dating", "viewer-password")
    response = await client.post("/logout")
    assert response.status_code == 303 and response.headers["location"] == "/login"
    assert (await client.get("/api/board")).status_code == 401


async def test_guessing_is_braked(client: httpx.AsyncClient) -> None:
    for _ in range(5):
        assert (await login(client, "dating", "guess-guess")).status_code == 401
    braked = await login(client, "dating", "viewer-password")  # even the right one, for now
    assert braked.status_code == 429 and "尝试次数过多" in braked.text


async def test_every_response_forbids_outside_sources(client: httpx.AsyncClient) -> None:
    await login(client, "dating", "viewer-password")
    for path in ("/", "/login", "/api/board", "/static/hall.js"):
        headers = (await client.get(path)).headers
        csp = headers["content-security-policy"]
        assert "default-src 'self'" in csp and "script-src 'self'" in csp, path
        assert headers["x-content-type-options"] == "nosniff"
        assert headers["x-frame-options"] == "DENY"
    assert (await client.get("/api/board")).headers["cache-control"] == "no-store"


async def test_the_page_loads_only_its_own_assets(client: httpx.AsyncClient) -> None:
    await login(client, "dating", "viewer-password")
    page = (await client.get("/")).text
    links = re.findall(r'(?:src|href)="([^"]+)"', page)
    assert links and all(link.startswith(("/", "data:")) for link in links), links
    for asset in ("/static/hall.js", "/static/hall.css"):
        response = await client.get(asset)
        assert response.status_code == 200 and len(response.content) > 1000
        assert not re.search(r"https?://", response.text), asset
    assert not list((WEB / "static").glob("*.map"))


def test_catalogue_has_every_text_in_both_languages() -> None:
    catalogue = i18n.MESSAGES.messages
    assert set(catalogue) == set(LANGUAGES)
    assert catalogue["zh"].keys() == catalogue["en"].keys()
    for key, zh in catalogue["zh"].items():
        en = catalogue["en"][key]
        assert zh and en, key
        assert set(re.findall(r"\{(\w+)\}", zh)) == set(re.findall(r"\{(\w+)\}", en)), key
    # every key the page and the board can ask for is there
    script = (WEB / "static" / "hall.js").read_text()
    used = {k for k in re.findall(r'\bt\("([\w.]+)"', script) if not k.endswith(".")}
    board = "".join(
        (WEB.parent / module).read_text() for module in ("hallboard.py", "hallboard_health.py")
    )
    used |= {f"problem.{code}" for code in re.findall(r'"code": "(\w+)"', board)}
    used |= {f"problem.{code}" for code in re.findall(r'\(\("(\w+)", \w+\)', board)}
    used |= {
        f"evaluator.{s}"
        for s in ("online", "offline", "stuck_key", "display_failed", "invited", "unknown", "none")
    }
    used |= {f"presence.{s}" for s in ("present", "paused", "away", "unknown")}
    used |= {f"key.{k}" for k in range(1, 7)} | {"camera.present", "camera.away"}
    missing = sorted(k for k in used if k not in catalogue["zh"])
    assert not missing
    assert len([k for k in used if k.startswith("problem.")]) >= 15


async def test_english_on_request_and_remembered(client: httpx.AsyncClient) -> None:
    english = await client.get("/login?lang=en")
    assert "Hall manager sign-in" in english.text and 'lang="en"' in english.text
    assert english.cookies.get(i18n.MESSAGES.cookie) == "en"
    again = await client.get("/login")
    assert "Hall manager sign-in" in again.text
    chinese = await client.get("/login?lang=zh")
    assert "大厅管理员登录" in chinese.text and 'lang="zh-CN"' in chinese.text


async def read_events(response: httpx.Response) -> AsyncIterator[dict[str, Any]]:
    event = None
    async for line in response.aiter_lines():
        if line.startswith("event: "):
            event = line[7:]
        elif line.startswith("data: "):
            message = json.loads(line[6:])
            assert message["type"] == event
            yield message


async def test_events_stream_the_snapshot_then_changes(
    site: Site, client: httpx.AsyncClient
) -> None:
    await login(client, "dating", "viewer-password")
    async with client.stream("GET", "/events") as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        messages = read_events(response)
        snapshot = await anext(messages)
        assert snapshot["type"] == "snapshot" and snapshot["hall"]["id"] == "H1"
        site.board.on_journaled(
            "queue.event", {"mseq": 1, "type": "LI", "raw": "x", "window": 7, "staff": "100233"}
        )
        update = await asyncio.wait_for(anext(messages), 5)
        assert update["type"] == "update"
        assert update["tiles"][0]["window"] == 7 and update["tiles"][0]["presence"] == "present"
    await asyncio.sleep(0.1)
    assert site.board.subscribers == 0  # the closed stream let go of its subscription


async def test_stopping_the_board_ends_open_streams(site: Site, client: httpx.AsyncClient) -> None:
    await login(client, "dating", "viewer-password")
    async with client.stream("GET", "/events") as response:
        messages = read_events(response)
        assert (await anext(messages))["type"] == "snapshot"
        await site.board.stop()
        rest = [m async for m in messages]  # ends instead of hanging
    assert rest == []


async def test_camera_snapshot_only_from_the_evidence_dir(
    site: Site, client: httpx.AsyncClient
) -> None:
    await login(client, "dating", "viewer-password")
    (site.evidence / "day").mkdir(parents=True)
    (site.evidence / "day" / "w2.jpg").write_bytes(b"\xff\xd8\xff\xe0jpeg")
    for window, snapshot in ((2, "day/w2.jpg"), (3, "../journal.db")):
        site.board.on_journaled(
            "camera.presence",
            {
                "camera": "c",
                "window": window,
                "staff": "away",
                "since": "2026-11-21T02:00:00Z",
                "since_mono_ns": 1,
                "confidence": 1.0,
                "snapshot": snapshot,
            },
        )
    image = await client.get("/api/windows/2/snapshot")
    assert image.status_code == 200 and image.content == b"\xff\xd8\xff\xe0jpeg"
    assert (await client.get("/api/windows/3/snapshot")).status_code == 404


def _self_signed(tmp: Path) -> TlsFiles:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    (tmp / "page.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tmp / "page.key").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return TlsFiles(ca=tmp / "page.crt", cert=tmp / "page.crt", key=tmp / "page.key")


async def test_https_when_configured_with_secure_cookies(tmp_path: Path, site: Site) -> None:
    tls = _self_signed(tmp_path)
    signer = SessionSigner(b"s" * 32, site.accounts, 3600)
    server = HallPageServer(
        create_app(site.board, site.accounts, signer, secure_cookies=True), "127.0.0.1", 0, tls
    )
    await server.start()
    try:
        assert server.url.startswith("https://")
        trust = ssl.create_default_context(cafile=str(tls.cert))
        async with httpx.AsyncClient(base_url=server.url, verify=trust) as c:
            response = await login(c, "dating", "viewer-password")
            assert response.status_code == 303
            assert "secure" in response.headers["set-cookie"].lower()
    finally:
        await server.stop()


async def test_a_port_in_use_is_an_error_not_a_crash(site: Site) -> None:
    port = int(site.url.rsplit(":", 1)[1])
    second = HallPageServer(
        create_app(site.board, site.accounts, SessionSigner(b"s" * 32, site.accounts, 60)),
        "127.0.0.1",
        port,
    )
    with pytest.raises(OSError):
        await second.start()
