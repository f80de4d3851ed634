# Long module: one real Chromium over one module-scoped central; splitting would start central and
# the browser again.
"""The central dashboard in a real Chromium, served by a real ``hallwatch-central serve``.

One province for the module: a private Mosquitto, central on SQLite with its aggregator jobs,
accounts made with ``hallwatch-central user add``, events stored by the real Ingestor, cases
reported through POST /api/v1/cases, the ladder and correlation run by their CLI commands.
Debian's Chromium, driven by Playwright, logs in as each role and checks what is and is not
visible, decides on a flag, moves a follow-up item, downloads the bulletin's CSV, files a complaint
through the public form and answers it, and saves
screenshots of every main page at 1920×1080 and 1366×768 to
test-output/screenshots/central/.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import re
import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import paho.mqtt.client as mqtt
import pytest
import yaml
from paho.mqtt.enums import CallbackAPIVersion
from playwright.sync_api import Browser, BrowserContext, Page, expect, sync_playwright
from sqlalchemy import insert, update

from central.gaming import casebook, facts_store
from central.gaming.model import Period
from central.outbox.store import Audience, Channel, Status, enqueue
from central.rules.workdays import WorkCalendar
from central.spine import bridges
from central.store.db import make_engine
from central.store.schema_outbox import haocha_feed, outbox
from tests.central.web import seed as seeds
from tests.support import procs
from tests.support.broker import Broker, free_port

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
OUTPUT = Path(__file__).resolve().parents[3] / "test-output"
SCREENSHOTS = OUTPUT / "screenshots" / "central"
SIZES = [(1920, 1080), (1366, 768)]
H2_NAME = "西湖区行政服务中心"
CJK_FONTS = ("WenQuanYi", "Noto Sans CJK", "Noto Serif CJK", "Source Han")


@dataclass
class Central:
    url: str
    config: Path
    seed: seeds.Seed
    log: Path
    requests: list[str] = field(default_factory=list)  # every URL any page asked for
    console_errors: list[str] = field(default_factory=list)


def _cli(config: Path, *args: str, stdin: str = "") -> str:
    done = subprocess.run(
        [str(procs.BIN / "hallwatch-central"), *args, "-c", str(config)],
        input=stdin,
        text=True,
        capture_output=True,
        timeout=120,
    )
    assert done.returncode == 0, (args, done.stdout, done.stderr)
    return done.stdout


def _wait_up(url: str, process: procs.Proc, log: Path) -> None:
    deadline = time.monotonic() + 60
    with httpx.Client(base_url=url, timeout=5) as client:
        while True:
            assert process.alive, log.read_text(errors="replace")[-3000:]
            try:
                if client.get("/login").status_code == 200:
                    return
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "central did not come up"
            time.sleep(0.2)


async def _ingest(url: str, seed: seeds.Seed) -> None:
    engine = make_engine(url)
    try:
        await seeds.ingest(engine, seed)
    finally:
        await engine.dispose()


@pytest.fixture(scope="module")
def central(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Central]:
    tmp = tmp_path_factory.mktemp("dashboard")
    broker = Broker(free_port(), tmp / "broker").start()
    db = f"sqlite+aiosqlite:///{tmp / 'central.db'}"
    port = free_port()
    config = procs.central_config(tmp, broker.port, db, http_port=port)
    # the browser is the proxy: a test may log in from an address of its own (X-Forwarded-For),
    # so that the login brake's count per address does not depend on the tests before it
    settings = yaml.safe_load(config.read_text("utf-8"))
    settings["http"]["trusted_proxies"] = ["127.0.0.1/32"]
    settings["bridges"] = {"down_grace_s": 0}  # a county's link down is an alarm at once
    procs.write_yaml(config, settings)
    procs.prepare_central(db, [("H1", "gw1"), ("H2", "gw2"), ("H3", "gw3")])
    # H2 has a name in the registry of halls; H1 and H3 show their ids
    registry_csv = tmp / "halls.csv"
    registry_csv.write_text(f"大厅编号,名称,级别,行政区划代码\nH2,{H2_NAME},县,330106\n", "utf-8")
    # the commands start a process each (seconds on a loaded machine): side by side with the
    # seed's ingest, as the commands of several technicians would be
    with ThreadPoolExecutor(2) as pool:
        imported = pool.submit(_cli, config, "halls", "import", str(registry_csv))
        made = pool.submit(
            _cli, config, "token", "create", "--role", "supervisor", "--label", "审批系统"
        )
        seed = seeds.build(WorkCalendar())
        asyncio.run(_ingest(db, seed))
        imported.result()
        token = made.result().strip().splitlines()[-1]
    log = tmp / "central.log"
    process = procs.central(config, log)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_up(url, process, log)
        reply = httpx.post(
            f"{url}/api/v1/cases",
            content=seeds.cases_body(seed),
            timeout=30,
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        )
        assert reply.status_code == 200 and reply.json()["created"] == len(seed.cases), reply.text

        # accounts after the cases: a department exists for central once cases name it
        def add_user(name: str, role: str, hall: str | None, department: str | None) -> str:
            scope = [
                *(["--hall", hall] if hall else []),
                *(["--department", department] if department else []),
            ]
            return _cli(
                config,
                "user",
                "add",
                name,
                "--role",
                role,
                *scope,
                "--password-stdin",
                stdin=seeds.PASSWORD + "\n",
            )

        with ThreadPoolExecutor(len(seeds.USERS)) as pool:  # each hashes at production cost
            added = [pool.submit(add_user, name, *user) for name, user in seeds.USERS.items()]
            for user in added:
                user.result()
        _cli(config, "cases", "ladder")
        _cli(config, "correlation", "run")
        _link_down(broker.port, db, "county7")
        yield Central(url, config, seed, log)
    finally:
        process.stop()
        broker.stop()


def _link_down(port: int, db: str, bridge: str) -> None:
    """A tier bridge's will ("0", retained) as its county's link drops, stored by central."""
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bridge-will")
    client.connect("127.0.0.1", port)
    client.loop_start()
    try:
        client.publish(f"hw/bridge/{bridge}/state", b"0", qos=1, retain=True).wait_for_publish()
    finally:
        client.loop_stop()
        client.disconnect()

    async def stored() -> bool:
        engine = make_engine(db)
        try:
            return any(link.bridge == bridge for link in await bridges.links(engine))
        finally:
            await engine.dispose()

    deadline = time.monotonic() + 60
    while not asyncio.run(stored()):
        assert time.monotonic() < deadline, f"central never stored {bridge}'s link down"
        time.sleep(0.2)


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


def new_context(
    central: Central, browser: Browser, size: tuple[int, int] = SIZES[0], locale: str = "zh-CN"
) -> BrowserContext:
    context = browser.new_context(
        viewport={"width": size[0], "height": size[1]},
        base_url=central.url,
        locale=locale,
        timezone_id="Asia/Shanghai",
        accept_downloads=True,
    )
    context.on("request", lambda r: central.requests.append(r.url))

    def on_page(page: Page) -> None:
        page.on(
            "console",
            lambda m: central.console_errors.append(m.text) if m.type == "error" else None,
        )
        page.on("pageerror", lambda e: central.console_errors.append(str(e)))

    context.on("page", on_page)
    return context


# (central's address, account) → the session cookies its first login through the form got
_SESSIONS: dict[tuple[str, str], list[Any]] = {}
LOGIN_PAGE = re.compile(r"/login\?next=")


def login(context: BrowserContext, name: str, path: str = "/overview") -> Page:
    """Each account logs in through the form once per central; later contexts reuse its
    session cookies: central's login brake allows 20 tries per address in 5 minutes,
    successes included, and this module opens more pages than that."""
    page = context.new_page()
    page.goto(path)
    expect(page).to_have_url(LOGIN_PAGE)
    origin = re.sub(r"^(https?://[^/]+).*$", r"\1", page.url)
    saved = _SESSIONS.get((origin, name))
    if saved is not None:
        context.add_cookies(saved)
        page.goto(path)
        if not LOGIN_PAGE.search(page.url):  # still valid (a central on a reused port is not)
            page.wait_for_url(re.compile(re.escape(path.split("?")[0])))
            return page
    page.fill("#username", name)
    page.fill("#password", seeds.PASSWORD)
    page.click("#login-submit")
    page.wait_for_url(re.compile(re.escape(path.split("?")[0])))
    _SESSIONS[(origin, name)] = context.cookies()
    return page


def loaded(page: Page) -> Page:
    page.wait_for_selector("body[data-loaded='1']")
    return page


def shoot(page: Page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    size = page.viewport_size or {"width": 0, "height": 0}
    page.screenshot(
        path=SCREENSHOTS / f"{name}-{size['width']}x{size['height']}.png", full_page=True
    )


def no_horizontal_overflow(page: Page) -> None:
    width = page.evaluate("document.documentElement.scrollWidth")
    viewport = page.evaluate("window.innerWidth")
    assert width <= viewport, f"{page.url}: {width}px wide in a {viewport}px window"


def fetch_status(page: Page, path: str) -> int:
    return int(
        page.evaluate("p => fetch(p, {credentials: 'same-origin'}).then(r => r.status)", path)
    )


def fonts_of(context: BrowserContext, page: Page, selector: str) -> dict[str, int]:
    """The fonts Chromium really drew an element's text with (family → glyphs)."""
    cdp = context.new_cdp_session(page)
    cdp.send("DOM.enable")
    cdp.send("CSS.enable")
    root = cdp.send("DOM.getDocument")["root"]["nodeId"]
    node = cdp.send("DOM.querySelector", {"nodeId": root, "selector": selector})["nodeId"]
    used = cdp.send("CSS.getPlatformFontsForNode", {"nodeId": node})["fonts"]
    return {f["familyName"]: int(f["glyphCount"]) for f in used}


# ------------------------------------------------------------------------------- supervisor


def test_supervisor_sees_every_hall_with_lights_rates_and_offline(
    central: Central, browser: Browser
) -> None:
    for size in SIZES:
        context = new_context(central, browser, size)
        page = loaded(login(context, "jiancha"))
        cards = page.locator(".hall-card")
        expect(cards).to_have_count(3)
        h1 = page.locator(".hall-card[data-hall='H1']")
        expect(h1.locator(".light-red_card .light-n")).to_have_text("1")
        expect(h1.locator(".light-yellow_card .light-n")).to_have_text("1")
        expect(h1.locator(".satisfaction .rate-value")).to_have_text("60.0%")
        expect(h1.locator(".satisfaction .rate-frac")).to_have_text("3/5")
        expect(page.locator(".hall-card[data-hall='H3']")).to_have_class(re.compile("offline"))
        named = page.locator(".hall-card[data-hall='H2'] h2 .hall-name")
        expect(named).to_have_attribute("title", "H2")
        expect(named).to_contain_text(H2_NAME)
        expect(named.locator(".hall-code")).to_have_text("H2")
        expect(page.locator(".hall-card[data-hall='H1'] h2")).to_have_text("H1")
        expect(page.locator("#kpi-offline .kpi-value")).to_have_text("1")
        expect(page.locator("#kpi-suspicious .kpi-value")).to_have_text("2")
        # a county's tier link down: its halls fall silent, and the page says why
        expect(page.locator("#kpi-links-down .kpi-label")).to_have_text("上联中断")
        expect(page.locator("#kpi-links-down .kpi-value")).to_have_text("1")
        expect(page.locator("#kpi-links-down .kpi-sub")).to_contain_text("county7 自 ")
        for nav in ("overview", "analysis", "reviews", "followups", "bulletin"):
            expect(page.locator(f"#nav-{nav}")).to_be_visible()
        # both charts are drawn by ECharts (a canvas each), from the packaged copy
        expect(page.locator("#chart-lights canvas")).to_have_count(1)
        expect(page.locator("#chart-satisfaction canvas")).to_have_count(1)
        no_horizontal_overflow(page)
        shoot(page, "overview")
        # the big screen is the wall now (tests/central/web/test_wall_browser.py)
        expect(page.locator("#big-screen-link")).to_have_attribute("href", "/wall")
        page.goto("/overview?screen=big")
        page.wait_for_url(re.compile(r"/wall$"))
        expect(page.locator("#wall-title")).to_contain_text("政务服务电子监察大屏")
        context.close()


def test_chinese_is_drawn_with_a_cjk_font_not_boxes(central: Central, browser: Browser) -> None:
    context = new_context(central, browser)
    page = loaded(login(context, "jiancha"))
    for selector in (
        ".brand-title",
        ".hall-card[data-hall='H1'] .light-red_card .light-name",
        "#kpi-satisfaction .kpi-label",
    ):
        text = page.locator(selector).inner_text().strip()
        used = fonts_of(context, page, selector)
        cjk = sum(n for family, n in used.items() if family.startswith(CJK_FONTS))
        han = len(re.findall(r"[\u4e00-\u9fff]", text))
        assert han and cjk >= han, f"{selector} {text!r} drawn with {used}"
    context.close()


def test_drill_down_from_hall_to_a_case(central: Central, browser: Browser) -> None:
    today = central.seed.today.isoformat()
    for size in SIZES:
        context = new_context(central, browser, size)
        page = loaded(login(context, "jiancha", f"/analysis?first={today}&last={today}"))
        expect(page.locator("#groups-title")).to_have_text("各大厅")
        expect(page.locator("a.drill[data-value='H2'] .hall-name")).to_contain_text(H2_NAME)
        page.click("a.drill[data-value='H1']")
        loaded(page)
        expect(page.locator("#groups-title")).to_have_text("各部门")
        expect(page.locator("#chart-trend canvas")).to_have_count(1)
        shoot(page, "analysis-hall")
        # open overdue cases accepted before the range lead the hall's case list
        overdue = page.locator("#cases tr.open-overdue a.case-link")
        expect(overdue).to_have_count(2)
        assert set(overdue.all_inner_texts()) == {"SJ-004", "RS-001"}
        expect(page.locator("#staffed-coverage")).to_contain_text("网关在报")
        page.click(f"a.drill[data-value='{seeds.MARKET}']")
        expect(page.locator("#groups-title")).to_have_text("各窗口")
        page.click("a.drill[data-value='1']")
        expect(page.locator("#groups-title")).to_have_text("各工作人员")
        page.click("a.drill[data-value='100231']")
        expect(page.locator(".crumb-staff")).to_have_text("100231")
        expect(page.locator("#kpi-satisfaction_rate .kpi-value")).to_have_text("66.7%")
        cases = page.locator("#cases a.case-link")
        expect(cases.first).to_be_visible()
        assert set(cases.all_inner_texts()) == {"SJ-201", "SJ-202", "SJ-203"}
        no_horizontal_overflow(page)
        shoot(page, "analysis-staff")
        page.click("#cases a.case-link >> text=SJ-203")
        page.wait_for_url(re.compile(r"/cases/SJ-203$"))
        loaded(page)
        expect(page.locator("#case-stage")).to_have_text("蓝灯（正常办理）")
        expect(page.locator("#case-facts")).to_contain_text("张*")  # masked, never the name
        expect(page.locator("#case-facts")).not_to_contain_text("张三丰")
        evaluation = page.locator("#case-evaluations tr.evaluation")
        expect(evaluation).to_have_count(1)  # A003's key press, tied through its service
        expect(evaluation).to_contain_text("服务态度不好")
        shoot(page, "case")
        context.close()


def test_supervisor_confirms_then_dismisses_a_flag_and_sees_both_records(
    central: Central, browser: Browser
) -> None:
    gateway, seq = central.seed.flagged["no_session"]
    context = new_context(central, browser)
    page = loaded(login(context, "jiancha", "/reviews"))
    row = page.locator(f"tr.queue-row[data-gateway='{gateway}'][data-seq='{seq}']")
    expect(row).to_be_visible()
    expect(
        page.locator(
            f"tr.queue-row[data-seq='{central.seed.flagged['retransmit'][1]}']"
            f"[data-gateway='{gateway}']"
        )
    ).to_have_count(0)
    row.click()
    detail = page.locator("#detail[data-loaded='1']")
    expect(detail.locator(".snapshot-hash")).to_have_text(seeds.SNAPSHOT_SHA)
    expect(detail).to_contain_text("窗口前无群众")
    block = detail.locator(".flag-block[data-flag='SELF_PRESS_SUSPECTED']")
    block.locator(".note-input").fill("录像显示窗口前无人")
    block.locator("button.confirm").click()
    first = page.locator(".flag-block[data-flag='SELF_PRESS_SUSPECTED'] li.review")
    expect(first).to_have_count(1)
    expect(first).to_have_attribute("data-decision", "confirmed")
    expect(first).to_contain_text("录像显示窗口前无人")
    expect(first).to_contain_text("jiancha")
    page.locator(".flag-block[data-flag='SELF_PRESS_SUSPECTED'] button.dismiss").click()
    reviews = page.locator(".flag-block[data-flag='SELF_PRESS_SUSPECTED'] li.review")
    expect(reviews).to_have_count(2)
    expect(reviews.nth(0)).to_have_class(re.compile("replaced"))
    expect(reviews.nth(1)).to_have_class(re.compile("current"))
    expect(reviews.nth(1)).to_have_attribute("data-decision", "dismissed")
    expect(row.locator(".flag[data-flag='SELF_PRESS_SUSPECTED']")).to_have_class(
        re.compile("dismissed")
    )
    for size in SIZES:
        page.set_viewport_size({"width": size[0], "height": size[1]})
        no_horizontal_overflow(page)
        shoot(page, "reviews")
    # every evaluation, not only the flagged ones: the ten correlated key presses of today
    page.goto("/reviews?show=all")
    loaded(page)
    expect(page.locator("tr.queue-row")).to_have_count(10)
    page.locator("tr.queue-row").filter(has_text="服务态度不好").click()
    expect(page.locator("#detail[data-loaded='1'] .linked-cases")).to_have_text("SJ-203")
    context.close()


def test_work_order_page_for_each_role(central: Central, browser: Browser) -> None:
    """The supervisor assigns; the hall manager appeals (and cannot decide); the supervisor
    rejects the appeal (and cannot appeal); the department leader rectifies and records the
    citizen's answer; each sees their own orders. The month's statistic is on the page (the
    technician's refusal: test_technician_gets_the_overview_and_nothing_personal)."""
    supervisor = from_address(new_context(central, browser), "10.0.16.1")
    page = loaded(login(supervisor, "jiancha", "/followups"))
    created = page.locator(".fu-column[data-state='created'] .fu-card")
    expect(created).to_have_count(3)
    expect(page.locator(".fu-card .hall-name[title='H2']")).to_contain_text(H2_NAME)
    card = page.locator(".fu-card").filter(has_text="H1 · 3 号窗口")
    card.click()
    panel = page.locator("#fu-detail")
    expect(panel.locator("button.step")).to_have_text(["分派"])
    panel.locator(".assignee-input").fill("人社局 李科长")
    panel.locator(".note-input").fill("请三日内核实")
    panel.locator("button.step").click()
    assigned = page.locator(".fu-column[data-state='assigned'] .fu-card")
    expect(assigned).to_have_count(1)
    expect(assigned).to_contain_text("承办人 人社局 李科长")
    expect(panel.locator("li.fu-event")).to_have_count(2)
    # verification or nothing: appeals are the hall's and the department's
    expect(panel.locator("button.step")).to_have_text(["核实：属实", "核实：不属实"])
    expect(panel.locator(".fu-stages tr.current")).to_have_attribute("data-stage", "verify")
    expect(page.locator("#wo-stat tr[data-figure='opened'] td")).to_have_text("3")
    for size in SIZES:
        page.set_viewport_size({"width": size[0], "height": size[1]})
        no_horizontal_overflow(page)
        shoot(page, "followups")

    context = from_address(new_context(central, browser), "10.0.16.2")
    mine = loaded(login(context, "h2-guanli", "/followups"))
    expect(mine.locator(".fu-card")).to_have_count(1)  # H2's order only
    mine.locator(".fu-card").click()
    box = mine.locator("#fu-detail")
    box.locator(".assignee-input").fill("staff:200101")
    box.locator("button.step").click()
    expect(box.locator("button.step")).to_have_text(["核实：属实", "核实：不属实", "提出申诉"])
    box.locator(".ground-input").select_option("malicious")
    box.locator(".evidence-input").fill("ab" * 32)
    box.locator(".note-input").fill("录像显示同一人连续按差评")
    box.get_by_role("button", name="提出申诉").click()
    expect(mine.locator(".fu-column[data-state='appealed'] .fu-card")).to_have_count(1)
    expect(box.locator(".fu-appeal")).to_have_text("恶意差评 · 待监察室审核")
    expect(box.locator("button.step")).to_have_count(0)  # only a supervisor decides
    context.close()

    page.reload()
    loaded(page).locator(".fu-column[data-state='appealed'] .fu-card").click()
    expect(panel.locator("button.step")).to_have_text(["申诉成立", "驳回申诉"])
    expect(panel.locator("li.fu-event[data-kind='followup.appealed'] code.sha")).to_have_text(
        "ab" * 6
    )
    panel.locator(".note-input").fill("录像不足以证明恶意")
    panel.get_by_role("button", name="驳回申诉").click()
    expect(panel.locator(".fu-appeal")).to_have_text("恶意差评 · 申诉驳回")
    expect(panel.locator("button.step")).to_have_text(["整改完成"])
    expect(panel.locator(".fu-stages tr.current")).to_have_attribute("data-stage", "rectify")
    supervisor.close()

    context = from_address(new_context(central, browser), "10.0.16.3")
    page = loaded(login(context, "shichang-lingdao", "/followups"))
    expect(page.locator(".fu-card")).to_have_count(1)  # 市场监管局's order only
    expect(page.locator("#wo-stat tr[data-figure='opened'] td")).to_have_text("1")
    page.locator(".fu-card").click()
    panel = page.locator("#fu-detail")
    panel.locator(".assignee-input").fill("staff:100231")
    for step, kind in (("分派", "assigned"), ("核实：属实", "verified"), ("整改完成", "rectified")):
        panel.get_by_role("button", name=step).click()
        expect(panel.locator(f"li.fu-event[data-kind='followup.{kind}']")).to_have_count(1)
    panel.locator(".answer-input").select_option("basically")
    panel.get_by_role("button", name="已回访").click()
    expect(panel.locator(".fu-answer")).to_have_text("基本满意")
    expect(page.locator(".fu-column[data-state='called_back'] .fu-card")).to_have_count(1)
    shoot(page, "work-orders-department-leader")
    context.close()


def test_bulletin_exports_csv_and_prints(central: Central, browser: Browser) -> None:
    month = central.seed.today.strftime("%Y-%m")
    for size in SIZES:
        context = new_context(central, browser, size)
        page = loaded(login(context, "jiancha", f"/bulletin?month={month}"))
        expect(page.locator("#bulletin-heading")).to_contain_text("政务服务效能月度通报")
        expect(page.locator("#bulletin-overdue")).to_contain_text("GA-001")
        expect(page.locator("#bulletin-departments")).to_contain_text(seeds.SOCIAL)
        expect(page.locator("#bulletin-halls .hall-name")).to_contain_text(H2_NAME)
        expect(page.locator("#bulletin-overdue")).to_contain_text(H2_NAME)
        no_horizontal_overflow(page)
        shoot(page, "bulletin")
        page.emulate_media(media="print")
        expect(page.locator(".topbar")).to_be_hidden()
        expect(page.locator("#csv-indicators")).to_be_hidden()
        shoot(page, "bulletin-print")
        page.emulate_media(media="screen")
        context.close()
    context = new_context(central, browser)
    page = loaded(login(context, "jiancha", f"/bulletin?month={month}"))
    with page.expect_download() as info:
        page.click("#csv-indicators")
    download = info.value
    assert download.suggested_filename == f"hallwatch-bulletin-{month}-indicators.csv"
    data = Path(download.path()).read_bytes()
    assert data.startswith(b"\xef\xbb\xbf")
    text = data.decode("utf-8-sig")
    assert text.splitlines()[0].startswith("级别,大厅,大厅名称,部门")
    assert "人社局" in text and f"H2,{H2_NAME}," in text
    page.pdf(path=str(SCREENSHOTS / "bulletin.pdf"), landscape=True)
    context.close()


def test_english_is_one_click_away(central: Central, browser: Browser) -> None:
    context = new_context(central, browser, SIZES[1])
    page = loaded(login(context, "jiancha"))
    page.click("#lang-link")
    loaded(page)
    expect(page.locator("html")).to_have_attribute("lang", "en")
    expect(page.locator("#nav-reviews")).to_have_text("Evaluation review")
    expect(page.locator(".hall-card[data-hall='H3'] .gw-state")).to_have_text("Gateway offline")
    no_horizontal_overflow(page)
    shoot(page, "overview-english")
    page.click("#lang-link")
    expect(page.locator("#nav-reviews")).to_have_text("评价复核")
    context.close()


def test_dates_read_yyyy_mm_dd_with_chinese_months_in_an_english_browser(
    central: Central, browser: Browser
) -> None:
    today = central.seed.today
    iso_day, iso_time = r"^\d{4}-\d{2}-\d{2}$", r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}$"
    context = new_context(central, browser, SIZES[1], locale="en-US")
    page = loaded(login(context, "jiancha", f"/analysis?first={today}&last={today}"))
    assert page.evaluate("navigator.language") == "en-US"
    for selector in ("#first", "#last"):
        expect(page.locator(selector)).to_have_value(today.isoformat())
        expect(page.locator(selector)).to_have_attribute("placeholder", "YYYY-MM-DD")
    page.click("a.drill[data-value='H1']")
    loaded(page)
    accepted = page.locator("#cases tbody tr td:nth-child(6)").all_inner_texts()
    assert accepted and all(re.match(iso_time, text) for text in accepted), accepted
    # the picker: Chinese month names, Monday first, writes YYYY-MM-DD
    page.click("#first")
    popup = page.locator(".datefield-popup")
    expect(popup.locator(".datefield-title")).to_have_text(
        f"{today.year}年 {CN_MONTHS[today.month]}"
    )
    expect(popup.locator(".datefield-weekday").first).to_have_text("一")
    popup.locator(".datefield-prev").click()
    previous = (today.replace(day=1) - dt.timedelta(days=1)).replace(day=1)
    expect(popup.locator(".datefield-title")).to_have_text(
        f"{previous.year}年 {CN_MONTHS[previous.month]}"
    )
    popup.locator(f".datefield-cell[data-value='{previous.isoformat()}']").click()
    expect(page.locator("#first")).to_have_value(previous.isoformat())
    expect(popup).to_have_count(0)
    shoot(page, "analysis-dates-en-US")
    page.locator("#range-form button[type='submit']").click()
    page.wait_for_url(re.compile(f"first={previous.isoformat()}"))
    # typed by hand in another shape: the form says so instead of sending it
    page.fill("#last", "12/06/2026")
    assert page.evaluate("document.getElementById('last').checkValidity()") is False
    # the bulletin's month picker and the English interface keep the same forms
    page.goto(f"/bulletin?month={today:%Y-%m}")
    loaded(page)
    expect(page.locator("#month")).to_have_value(f"{today:%Y-%m}")
    page.click("#month")
    expect(page.locator(".datefield-popup .datefield-title")).to_have_text(f"{today.year}年")
    expect(page.locator(".datefield-popup .datefield-cell").first).to_have_text("一月")
    page.keyboard.press("Escape")
    page.click("#lang-link")
    loaded(page)
    expect(page.locator("html")).to_have_attribute("lang", "en")
    page.goto(f"/analysis?first={today}&last={today}&hall=H1")
    loaded(page)
    accepted = page.locator("#cases tbody tr td:nth-child(6)").all_inner_texts()
    assert accepted and all(re.match(iso_time, text) for text in accepted), accepted
    assert re.match(iso_day, page.locator("#first").input_value())
    page.click("#lang-link")
    context.close()


CN_MONTHS = ["", "一月", "二月", "三月", "四月", "五月", "六月", "七月", "八月", "九月", "十月"]
CN_MONTHS += ["十一月", "十二月"]


# ------------------------------------------------------------------------------ other roles


def test_department_leader_sees_only_the_department(central: Central, browser: Browser) -> None:
    today = central.seed.today.isoformat()
    own, other = central.seed.cases_of(seeds.MARKET), central.seed.cases_of(seeds.SOCIAL)
    context = new_context(central, browser, SIZES[1])
    page = loaded(login(context, "shichang-lingdao"))
    expect(page.locator("#user-role")).to_have_text(f"部门领导 · {seeds.MARKET}")
    expect(page.locator(".hall-card")).to_have_count(1)  # H1: their only hall
    expect(page.locator(".hall-card .gw-state")).to_have_count(0)  # no gateway state
    expect(page.locator("#kpi-links-down")).to_have_count(0)  # nor tier links
    expect(page.locator("#big-screen-link")).to_have_count(0)  # the wall shows whole halls
    shoot(page, "overview-department-leader")
    page.goto(
        f"/analysis?first={central.seed.today.replace(day=1).isoformat()}&last={today}&hall=H1"
    )
    loaded(page)
    expect(page.locator("a.drill")).to_have_text([seeds.MARKET])
    listed = page.locator("#cases a.case-link")
    expect(listed.first).to_be_visible()
    assert set(listed.all_inner_texts()) <= set(own)
    assert not set(listed.all_inner_texts()) & set(other)
    shoot(page, "analysis-department-leader")
    # another department's case: not by its URL, not by its API id
    reply = page.goto(f"/cases/{other[0]}")
    assert reply is not None and reply.status == 404
    expect(page.locator("#refused-message")).to_have_text("办件不存在")
    assert fetch_status(page, f"/api/v1/cases/{other[0]}") == 404
    assert fetch_status(page, f"/api/v1/cases/{own[0]}") == 200
    assert fetch_status(page, "/api/v1/cases?department=人社局") == 200
    names = page.evaluate(
        "fetch('/api/v1/cases?limit=1000').then(r => r.json())"
        ".then(p => p.items.map(i => i.department))"
    )
    assert set(names) == {seeds.MARKET}
    reply = page.goto(f"/cases/{own[0]}")
    assert reply is not None and reply.status == 200
    # complaints: one filed about the department's case SJ-003 is theirs (归口 through the case)
    filed = httpx.post(
        f"{central.url}/complaint", data={"text": "办件 SJ-003 一直没有进展", "case_no": "SJ-003"}
    )
    assert filed.status_code == 200, filed.text
    page.goto("/complaints?state=")
    loaded(page)
    expect(page.locator("tr.complaint")).not_to_have_count(0)
    assert set(page.locator("tr.complaint td:nth-child(5)").all_inner_texts()) == {seeds.MARKET}
    page.locator("tr.complaint").first.click()
    expect(page.locator("#complaint-detail h2")).to_be_visible()
    expect(page.locator("button[data-action='route']")).to_have_count(0)  # 归口: supervisors
    page.goto("/cases/SJ-003")
    loaded(page)
    expect(page.locator("#case-complaint-count")).to_have_text(re.compile(r"共 [1-9]\d* 件投诉"))
    expect(page.locator("li.case-complaint").first).to_be_visible()
    shoot(page, "case-complaints-department-leader")
    context.close()


def test_hall_manager_sees_only_the_hall(central: Central, browser: Browser) -> None:
    context = new_context(central, browser)
    page = loaded(login(context, "h2-guanli"))
    expect(page.locator(".hall-card")).to_have_count(1)
    expect(page.locator(".hall-card[data-hall='H2']")).to_be_visible()
    page.goto("/reviews")
    loaded(page)
    halls = set(page.locator("tr.queue-row td:nth-child(2) .hall-code").all_inner_texts())
    assert halls == {"H2"}
    expect(page.locator("tr.queue-row .hall-name").first).to_contain_text(H2_NAME)
    page.locator("tr.queue-row").first.click()
    expect(page.locator("#detail[data-loaded='1']")).to_contain_text("仅监察室可作出复核结论")
    expect(page.locator("#detail button.confirm")).to_have_count(0)
    shoot(page, "reviews-hall-manager")
    assert fetch_status(page, "/api/v1/gateways?hall=H1") == 403
    assert fetch_status(page, "/api/v1/drilldown?hall=H1") == 403
    expect(page.locator("#nav-audits")).to_have_count(0)  # 抽查 is the 监察室's
    assert fetch_status(page, "/api/v1/audits") == 403
    page.goto("/complaints?state=")  # complaints about H2 only: none in this province
    loaded(page)
    expect(page.locator("#complaints .no-data")).to_be_visible()
    expect(page.locator("tr.complaint")).to_have_count(0)
    context.close()


def test_technician_gets_the_overview_and_nothing_personal(
    central: Central, browser: Browser
) -> None:
    context = new_context(central, browser)
    page = loaded(login(context, "yunwei"))
    expect(page.locator(".hall-card")).to_have_count(3)
    expect(page.locator("nav.nav a")).to_have_count(1)
    expect(page.locator("#big-screen-link")).to_have_count(0)
    for path in (
        "/reviews",
        "/bulletin",
        "/analysis",
        "/followups",
        "/wall",
        "/audits",
        "/complaints",
    ):
        reply = page.goto(path)
        assert reply is not None and reply.status == 403, path
        expect(page.locator("#refused-message")).to_have_text("您的角色无权访问此页面")
    month = central.seed.today.strftime("%Y-%m")
    assert fetch_status(page, f"/api/v1/bulletin?month={month}") == 403
    assert fetch_status(page, "/api/v1/review-queue") == 403
    assert fetch_status(page, f"/api/v1/followups/statistics?month={month}") == 403
    context.close()


def test_logging_out_ends_the_session(central: Central, browser: Browser) -> None:
    context = new_context(central, browser)
    page = loaded(login(context, "jiancha"))
    page.click("#logout")
    page.wait_for_url(re.compile(r"/login$"))
    assert fetch_status(page, "/api/v1/overview") == 401
    page.goto("/overview")
    expect(page).to_have_url(re.compile(r"/login\?next="))
    shoot(page, "login")
    context.close()


# ------------------------------------------------------------------------------- 异常线索


async def _open_anomalies(server: Central) -> None:
    """Two cases from the seeded day's facts (straight into the store: the aggregator's own
    job runs beside this test, on its own schedule)."""
    from tests.central.web.test_anomalies import stand_in

    engine = make_engine(f"sqlite+aiosqlite:///{server.config.parent / 'central.db'}")
    try:
        async with engine.begin() as conn:
            facts = [
                await facts_store.load(conn, hall, Period.day(server.seed.today))
                for hall in ("H1", "H2")
            ]
            found = [casebook.from_anomaly(a) for a in stand_in(facts)]
            assert await casebook.open_cases(conn, found, server.seed.now) == 2
    finally:
        await engine.dispose()


def test_supervisor_confirms_one_anomaly_dismisses_another_and_the_bulletin_lists_it(
    central: Central, browser: Browser
) -> None:
    """异常线索: the job opens two cases over the seeded day; the supervisor reads one's
    evidence, confirms it, dismisses the other with a note; the 通报 lists only the first."""
    # in a thread of its own: Playwright's sync API holds an event loop in this one
    with ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, _open_anomalies(central)).result()
    context = new_context(central, browser)
    page = loaded(login(context, "jiancha", "/anomalies"))
    rows = page.locator("tr.anomaly-row")
    expect(rows).to_have_count(2)
    expect(page.locator(".count-chip[data-pattern='instant_press'] .count-n")).to_have_text("1")
    # the evidence: presses with their times and keys, the camera's verdict, the figures
    # a cell, not the row: the row's centre can fall between two cells (the table's own)
    page.locator("tr.anomaly-row[data-pattern='instant_press'] td").first.click()
    detail = page.locator("#detail")
    expect(detail.locator("#anom-p")).to_have_text("0.0004")
    expect(detail.locator("#anom-method")).to_contain_text("exact binomial test, one-sided")
    expect(detail.locator("#anom-presses tr.press").first).to_be_visible()
    expect(detail.locator("#anom-figures tr[data-name='baseline.window_rate']")).to_contain_text(
        "0.200"
    )
    expect(detail.locator("#anom-undecided")).to_be_visible()
    for size in SIZES:
        page.set_viewport_size({"width": size[0], "height": size[1]})
        no_horizontal_overflow(page)
        shoot(page, "anomalies")
    detail.locator("#anom-note").fill("调取录像，窗口前无群众时按键属实")
    detail.locator("#anom-confirm").click()
    expect(rows).to_have_count(1)  # the open list keeps the other one
    rows.first.locator("td").first.click()
    expect(detail.locator("#anom-summary")).to_be_visible()
    detail.locator("#anom-dismiss").click()  # a note is required
    expect(page.locator("#notice")).to_have_text("请填写核实意见")
    detail.locator("#anom-note").fill("系业务高峰连续满意，不属实")
    detail.locator("#anom-dismiss").click()
    expect(rows).to_have_count(0)
    page.select_option("#f-status", "all")
    page.locator("#anom-form button[type='submit']").click()
    expect(page.locator("tr.anomaly-row[data-status='confirmed']")).to_have_count(1)
    expect(page.locator("tr.anomaly-row[data-status='dismissed']")).to_have_count(1)

    page.goto("/bulletin")
    loaded(page)
    gaming = page.locator("#bulletin-gaming tbody tr")
    expect(gaming).to_have_count(1)
    expect(gaming).to_contain_text("邀请即按")
    expect(gaming).to_contain_text("200101")
    expect(gaming).to_contain_text("调取录像，窗口前无群众时按键属实")
    expect(page.locator("#bulletin-gaming")).not_to_contain_text("同一按键异常连续")
    shoot(page, "bulletin-gaming")
    # the staff scorecard counts the confirmed case for the staff member it names
    today = central.seed.today.isoformat()
    page.goto(f"/analysis?first={today}&last={today}&hall=H2&department={seeds.POLICE}&window=1")
    loaded(page)
    expect(page.locator("#groups td.confirmed-anomalies")).to_have_text("1")
    context.close()


# ------------------------------------------------------------------------------- audits


AUDIT_SEED = "browser-audit"


def _last_month(central: Central) -> tuple[str, dt.date]:
    day = central.seed.today.replace(day=1) - dt.timedelta(days=1)
    return day.strftime("%Y-%m"), day.replace(day=15)


def _finish_last_month(central: Central, page: Page) -> None:
    """Cases finished last month, posted through the supervisor's session: three of
    市场监管局 (H1), two of 人社局 (H1), one of 税务局 (H2)."""
    _, day = _last_month(central)
    rows = []
    for i, (window, staff) in enumerate(
        [(1, "100231"), (2, "100232"), (1, "100231"), (3, "100241"), (3, "100241")]
    ):
        accepted = dt.datetime.combine(day, dt.time(9, i), tzinfo=seeds.BEIJING)
        rows.append(
            seeds._row(
                f"AU-{i:02d}",
                "H1",
                window,
                staff,
                accepted,
                status="completed",
                completed_at=(accepted + dt.timedelta(hours=2)).isoformat(),
            )
        )
    accepted = dt.datetime.combine(day, dt.time(10), tzinfo=seeds.BEIJING)
    rows.append(
        seeds._row(
            "AU-90",
            "H2",
            2,
            "200201",
            accepted,
            status="completed",
            completed_at=(accepted + dt.timedelta(hours=1)).isoformat(),
        )
    )
    result = page.evaluate(
        "rows => HW.api('/api/v1/cases', {method: 'POST', body: {cases: rows}})", rows
    )
    assert result["created"] == len(rows), result


def test_audits_drawn_worked_and_reported_per_role(central: Central, browser: Browser) -> None:
    """抽查回访: the month drawn with ``hallwatch-central audits draw``, a supervisor works a task
    and enters a call-back that contradicts the record, the finding shows on the list and in the
    通报; a department leader reads its own department only (hall managers and technicians:
    above)."""
    month, _ = _last_month(central)
    context = new_context(central, browser)
    page = loaded(login(context, "jiancha", "/audits"))
    expect(page.locator("#sample-state")).to_have_text("该月尚未抽取样本")
    _finish_last_month(central, page)
    drawn = _cli(central.config, "audits", "draw", "--month", month, "--seed", AUDIT_SEED)
    assert f"seed={AUDIT_SEED}" in drawn and f"{seeds.MARKET}\t3/3" in drawn, drawn
    page.reload()
    loaded(page)
    expect(page.locator("#sample-state")).to_contain_text(AUDIT_SEED)
    expect(page.locator("tr.audit-task")).to_have_count(6)
    expect(page.locator("#draw")).to_be_hidden()  # drawn already
    first = page.locator("tr.audit-task", has_text=seeds.MARKET).first
    case_no = first.get_attribute("data-case") or ""
    task_id = first.get_attribute("data-task") or ""
    social = page.locator("tr.audit-task", has_text=seeds.SOCIAL).first.get_attribute("data-task")
    first.locator("a").click()
    loaded(page)
    expect(page.locator("#audit-applicant")).to_have_text("张** 138****5678")
    expect(page.locator("#audit-facts")).to_contain_text(case_no)
    expect(page.locator("#callback-panel")).to_be_visible()
    expect(page.locator("#cb-handled")).to_be_disabled()
    page.check("#cb-reached")
    page.select_option("#cb-handled", "no")
    page.select_option("#cb-timing", "yes")
    page.fill("#cb-note", "群众称材料未领取，与办结记录不符")
    page.click("#cb-submit")
    expect(page.locator("body[data-saved='1']")).to_have_count(1)
    expect(page.locator("#notice")).to_have_text("回访结果已保存")
    expect(page.locator("tr.callback")).to_have_count(1)
    expect(page.locator("tr.callback .findings")).to_have_text("办理情况与记录不符")
    no_horizontal_overflow(page)
    shoot(page, "audit-task-supervisor")
    page.goto("/audits")
    loaded(page)
    row = page.locator(f"tr.audit-task[data-task='{task_id}']")
    expect(row.locator(".state")).to_have_text("已回访")
    expect(row.locator(".findings")).to_have_text("办理情况与记录不符")
    shoot(page, "audits-supervisor")
    page.goto(f"/bulletin?month={month}")
    loaded(page)
    audit_row = page.locator("#bulletin-audits tbody tr", has_text=seeds.MARKET)
    # 部门, 办结件数, 抽取件数, 已录入回访, 完成回访, 发现问题, 问题办件
    expect(audit_row.locator("td")).to_have_text([seeds.MARKET, "3", "3", "1", "1", "1", case_no])
    context.close()

    # a department leader: its own department, read only; another's task is not found
    context = new_context(central, browser, SIZES[1])
    page = loaded(login(context, "shichang-lingdao", "/audits"))
    expect(page.locator("tr.audit-task")).to_have_count(3)
    assert set(page.locator("tr.audit-task td:nth-child(2)").all_inner_texts()) == {seeds.MARKET}
    expect(page.locator("#notice")).to_have_text("本部门抽查结果（只读）")
    expect(page.locator("#draw")).to_be_hidden()
    no_horizontal_overflow(page)
    page.goto(f"/audits/{task_id}")
    loaded(page)
    expect(page.locator("tr.callback")).to_have_count(1)
    expect(page.locator("#callback-panel")).to_be_hidden()
    shoot(page, "audit-task-department-leader")
    assert fetch_status(page, f"/api/v1/audits/tasks/{social}") == 404
    found = page.evaluate("fetch('/api/v1/audits/findings').then(r => r.json())")
    assert [f["case_no"] for f in found] == [case_no]
    context.close()


# ------------------------------------------------------------------------------- 好差评 feed


async def _feed_records(server: Central) -> None:
    """Three records sent upward (H1 delivered, H1 failed after three tries, H2 pending) and a
    staff SMS, straight into the outbox as the feed and the warnings would enqueue them."""
    engine = make_engine(f"sqlite+aiosqlite:///{server.config.parent / 'central.db'}")
    now = server.seed.now
    rows = [
        ("H1", 1, Status.DELIVERED, 1, None),
        ("H1", 2, Status.FAILED, 3, "HTTP 400: 办件编号缺失"),
        ("H2", 3, Status.PENDING, 0, None),
    ]
    try:
        async with engine.begin() as conn:
            for hall, seq, status, attempts, error in rows:
                message = await enqueue(
                    conn,
                    channel=Channel.PLATFORM_HTTP,
                    key=f"browser-feed:{seq}",
                    kind="haocha.record",
                    recipient="platform",
                    payload={"seq": seq},
                )
                await conn.execute(
                    update(outbox)
                    .where(outbox.c.id == message)
                    .values(status=status.value, attempts=attempts, last_error=error)
                )
                await conn.execute(
                    insert(haocha_feed).values(
                        gateway_id=f"gw-{hall}", seq=seq, version=1, hall_id=hall, op="create",
                        mapping_version="2026-01", level=5 - seq, outbox_id=message,
                        enqueued_at=now,
                    )
                )  # fmt: skip
            await enqueue(
                conn,
                channel=Channel.SMS,
                key="browser-feed:warning",
                kind="ladder.red_light",
                recipient="staff:100231",
                payload={"event": "ladder.red_light", "params": {}},
                audience=Audience.STAFF,
            )
    finally:
        await engine.dispose()


def from_address(context: BrowserContext, address: str) -> BrowserContext:
    """Log in from ``address`` (the fixture's central trusts the browser as its proxy)."""
    context.set_extra_http_headers({"X-Forwarded-For": address})
    return context


def test_feed_status_page_per_role(central: Central, browser: Browser) -> None:
    with ThreadPoolExecutor(1) as pool:  # Playwright's loop runs in this thread
        pool.submit(asyncio.run, _feed_records(central)).result()
    context = from_address(new_context(central, browser), "10.0.15.1")
    page = loaded(login(context, "jiancha", "/feed"))
    expect(page.locator("h1")).to_have_text("好差评数据推送状态")
    records = page.locator("tr.feed-record")
    expect(records).to_have_count(3)
    expect(page.locator(".flag-count[data-state='failed'] strong")).to_have_text("1")
    failed = page.locator("tr.feed-record[data-status='failed']")
    expect(failed).to_contain_text("HTTP 400: 办件编号缺失")
    expect(failed).to_contain_text("失败")
    expect(page.locator("#outbox-panel")).to_be_visible()
    sms = page.locator("tr.outbox-channel[data-channel='sms']")
    expect(sms.locator("td[data-state='pending']")).to_have_text("1")
    http = page.locator("tr.outbox-channel[data-channel='platform_http']")
    expect(http.locator("td[data-state='failed']")).to_have_text("1")
    page.select_option("#f-status", "failed")
    with page.expect_navigation(url=re.compile(r"status=failed")):
        page.locator("#feed-form button[type='submit']").click()
    loaded(page)
    expect(records).to_have_count(1)
    shoot(page, "feed")
    page.fill("#f-hall", "H2")
    page.select_option("#f-status", "")
    with page.expect_navigation(url=re.compile(r"hall=H2")):
        page.locator("#feed-form button[type='submit']").click()
    loaded(page)
    expect(records).to_have_count(1)
    expect(records).to_have_attribute("data-hall", "H2")
    context.close()

    # a hall manager: their hall's records only, no outbox (technicians and department
    # leaders are refused: tests/central/web/test_scope_matrix.py)
    context = from_address(new_context(central, browser), "10.0.15.2")
    page = loaded(login(context, "h2-guanli", "/feed"))
    expect(page.locator("tr.feed-record")).to_have_count(1)
    expect(page.locator("tr.feed-record")).to_have_attribute("data-hall", "H2")
    expect(page.locator("#outbox-panel")).to_be_hidden()
    assert fetch_status(page, "/api/v1/outbox/status") == 403
    assert fetch_status(page, "/api/v1/feed/status?hall=H1") == 403
    context.close()


# ------------------------------------------------------------------------------- 调取取证


def test_supervisor_asks_a_windows_camera_from_the_case_page(
    central: Central, browser: Browser
) -> None:
    """The request is queued for the hall's gateway, which is not running here: the page
    follows it (the end-to-end capture is tests/edge/camera/test_evidence_upload.py)."""
    context = from_address(new_context(central, browser), "10.0.15.3")
    page = loaded(login(context, "jiancha", "/cases/SJ-203"))
    expect(page.locator("#case-evidence h2")).to_have_text("现场取证")
    page.select_option("#evidence-clip", "5")
    page.locator("#evidence-ask").click()
    expect(page.locator("#evidence-state")).to_have_attribute(
        "data-state", re.compile(r"^(queued|sent)$")
    )
    expect(page.locator("#evidence-state")).to_contain_text(re.compile("排队中|已下发网关"))
    expect(page.locator("#evidence-ask")).to_be_disabled()  # one request at a time
    context.close()
    # a hall manager reads the case but cannot turn the camera on
    context = from_address(new_context(central, browser), "10.0.15.4")
    own = next(c["case_no"] for c in central.seed.cases if c["hall"] == "H2")
    page = loaded(login(context, "h2-guanli", f"/cases/{own}"))
    expect(page.locator("#case-facts")).to_be_visible()
    expect(page.locator("#case-evidence")).to_have_count(0)
    context.close()


# ------------------------------------------------------------------------------- complaints

HOSTILE = (
    '<script>window.pwned=1</script><img src=x onerror="window.pwned=2"> 窗口2号推诿，让我跑了三趟'
)
REPLY = "经核实属实，已对窗口工作人员批评教育，并向您致歉。"


def _no_markup_ran(page: Page) -> None:
    assert page.evaluate("window.pwned === undefined")
    expect(page.locator("img[src='x']")).to_have_count(0)


def test_citizen_files_supervisor_replies_citizen_reads_it(
    central: Central, browser: Browser
) -> None:
    citizen = new_context(central, browser)
    form = citizen.new_page()
    form.goto("/complaint")
    expect(form.locator("h1")).to_have_text("网上投诉")
    expect(form.locator("#nav-overview")).to_have_count(0)  # no login, no dashboard
    form.fill("#c-text", HOSTILE)
    form.fill("#c-case-no", "SJ-003")
    form.fill("#c-phone", "13912345678")
    form.check("#c-consent")
    shoot(form, "complaint-form")
    form.click("#c-submit")
    expect(form.locator("#complaint-receipt h1")).to_have_text("投诉已提交")
    number = form.locator("#receipt-number").inner_text()
    code = form.locator("#receipt-code").inner_text()
    assert re.fullmatch(r"TS\d{16}", number) and len(code) == 8

    staff = new_context(central, browser)
    page = loaded(login(staff, "jiancha", "/complaints"))
    row = page.locator(f"tr.complaint[data-number='{number}']")
    expect(row).to_contain_text("市场监管局")  # routed through the case (归口)
    row.click()
    expect(page.locator("#complaint-text")).to_have_text(HOSTILE)  # shown as text
    _no_markup_ran(page)
    expect(page.locator("#complaint-detail")).to_contain_text("139****5678")
    page.click("#complaint-detail button[data-action='accept']")
    expect(page.locator("#complaint-state")).to_have_text("已受理")
    page.fill("#complaint-note", REPLY)
    page.click("#complaint-detail button[data-action='reply']")
    expect(page.locator("#complaint-state")).to_have_text("已答复")
    expect(page.locator("#complaint-detail li.complaint-event")).to_have_count(3)
    shoot(page, "complaints-supervisor")
    staff.close()

    status = citizen.new_page()
    status.goto("/complaint/status")
    status.fill("#s-number", number)
    status.fill("#s-code", code.lower())  # read out over the phone, typed in lower case
    status.click("#s-submit")
    expect(status.locator("#status-state")).to_have_text("已答复")
    expect(status.locator("#status-reply")).to_have_text(REPLY)
    expect(status.locator("#status-text")).to_have_text(HOSTILE)
    _no_markup_ran(status)
    citizen.close()


def test_pages_loaded_nothing_from_elsewhere_and_logged_no_errors(central: Central) -> None:
    assert central.requests, "no browser test ran before this one"
    foreign = [u for u in central.requests if not u.startswith((central.url, "data:", "blob:"))]
    assert not foreign, foreign
    assert f"{central.url}/static/vendor/echarts/echarts.min.js" in central.requests
    # refused pages and probes answer 401/403/404 on purpose; anything else is a bug
    unexpected = [e for e in central.console_errors if not re.search(r"status of (401|403|404)", e)]
    assert not unexpected, unexpected
