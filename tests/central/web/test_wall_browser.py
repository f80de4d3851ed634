"""The 大屏 (/wall) in a real Chromium against a real ``hallwatch-central serve`` on SQLite.

Thirty-two named halls (a province, five cities, their counties, and the dashboard seed's two
halls as townships with cases at every step of the ladder) from the registry, some with gateways
and today's evaluations; the browser is enrolled as a screen by its one-time
link (``hallwatch-central screen add``). At 1366×768, 1920×1080 and 3840×2160: the document
does not scroll, nothing in the panels is cut or outside the viewport, halls show by name and
never by code, and a bad review published through the broker as a gateway would reaches the
ticker within 5 s. A second run swaps the wall's JSON for a province of 1,992 halls: the tree
falls back to one square per hall, grouped by city, and still fits, as do six-digit counts.
Screenshots: test-output/screenshots/wall-*.png.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.publish as mqtt_publish
import pytest
from playwright.sync_api import Browser, BrowserContext, Page, Route, expect

from central.cases import ladder
from central.cases.masking import ApplicantMasker
from central.cases.store import Source, feed
from central.reporting.registry import HallEntry, put_halls
from central.rules.timelimit import DEFAULT_LADDER
from central.rules.workdays import WorkCalendar, business_date, day_start
from central.security import screens
from central.spine.ingest import Ingestor
from central.spine.registry import register
from central.store.db import make_engine
from hallkit.clock import utc_now
from tests.central.web import seed as seeds
from tests.central.web import wall_standin
from tests.central.web.test_dashboard_browser import (  # noqa: F401 (module fixture)
    OUTPUT,
    _wait_up,
    browser,
)
from tests.support import procs
from tests.support.broker import Broker, free_port
from tests.support.databases import AT_HEAD, scratch_database
from tests.support.hallevents import Gateway, key_press

SIZES = [(1366, 768), (1920, 1080), (3840, 2160)]
SCREENSHOTS = OUTPUT / "screenshots"
# a province, five cities, 24 counties: 30 halls in the registry, ids never shown on the wall
CITIES = {"HZ": "杭州市民中心", "NB": "宁波市行政服务中心", "WZ": "温州市政务服务中心",
          "JX": "嘉兴市行政审批服务中心", "HU": "湖州市民之家"}  # fmt: skip
COUNTIES = {
    "HZ": ["西湖区", "上城区", "拱墅区", "滨江区", "萧山区"],
    "NB": ["海曙区", "江北区", "鄞州区", "镇海区", "北仑区"],
    "WZ": ["鹿城区", "龙湾区", "瓯海区", "乐清市", "瑞安市"],
    "JX": ["南湖区", "秀洲区", "海宁市", "桐乡市"],
    "HU": ["吴兴区", "南浔区", "德清县", "长兴县", "安吉县"],
}
PROVINCE = ("ZJ-SJ", "浙江省政务服务中心")
# the dashboard seed's two halls (cases at every step of the ladder: a red card at H1, a
# 监察建议书 at H2) as townships of 拱墅区: the worst halls, the drill-down turns to them
SEEDED = {
    "H1": ("米市巷街道便民服务中心", "330105001000"),
    "H2": ("湖墅街道便民服务中心", "330105002000"),
}
NOISY = "ZJ-WZ-03"  # 瓯海区: its gateway sends the bad review


@dataclass
class Wall:
    url: str
    broker_port: int
    names: dict[str, str]  # hall id → 名称
    codes: list[str]  # one-time enrolment codes of screens, one per test


def registry() -> list[HallEntry]:
    """The registry in tree order: a province, its cities, their counties."""
    halls = [
        HallEntry(hall_id=PROVINCE[0], name=PROVINCE[1], level="province", region_code="330000")
    ]
    for c, (city, name) in enumerate(CITIES.items()):
        city_id = f"ZJ-{city}"
        halls.append(
            HallEntry(hall_id=city_id, name=name, level="city", parent_id=PROVINCE[0],
                      region_code=f"33{c + 1:02d}00")
        )  # fmt: skip
        halls += [
            HallEntry(hall_id=f"{city_id}-{i + 1:02d}", name=f"{county}行政服务中心",
                      level="county", parent_id=city_id, region_code=f"33{c + 1:02d}{i + 1:02d}")
            for i, county in enumerate(COUNTIES[city])
        ]  # fmt: skip
    halls += [
        HallEntry(hall_id=h, name=name, level="township", parent_id="ZJ-HZ-03", region_code=code)
        for h, (name, code) in SEEDED.items()
    ]
    return halls


def _gateway(hall: str) -> str:
    return "gw-" + hall.lower()


async def _prepare(db: str, halls: list[HallEntry], with_gateway: list[str]) -> list[str]:
    """The registry, gateways, two screens (their enrolment codes), and today's evaluations at
    the county halls with gateways (mostly 非常满意, a few bad) through the real Ingestor."""
    now = utc_now()
    engine = make_engine(db)
    try:
        async with engine.begin() as conn:
            await put_halls(conn, halls, now)
        for hall in with_gateway:
            await register(engine, hall, _gateway(hall))
        codes = [await screens.add(engine, f"wall-{i}") for i in range(2)]
        start = day_start(business_date(now))
        span = max(now - start, dt.timedelta(minutes=1))
        batches = []
        for h, hall in enumerate(with_gateway):
            if hall == NOISY:
                continue
            items = [
                (
                    "evaluator.key",
                    key_press(w % 4 + 1, 3 if (h + w) % 9 == 0 else 1 + (w % 2), session=w + 1),
                    start + span * (w + 1) / 12,
                )
                for w in range(10)
            ]
            batches.append(Gateway(hall, _gateway(hall)).batch(items))
        await Ingestor(engine).ingest(batches)
        # H1 and H2: the dashboard's seed, its cases through the feed, the ladder run once
        calendar = WorkCalendar(assume_weekends=True)
        seed = seeds.build(calendar)
        for hall in SEEDED:
            await register(engine, hall, {"H1": "gw1", "H2": "gw2"}[hall])
        await feed(engine, seed.cases, ApplicantMasker(b"w" * 32), source=Source.API, now=seed.now)
        await ladder.run_once(engine, seed.today, calendar, DEFAULT_LADDER, now=seed.now)
        await seeds.ingest(engine, seed)
        return codes
    finally:
        await engine.dispose()


@pytest.fixture(scope="module")
def wall(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Wall]:
    tmp = tmp_path_factory.mktemp("wall")
    with scratch_database("sqlite", tmp, AT_HEAD) as db:  # migrated: a copy of the session's
        yield from _serve(tmp, db)


def _serve(tmp: Path, db: str) -> Iterator[Wall]:
    halls = registry()
    counties = [h.hall_id for h in halls if h.level == "county"]
    with_gateway = [*counties[::2], NOISY]  # the rest have none: the wall calls them offline
    codes = asyncio.run(_prepare(db, halls, with_gateway))
    broker = Broker(free_port(), tmp / "broker").start()
    port = free_port()
    config = procs.central_config(tmp, broker.port, db, http_port=port)
    log = tmp / "central.log"
    process = procs.central(config, log)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_up(url, process, log)
        yield Wall(url, broker.port, {h.hall_id: h.name for h in halls}, codes)
    finally:
        process.stop()
        broker.stop()


def open_wall(
    wall: Wall,
    browser: Browser,  # noqa: F811
    code: str,
    prepare: Callable[[BrowserContext], None] = lambda context: None,
) -> tuple[BrowserContext, Page]:
    """A browser enrolled as a screen by its one-time link, as a wall is set up."""
    context = browser.new_context(
        viewport={"width": SIZES[0][0], "height": SIZES[0][1]},
        base_url=wall.url,
        locale="zh-CN",
        timezone_id="Asia/Shanghai",
    )
    prepare(context)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(f"/wall/enroll?code={code}")
    page.wait_for_url(re.compile(r"/wall$"))
    page.wait_for_selector("body[data-loaded='1']")
    assert errors == [], errors
    return context, page


# every drawn thing that must sit whole inside its panel and the viewport
DRAWN = (
    ".wall-kpi, .tree-group-head, .tree-tile, .wall-chart canvas, .wall-ticker li, "
    ".rank-list li, .drill-head, .drill-table tr, .drill-window, .drill-cases li"
)
CUT = """sel => {
  const W = innerWidth, H = innerHeight, out = [];
  for (const node of document.querySelectorAll(sel)) {
    const r = node.getBoundingClientRect();
    if (!r.width || !r.height) continue;
    const box = (node.closest('.wall-panel') || node.closest('.wall-kpis')).getBoundingClientRect();
    if (r.left < -0.5 || r.top < -0.5 || r.right > W + 0.5 || r.bottom > H + 0.5 ||
        r.left < box.left - 0.5 || r.right > box.right + 0.5 ||
        r.top < box.top - 0.5 || r.bottom > box.bottom + 0.5) {
      out.push(node.className + ' ' + (node.textContent || '').slice(0, 30) + ' ' +
        JSON.stringify([r.left, r.top, r.right, r.bottom]));
    }
  }
  for (const v of document.querySelectorAll('.wall-kpi-value')) {
    if (v.scrollWidth > v.clientWidth + 1) out.push('kpi value cut: ' + v.textContent);
  }
  return out;
}"""


def fits(page: Page) -> None:
    size = page.viewport_size or {"width": 0, "height": 0}
    scroll = page.evaluate(
        "[document.documentElement.scrollWidth, document.documentElement.scrollHeight,"
        " innerWidth, innerHeight]"
    )
    assert scroll[0] <= scroll[2] and scroll[1] <= scroll[3], (size, scroll)
    cut = page.evaluate(CUT, DRAWN)
    assert cut == [], (size, cut)


def shoot(page: Page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    size = page.viewport_size or {"width": 0, "height": 0}
    page.screenshot(path=SCREENSHOTS / f"wall-{name}-{size['width']}x{size['height']}.png")


def relaid(page: Page, size: tuple[int, int]) -> None:
    """A new window size: the page lays the same data out again (no request needed)."""
    page.set_viewport_size({"width": size[0], "height": size[1]})
    expect(page.locator("body")).to_have_attribute("data-drawn-for", f"{size[0]}x{size[1]}")


# ------------------------------------------------------------------ thirty halls, live


def test_the_wall_at_three_sizes_and_a_bad_review_on_the_ticker(
    wall: Wall,
    browser: Browser,  # noqa: F811
) -> None:
    context, page = open_wall(wall, browser, wall.codes[0])
    expect(page.locator("body")).to_have_attribute("data-stream", "live")
    asked: list[str] = []  # what the live page asks for besides its stream
    page.on("request", lambda r: asked.append(r.url) if "/api/" in r.url else None)
    since = time.monotonic()
    for size in SIZES:
        relaid(page, size)
        # every hall by its name, in full tiles; no hall id anywhere on the screen
        shown = page.locator(".tree-tile .name, .tree-own").all_inner_texts()
        assert sorted(shown) == sorted(wall.names.values()), shown
        expect(page.locator("#wall-tree")).to_have_class(re.compile("full"))
        text = page.locator("body").inner_text()
        assert not [h for h in wall.names if h in text], text
        expect(page.locator("#wall-trend canvas")).to_have_count(1)
        # the drill-down shows one of the worst halls: its departments and late cases
        expect(page.locator("#wall-drill .drill-name")).to_have_text(
            re.compile("|".join(name for name, _ in SEEDED.values()))
        )
        expect(page.locator("#wall-drill .drill-table tbody tr").first).to_be_visible()
        shoot(page, "halls-30")
        fits(page)
    # a key press at 瓯海区's window 3: 服务态度不好 (key 3), sent as its gateway sends it
    pressed = Gateway(NOISY, _gateway(NOISY)).batch(
        [("evaluator.key", key_press(3, 3, session=77, ticket="B017"), utc_now())]
    )
    start = time.monotonic()
    mqtt_publish.single(
        pressed.topic, pressed.payload, qos=1, hostname="127.0.0.1", port=wall.broker_port
    )
    expect(page.locator(".tree-tile[data-hall='H1']")).to_have_attribute("data-state", "red")
    tick = page.locator(f".wall-ticker li[data-kind='bad_review'][data-hall='{NOISY}']")
    expect(tick.first).to_be_visible(timeout=5_000)
    seen_after = time.monotonic() - start
    assert seen_after < 5, seen_after
    expect(tick.first).to_contain_text(wall.names[NOISY])
    expect(tick.first).to_contain_text("服务态度不好")
    shoot(page, "bad-review")
    fits(page)
    # live over the stream: no polling, a new snapshot only when its version moved (at most one
    # per 4 s), a drill-down every 20 s; a resize asks for nothing
    assert not [u for u in asked if "/ticker" in u], asked
    assert len(asked) <= 2 + (time.monotonic() - since) / 4, asked
    context.close()


# ------------------------------------------------------------------ a province of 2,000 halls


def _json(route: Route, body: dict[str, Any]) -> None:
    route.fulfill(status=200, content_type="application/json", body=json.dumps(body))


def test_a_province_of_two_thousand_halls_fits(wall: Wall, browser: Browser) -> None:  # noqa: F811
    many = wall_standin.halls(counties_per_city=12, townships_per_county=14)
    snap = wall_standin.snapshot(many, dt.date.today())
    by_id = {h["hall_id"]: h for h in many}
    ticks = [
        {"id": f"t{i}", "at": f"2026-12-07T0{i % 10}:00:00Z", "kind": kind, "hall_id": h,
         "hall_name": by_id[h]["name"], "window": 3, "text": "3号窗口 服务态度不好"}
        for i, (kind, h) in enumerate(
            [("bad_review", many[5]["hall_id"]), ("red_card", many[9]["hall_id"]),
             ("offline", many[20]["hall_id"]), ("yellow_card", many[2]["hall_id"])] * 10
        )
    ]  # fmt: skip

    def stand_in(context: BrowserContext) -> None:
        context.route("**/api/v1/wall/snapshot", lambda r: _json(r, snap))
        context.route("**/api/v1/wall/ticker*", lambda r: _json(r, {"items": ticks, "cursor": "c"}))
        context.route("**/api/v1/wall/stream", lambda r: r.fulfill(status=503, body=""))
        context.route(
            "**/api/v1/wall/hall/*",
            lambda r: _json(r, wall_standin.hall_detail(by_id[r.request.url.rsplit("/", 1)[1]])),
        )

    context, page = open_wall(wall, browser, wall.codes[1], stand_in)
    # the stream refused: the banner says so and the page polls the ticker instead
    expect(page.locator("#wall-banner")).to_contain_text("3 秒")
    expect(page.locator(".wall-ticker li.tick").first).to_be_visible()
    expect(page.locator("#wall-drill .drill-name")).to_have_text(by_id[snap["worst"][0]]["name"])
    for size in (SIZES[0], SIZES[-1]):  # the smallest and the largest
        relaid(page, size)
        mode = page.locator("#wall-tree").get_attribute("class") or ""
        assert re.search(r"compact|dots|regions|counts", mode), mode
        shoot(page, f"many-{len(many)}")
        fits(page)
    context.close()
