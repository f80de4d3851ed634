"""The hall page in a real Chromium, served by a real gateway process on simulated devices.

One hall for the module (see ``rig``): a private Mosquitto, sixteen FF 68 evaluators and a $QM
queue machine on pseudo-terminals, the gateway as its own process with its hall page on, an
account made with ``hallwatch-edge user add``. Debian's Chromium, driven by Playwright, logs
in, watches tiles change live as keys are pressed and devices fail, switches language, and
saves screenshots to test-output/screenshots/. The tests run in file order; the last one stops
the broker.
"""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, BrowserContext, Page

from tests.edge.web.rig import (
    OUTPUT,
    PASSWORD,
    USER,
    WINDOWS,
    Hall,
    chromium,
    running_hall,
)
from tests.support import procs

SCREENSHOTS = OUTPUT / "screenshots"
FAULT_RED = "rgb(183, 28, 28)"  # --fault in hall.css
SIZES = [(1920, 1080), (1366, 768)]


@pytest.fixture(scope="module")
def hall(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hall]:
    with running_hall(tmp_path_factory.mktemp("hall-page")) as hall:
        try:
            yield hall
        finally:
            if hall.latencies:
                OUTPUT.mkdir(exist_ok=True)
                (OUTPUT / "hall-page-latency.json").write_text(
                    json.dumps({"key_to_tile_s": hall.latencies}, indent=1)
                )


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as b:
        yield b


def new_context(
    hall: Hall, browser: Browser, size: tuple[int, int] = SIZES[0], **options: Any
) -> BrowserContext:
    context = browser.new_context(
        viewport={"width": size[0], "height": size[1]}, locale="zh-CN", **options
    )
    context.set_default_timeout(10_000)
    context.on("request", lambda request: hall.requests.append(request.url))

    def on_page(page: Page) -> None:
        page.on(
            "console", lambda m: hall.console_errors.append(m.text) if m.type == "error" else None
        )
        page.on("pageerror", lambda e: hall.console_errors.append(str(e)))

    context.on("page", on_page)
    return context


def log_in(page: Page, hall: Hall, password: str = PASSWORD) -> None:
    page.goto(hall.url + "/")
    page.fill("input[name=username]", USER)
    page.fill("input[name=password]", password)
    page.click("button[type=submit]")


@pytest.fixture(scope="module")
def board(hall: Hall, browser: Browser) -> Iterator[Page]:
    """One logged-in kiosk page, kept open across the tests (as on the hall's screen)."""
    context = new_context(hall, browser)
    page = context.new_page()
    log_in(page, hall)
    page.wait_for_selector(".tile")
    page.evaluate("window.__hwMarker = 'same document'")
    try:
        yield page
    finally:
        context.close()


def tile(page: Page, window: int) -> Any:
    return page.locator(f'.tile[data-window="{window}"]')


def shot(page: Page, name: str) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / name
    page.screenshot(path=str(path))
    return path


# -- logging in --------------------------------------------------------------------------------


def test_not_logged_in_goes_to_the_login_form(hall: Hall, browser: Browser) -> None:
    context = new_context(hall, browser, SIZES[1])
    page = context.new_page()
    page.goto(hall.url + "/")
    assert page.url == hall.url + "/login?next=%2F"
    assert page.locator("h1").inner_text() == "大厅管理员登录"
    assert page.locator(".tile").count() == 0
    assert "锦江区" not in page.content()  # nothing of the hall before a login
    api = page.request.get(hall.url + "/api/board")
    assert api.status == 401
    shot(page, "login-1366x768-zh.png")
    context.close()


def test_a_wrong_password_is_refused(hall: Hall, browser: Browser) -> None:
    context = new_context(hall, browser)
    page = context.new_page()
    log_in(page, hall, password="not-the-password")
    assert page.locator("#login-error").inner_text() == "用户名或密码错误"
    assert "/login" in page.url and page.locator(".tile").count() == 0
    assert not [c for c in context.cookies() if c["name"] == "hw_session"]
    context.close()


def test_logged_in_every_window_has_its_tile(hall: Hall, board: Page) -> None:
    tiles = board.locator(".tile")
    assert tiles.count() == WINDOWS
    for window in range(1, WINDOWS + 1):
        assert tile(board, window).locator(".tile-no").inner_text() == f"{window} 号窗口"
        assert tile(board, window).is_visible()
    assert board.locator("#user").inner_text() == f"{USER} · 只读"
    assert board.locator("#stream-state").get_attribute("data-state") == "live"
    assert board.locator("#health li").first.inner_text() == "运行正常"
    cookie = next(c for c in board.context.cookies() if c["name"] == "hw_session")
    assert cookie["httpOnly"] is True and cookie["sameSite"] == "Strict"
    assert "hw_session" not in board.evaluate("document.cookie")  # out of scripts' reach


def test_queue_machine_events_show_on_tiles_and_queue(hall: Hall, board: Page) -> None:
    qm, call = hall.qm, hall.sims.call
    call(lambda: qm.login(3, "100233"))
    call(lambda: qm.login(4, "100234"))
    call(lambda: qm.login(5, "100235"))
    first = call(lambda: qm.issue_ticket("A01", "不动产登记")).ticket
    call(lambda: qm.issue_ticket("A01", "不动产登记"))
    call(lambda: qm.issue_ticket("B02", "社保医保"))
    fourth = call(lambda: qm.issue_ticket("A01", "不动产登记")).ticket
    call(lambda: qm.call(first, 3))
    call(lambda: qm.start(first, 3, "100233"))
    call(lambda: qm.pause(5, "100235"))
    # window 4 finishes a service: its evaluator invites the citizen (邀请评价), who answers
    call(lambda: qm.call(fourth, 4))
    call(lambda: qm.start(fourth, 4, "100234"))
    call(lambda: qm.finish(fourth, 4, "100234"))
    board.wait_for_selector('.tile[data-window="4"][data-evaluator="invited"]')
    assert tile(board, 4).locator(".eval-state").inner_text() == "邀请评价中"
    hall.sims.call(lambda: hall.bus.press(hall.addr(4), 1))
    board.wait_for_selector('.tile[data-window="4"][data-evaluator="online"]')
    assert tile(board, 4).locator('.key[data-key="1"] b').inner_text() == "1"
    three = tile(board, 3)
    board.wait_for_function(
        "t => document.querySelector('.tile[data-window=\"3\"] .ticket-no')?.textContent === t",
        arg=f"办理 {first}",
    )
    assert three.locator(".tile-staff").inner_text() == "张敏 100233"  # the name first
    assert three.locator(".presence").inner_text() == "在岗"
    assert tile(board, 5).get_attribute("data-presence") == "paused"
    board.wait_for_function("() => document.getElementById('queue-summary').dataset.total === '2'")
    assert board.locator("#queue-summary").inner_text().startswith("等候 2 人 · 最长等候")
    rows = board.locator("#queue-services tr")
    assert [rows.nth(i).locator("td").first.inner_text() for i in range(rows.count())] == [
        "不动产登记",
        "社保医保",
    ]


# -- live updates --------------------------------------------------------------------------------

WATCH = """([number, total]) => {
  // a MutationObserver notes the moment the tile shows the new count (no polling delay)
  window.__seen = null;
  const find = () => document.querySelector(`.tile[data-window="${number}"] .tile-keys`);
  const observer = new MutationObserver(() => {
    const keys = find();
    if (keys && Number(keys.dataset.total) >= total && window.__seen === null) {
      window.__seen = Date.now();
      observer.disconnect();
    }
  });
  observer.observe(document.getElementById('tiles'), {subtree: true, childList: true});
}"""


def test_a_key_press_shows_on_its_tile_within_a_second(hall: Hall, board: Page) -> None:
    for window, key in ((2, 1), (7, 2), (9, 1), (12, 4), (16, 1), (2, 1), (11, 6)):
        keys = tile(board, window).locator(".tile-keys")
        before = int(keys.get_attribute("data-total") or 0)
        before_key = int(keys.locator(f'[data-key="{key}"] b').inner_text())
        board.evaluate(WATCH, [window, before + 1])
        pressed = time.time()
        hall.sims.call(partial(hall.bus.press, hall.addr(window), key))
        board.wait_for_function("() => typeof window.__seen === 'number'", timeout=5000)
        hall.latencies.append(board.evaluate("window.__seen") / 1000 - pressed)
        assert int(keys.get_attribute("data-total") or 0) == before + 1
        assert int(keys.locator(f'[data-key="{key}"] b').inner_text()) == before_key + 1
    assert board.evaluate("window.__hwMarker") == "same document"  # no reload happened
    assert board.evaluate("performance.getEntriesByType('navigation').length") == 1
    median = statistics.median(hall.latencies)
    print(
        f"key press → tile: median {median * 1000:.0f} ms, max "
        f"{max(hall.latencies) * 1000:.0f} ms over {len(hall.latencies)} presses"
    )
    assert median < 1.0, hall.latencies


def test_a_silent_evaluator_turns_its_tile_red_with_advice(hall: Hall, board: Page) -> None:
    six = tile(board, 6)
    assert "tile--fault" not in (six.get_attribute("class") or "")
    hall.sims.call(lambda: setattr(hall.bus.devices[hall.addr(6)], "silent", True))
    board.wait_for_selector('.tile[data-window="6"].tile--fault')
    assert six.get_attribute("data-evaluator") == "offline"
    assert six.locator(".tile-problem").inner_text() == "评价器离线：检查电源和连线"
    assert six.evaluate("el => getComputedStyle(el).backgroundColor") == FAULT_RED
    problem = board.locator('#health-problems li[data-code="evaluators_offline"]')
    assert problem.inner_text() == "评价器离线（6 号窗口）：检查评价器电源和连线"
    assert problem.evaluate("el => getComputedStyle(el).backgroundColor") == FAULT_RED
    assert board.locator("#health").get_attribute("data-ok") == "false"

    hall.sims.call(lambda: hall.bus.set_flags(hall.addr(8), stuck_key=True))
    board.wait_for_selector('.tile[data-window="8"][data-evaluator="stuck_key"]')
    assert tile(board, 8).locator(".tile-problem").inner_text() == (
        "按键卡住：检查按键或更换评价器"
    )
    shot(board, "hall-1920x1080-zh-faults.png")

    hall.sims.call(lambda: setattr(hall.bus.devices[hall.addr(6)], "silent", False))
    hall.sims.call(lambda: hall.bus.set_flags(hall.addr(8), stuck_key=False))
    board.wait_for_selector('.tile[data-window="6"][data-evaluator="online"]')
    board.wait_for_selector('.tile[data-window="8"][data-evaluator="online"]')
    assert "tile--fault" not in (six.get_attribute("class") or "")
    board.wait_for_selector('#health[data-ok="true"]')


def test_english_switch_and_back(hall: Hall, board: Page) -> None:
    board.click("#lang-switch")
    assert tile(board, 1).locator(".tile-no").inner_text() == "Window 1"
    assert board.locator("#health h2").inner_text() == "Gateway health"
    assert board.locator("#stream-state").inner_text() == "Live"
    assert board.evaluate("document.documentElement.lang") == "en"
    assert tile(board, 3).locator(".tile-staff").inner_text() == "张敏 100233"  # names stay
    cookie = next(c for c in board.context.cookies() if c["name"] == "hw_lang")
    assert cookie["value"] == "en"
    # a second screen (same browser profile) opens in English straight away
    other = board.context.new_page()
    other.goto(hall.url + "/")
    other.wait_for_selector(".tile")
    assert other.locator("#health h2").inner_text() == "Gateway health"
    other.close()
    board.click("#lang-switch")
    assert tile(board, 1).locator(".tile-no").inner_text() == "1 号窗口"
    assert board.locator("#health h2").inner_text() == "网关状态"


# -- rendering -------------------------------------------------------------------------------------

LAYOUT = """() => {
  const inside = (r) => r.left >= 0 && r.top >= 0 && r.right <= innerWidth + 0.5
    && r.bottom <= innerHeight + 0.5;
  const tiles = [...document.querySelectorAll('.tile')];
  return {
    scroll: [document.documentElement.scrollWidth - innerWidth,
             document.documentElement.scrollHeight - innerHeight],
    tilesOutside: tiles.filter(t => !inside(t.getBoundingClientRect())).length,
    tilesOverflowing: tiles.filter(t => {
      const body = t.querySelector('.tile-body');
      return [...body.children].some(c => c.getBoundingClientRect().bottom
        > t.getBoundingClientRect().bottom + 0.5);
    }).length,
    panelsOutside: [...document.querySelectorAll('.panel, .bar')]
      .filter(p => !inside(p.getBoundingClientRect())).length,
    windowNumberPx: parseFloat(getComputedStyle(document.querySelector('.tile-no')).fontSize),
  };
}"""

GLYPHS = """() => {
  // Draw each character alone: a font without CJK draws the same box (or nothing) for all
  // of them, so distinct bitmaps with ink mean real glyphs.
  const family = getComputedStyle(document.body).fontFamily;
  const canvas = document.createElement('canvas');
  canvas.width = canvas.height = 64;
  const g = canvas.getContext('2d', {willReadFrequently: true});
  const draw = (ch) => {
    g.clearRect(0, 0, 64, 64);
    g.font = `48px ${family}`;
    g.fillText(ch, 4, 52);
    const alpha = g.getImageData(0, 0, 64, 64).data.filter((_, i) => i % 4 === 3);
    return {ink: alpha.some(a => a > 0), key: alpha.join(',')};
  };
  const chars = [...'政务中心窗口评价满意离线'];
  const drawn = chars.map(draw);
  const missing = draw('\\u{10FFFD}');  // a private-use code point no font covers
  return {
    chars: chars.length,
    distinct: new Set(drawn.map(d => d.key)).size,
    withInk: drawn.filter(d => d.ink).length,
    likeMissing: drawn.filter(d => d.key === missing.key).length,
    widthZh: g.measureText('政务服务中心').width,
  };
}"""


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_renders_at_big_screen_and_kiosk_sizes(
    hall: Hall, browser: Browser, board: Page, size: tuple[int, int]
) -> None:
    context = new_context(hall, browser, size, storage_state=board.context.storage_state())
    page = context.new_page()
    for lang in ("zh", "en"):
        page.goto(f"{hall.url}/?lang={lang}")
        page.wait_for_selector(f'.tile[data-window="{WINDOWS}"]')
        page.wait_for_selector('#stream-state[data-state="live"]')
        layout = page.evaluate(LAYOUT)
        assert layout["scroll"] == [0, 0], layout
        assert layout["tilesOutside"] == 0 and layout["tilesOverflowing"] == 0, layout
        assert layout["panelsOutside"] == 0, layout
        assert layout["windowNumberPx"] >= 20, layout  # readable across a room
        path = shot(page, f"hall-{size[0]}x{size[1]}-{lang}.png")
        assert path.stat().st_size > 20_000
    glyphs = page.evaluate(GLYPHS)
    assert glyphs["withInk"] == glyphs["chars"], glyphs
    assert glyphs["distinct"] == glyphs["chars"] and glyphs["likeMissing"] == 0, glyphs
    context.close()


def test_nothing_is_loaded_from_anywhere_else(hall: Hall, board: Page) -> None:
    assert hall.requests
    outside = [u for u in hall.requests if not u.startswith((hall.url + "/", "data:"))]
    assert not outside
    # CSP violations and script errors would show here; a refused login's 401 is expected
    unexpected = [e for e in hall.console_errors if "401" not in e]
    assert not unexpected


def test_the_kiosk_comes_back_by_itself_after_a_gateway_restart(hall: Hall, board: Page) -> None:
    windows = (2, 7, 11, 16)
    totals = {w: tile(board, w).locator(".tile-keys").get_attribute("data-total") for w in windows}
    assert totals[2] == "2"
    serving = tile(board, 3).locator(".ticket-no").inner_text()
    hall.gateway.stop()
    board.wait_for_selector('#stream-state[data-state="lost"]')
    assert board.locator("#stream-state").inner_text() == "实时连接中断，正在重连"
    hall.gateway = procs.edge(hall.config, hall.tmp / "edge-restarted.log")
    board.wait_for_selector('#stream-state[data-state="live"]', timeout=30_000)
    board.wait_for_selector(
        f'.tile[data-window="{WINDOWS}"][data-evaluator="online"]', timeout=30_000
    )
    # the signed session outlived the process; today's picture was replayed from the journal
    assert {
        w: tile(board, w).locator(".tile-keys").get_attribute("data-total") for w in windows
    } == totals
    assert tile(board, 3).locator(".ticket-no").inner_text() == serving
    assert board.evaluate("window.__hwMarker") == "same document"


# -- last: the uplink goes down ------------------------------------------------------------------


def test_uplink_down_turns_the_health_panel_red(hall: Hall, board: Page) -> None:
    uplink = board.locator('#health-values dd[data-field="uplink"]')
    assert uplink.inner_text() == "已连接"
    hall.broker.stop()
    problem = board.locator('#health-problems li[data-code="uplink_down"]')
    problem.wait_for()
    assert problem.inner_text() == "上行链路断开：检查网络或联系运维"
    assert problem.evaluate("el => getComputedStyle(el).backgroundColor") == FAULT_RED
    assert uplink.inner_text() == "已断开" and "bad" in (uplink.get_attribute("class") or "")
    assert board.locator("#health").get_attribute("data-ok") == "false"
    shot(board, "hall-1920x1080-zh-uplink-down.png")
    hall.broker.start()  # back: the gateway reconnects by itself and the panel clears
    board.wait_for_selector('#health[data-ok="true"]', timeout=40_000)
    assert uplink.inner_text() == "已连接"
