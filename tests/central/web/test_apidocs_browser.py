"""/docs (Swagger UI) and /redoc in a real Chromium with every request to another host
aborted: both render central's operations from the vendored assets alone."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from urllib.parse import urlsplit

import httpx
import pytest
import uvicorn
from playwright.sync_api import Browser, Page, Route, expect, sync_playwright

from central.api.app import create_app
from central.store.db import make_engine
from tests.central.web.test_dashboard_browser import CHROMIUM, CHROMIUM_FLAGS, SCREENSHOTS, shoot
from tests.support.broker import free_port


@pytest.fixture(scope="module")
def api_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Central's app (the docs need no data) under uvicorn on a private port."""
    db = tmp_path_factory.mktemp("apidocs") / "central.db"
    port = free_port()
    app = create_app(make_engine(f"sqlite+aiosqlite:///{db}"))
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    )
    thread = threading.Thread(target=lambda: asyncio.run(server.serve()), daemon=True)
    thread.start()
    started = threading.Event()
    while not started.wait(0.05):
        if server.started:
            started.set()
        assert thread.is_alive(), "uvicorn did not start"
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: run deploy/scripts/install-browser-test-deps.sh")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_FLAGS)
        try:
            yield b
        finally:
            b.close()


def _offline_page(browser: Browser, api_url: str, outside: list[str]) -> Page:
    context = browser.new_context(base_url=api_url, viewport={"width": 1366, "height": 768})
    own = urlsplit(api_url).netloc

    def only_central(route: Route) -> None:
        if urlsplit(route.request.url).netloc in (own, ""):
            route.continue_()
        else:
            outside.append(route.request.url)
            route.abort("internetdisconnected")

    context.route("**/*", only_central)
    return context.new_page()


def test_swagger_ui_renders_the_operations_offline(browser: Browser, api_url: str) -> None:
    outside: list[str] = []
    page = _offline_page(browser, api_url, outside)
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto("/docs")
    expect(page.locator(".swagger-ui .info .title")).to_contain_text("Hallwatch central")
    operations = page.locator(".opblock")
    expect(operations.first).to_be_visible()
    assert operations.count() >= 20
    expect(page.locator(".opblock-summary-path", has_text="/api/v1/cases").first).to_be_visible()
    shoot(page, "api-docs")
    assert outside == [] and errors == []
    assert (SCREENSHOTS / "api-docs-1366x768.png").exists()


def test_redoc_renders_the_operations_offline(browser: Browser, api_url: str) -> None:
    outside: list[str] = []
    page = _offline_page(browser, api_url, outside)
    page.goto("/redoc")
    expect(page.locator("h1", has_text="Hallwatch central")).to_be_visible(timeout=30_000)
    expect(page.get_by_text("/api/v1/cases").first).to_be_attached()
    assert outside == []


def test_docs_page_names_only_vendored_assets(api_url: str) -> None:
    for path, asset in (
        ("/docs", "/static/vendor/swagger-ui/swagger-ui-bundle.js"),
        ("/redoc", "/static/vendor/redoc/redoc.standalone.js"),
    ):
        html = httpx.get(f"{api_url}{path}", timeout=10).text
        assert asset in html and "cdn" not in html.lower() and "googleapis" not in html
        assert httpx.get(f"{api_url}{asset}", timeout=30).status_code == 200
