"""The hall page on a kiosk (1366×768) late on a very busy day: sixteen windows, four-digit key
counts (a five-digit day at one window), staff with long names. Nothing on a tile may be cut or
spill: every count, name and ticket is read whole in a real Chromium, in both languages.

The day is put in the gateway's journal before it starts (as after a restart at closing time),
so the page shows it through the same replay a real gateway does.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page

from edge.clock import Clock
from edge.journal import Journal
from firmware_bridges.ff68.codec import CMD_KEY, KEY_LABELS, build_frame
from protocols.events import KINDS
from tests.edge.web.rig import OUTPUT, PASSWORD, USER, WINDOWS, Hall, chromium, running_hall

KIOSK = (1366, 768)
# names as halls have them: two to four characters, a minority name with its middle dot
NAMES = [
    "张敏",
    "李建国",
    "王芳",
    "欧阳建华",
    "阿依古丽·买买提",
    "司马晓东",
    "刘洋",
    "陈静",
    "诸葛明远",
    "赵丽娟",
    "格桑卓玛",
    "黄志强",
    "周婷",
    "吴晓峰",
    "郑雪梅",
    "孙红霞",
]
STAFF = {f"1003{w:02d}": NAMES[w - 1] for w in range(1, WINDOWS + 1)}
NAMELESS_WINDOW = 16  # its staff number is not in the configuration: shown by number
CAMERA_WINDOWS = (5, 9, 16)  # a camera says their staff are away: the longest staff lines


def day_counts(window: int) -> dict[int, int]:
    """Key → today's count: four digits for the first two keys everywhere, all six at one
    window (a five-digit day)."""
    if window == 1:
        return {k: 1000 + 333 * k for k in range(1, 7)}
    return {
        1: 1000 + 61 * window,
        2: 1000 + 7 * window,
        3: 10 * window,
        4: 99,
        5: window,
        6: 0 if window % 2 else 950,
    }


def body(kind: str, doc: dict[str, Any]) -> Any:
    """The journal takes each kind's body model, as the gateway builds it."""
    return KINDS[kind].model_validate(doc)


def seed_a_busy_day(data_dir: Path) -> None:
    async def seed() -> None:
        journal = Journal(data_dir / "journal.db", Clock(assume_synced=True))
        await journal.open()
        mseq = 0
        for window in range(1, WINDOWS + 1):
            staff = next(s for s, name in STAFF.items() if name == NAMES[window - 1])
            if window == NAMELESS_WINDOW:
                staff = "100399"
            for code, extra in (
                ("LI", {}),
                ("CL", {"ticket": f"A{window:03d}8"}),
                ("ST", {"ticket": f"A{window:03d}8"}),
            ):
                mseq += 1
                journal.append_nowait(
                    "queue.event",
                    body(
                        "queue.event",
                        {
                            "mseq": mseq,
                            "type": code,
                            "window": window,
                            "staff": staff,
                            "raw": f"$QM,{mseq},{code}",
                            **extra,
                        },
                    ),
                )
            if window in CAMERA_WINDOWS:
                journal.append_nowait(
                    "camera.presence",
                    body(
                        "camera.presence",
                        {
                            "camera": f"cam{window}",
                            "window": window,
                            "staff": "away",
                            "since": "2026-01-01T00:00:00Z",
                            "since_mono_ns": 0,
                            "confidence": 0.9,
                            "snapshot": f"cam{window}/1.jpg",
                        },
                    ),
                )
            seq = 0
            for key, count in day_counts(window).items():
                for _ in range(count):
                    seq = seq % 255 + 1
                    raw = build_frame(0x80 + window, CMD_KEY, bytes((seq, key, 0)))
                    journal.append_nowait(
                        "evaluator.key",
                        body(
                            "evaluator.key",
                            {
                                "window": window,
                                "addr": 0x80 + window,
                                "raw": raw[1:].hex(),
                                "dev_seq": seq,
                                "key": key,
                                "label": KEY_LABELS[key],
                                "session": 0,
                                "invitation": None,
                                "marks": ["NO_SESSION"],
                            },
                        ),
                    )
        await journal.append("gen.sample", body("gen.sample", {"n": 0, "run": "seeded"}))
        await journal.close()

    asyncio.run(seed())


@pytest.fixture(scope="module")
def hall(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hall]:
    with running_hall(
        tmp_path_factory.mktemp("hall-fit"), staff_names=STAFF, before_start=seed_a_busy_day
    ) as hall:
        yield hall


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as b:
        yield b


# Every element on a tile that holds text: its content must fit its box (an ellipsis or a
# clipped overflow shows as scrollWidth > clientWidth), and the box must lie inside the tile.
CUT = """() => {
  const cut = [];
  for (const tile of document.querySelectorAll('.tile')) {
    const box = tile.getBoundingClientRect();
    for (const el of tile.querySelectorAll('.tile-body *')) {
      if (![...el.childNodes].some(n => n.nodeType === 3 && n.textContent.trim())) continue;
      const r = el.getBoundingClientRect();
      if (!el.getClientRects().length) continue;  // not shown at all (an optional part)
      const block = getComputedStyle(el).display !== 'inline';
      const wide = block && (el.scrollWidth > el.clientWidth + 0.5
        || el.scrollHeight > el.clientHeight + 0.5);
      const outside = r.left < box.left - 0.5 || r.right > box.right + 0.5
        || r.top < box.top - 0.5 || r.bottom > box.bottom + 0.5;
      if (wide || outside) {
        cut.push({window: tile.dataset.window, cls: el.className, text: el.textContent,
                  scroll: el.scrollWidth, client: el.clientWidth, wide, outside});
      }
    }
  }
  const doc = document.documentElement;
  const tiles = [...document.querySelectorAll('.tile')];
  return {cut, scroll: [doc.scrollWidth - innerWidth, doc.scrollHeight - innerHeight],
          tiles: tiles.length, tilesOffScreen: tiles.filter(t => {
            const r = t.getBoundingClientRect();
            return r.top < 0 || r.left < 0 || r.bottom > innerHeight || r.right > innerWidth;
          }).length};
}"""

TILE_TEXT = """() => Object.fromEntries([...document.querySelectorAll('.tile')].map(t => [
  t.dataset.window, {
    staff: t.querySelector('.tile-staff').innerText,
    name: t.querySelector('.staff-name').innerText,
    camera: t.querySelector('.tile-camera [class^="camera-"]:not(.camera-label)')?.innerText,
    total: t.querySelector('.eval-today')?.innerText,
    keys: Object.fromEntries([...t.querySelectorAll('.key')].map(
      k => [k.dataset.key, k.querySelector('b').innerText])),
  }]))"""


def open_kiosk(hall: Hall, browser: Browser, lang: str) -> Page:
    context = browser.new_context(viewport={"width": KIOSK[0], "height": KIOSK[1]}, locale="zh-CN")
    context.set_default_timeout(30_000)
    page = context.new_page()
    page.goto(f"{hall.url}/?lang={lang}")
    page.fill("input[name=username]", USER)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_selector(f'.tile[data-window="{WINDOWS}"]')
    page.wait_for_selector('#stream-state[data-state="live"]')
    page.wait_for_function("() => document.fonts.status === 'loaded'")
    return page


@pytest.fixture(scope="module")
def longest_states(hall: Hall) -> None:
    """The longest texts a tile shows: an invitation open at window 1 (邀请评价中), window 2's
    evaluator offline (a red tile with its advice), window 3 paused."""
    qm, call = hall.qm, hall.sims.call
    call(lambda: qm.login(1, "100301"))
    ticket = call(lambda: qm.issue_ticket("A01")).ticket
    call(lambda: qm.call(ticket, 1))
    call(lambda: qm.start(ticket, 1, "100301"))
    call(lambda: qm.finish(ticket, 1, "100301"))
    call(lambda: setattr(hall.bus.devices[hall.addr(2)], "silent", True))
    call(lambda: qm.pause(3, "100303"))


@pytest.mark.parametrize("lang", ["zh", "en"])
def test_sixteen_busy_windows_fit_a_kiosk_uncut(
    hall: Hall, browser: Browser, longest_states: None, lang: str
) -> None:
    page = open_kiosk(hall, browser, lang)
    page.wait_for_selector('.tile[data-window="1"][data-evaluator="invited"]')
    page.wait_for_selector('.tile[data-window="2"].tile--fault')
    page.wait_for_selector('.tile[data-window="3"][data-presence="paused"]')
    OUTPUT.mkdir(exist_ok=True)
    shot = OUTPUT / "screenshots" / f"hall-1366x768-{lang}-busy-day.png"
    shot.parent.mkdir(exist_ok=True)
    page.screenshot(path=str(shot))
    layout: dict[str, Any] = page.evaluate(CUT)
    assert layout["tiles"] == WINDOWS and layout["scroll"] == [0, 0], layout
    assert layout["tilesOffScreen"] == 0, layout  # a kiosk: every window without scrolling
    assert layout["cut"] == [], layout["cut"]
    shown = page.evaluate(TILE_TEXT)
    for window in range(1, WINDOWS + 1):
        counts = day_counts(window)
        tile = shown[str(window)]
        assert tile["keys"] == {str(k): str(n) for k, n in counts.items()}, (window, tile)
        if window != 2:  # a red tile shows its advice instead of the total
            assert str(sum(counts.values())) in tile["total"], (window, tile)
        if window == NAMELESS_WINDOW:
            assert tile["name"] == "100399", tile
        else:
            assert tile["name"] == NAMES[window - 1], tile
            assert tile["staff"].startswith(tile["name"]), tile  # the name first
        if window in CAMERA_WINDOWS:  # what the camera sees stays, whatever else must go
            assert tile["camera"] == {"zh": "人员离岗", "en": "staff away"}[lang], tile
    assert shown["1"]["total"].endswith("12993")
    page.context.close()
