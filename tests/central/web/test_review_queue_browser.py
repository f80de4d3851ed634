"""The review queue worked as a supervisor would, in a real Chromium against a real central:
filter a busy hall, move and select with the keyboard, dismiss in bulk with one note, then
select everything the filter matches and decide it at once."""

from __future__ import annotations

import asyncio
import re
import sqlite3
from collections.abc import Iterator
from contextlib import closing

import pytest
from playwright.sync_api import Browser, Page, expect

from central.rules.workdays import day_start
from central.spine.ingest import Ingestor
from central.store.db import make_engine
from tests.central.web.test_dashboard_browser import (  # noqa: F401 (module fixtures)
    Central,
    browser,
    central,
    loaded,
    login,
    new_context,
    shoot,
)
from tests.support.hallevents import Gateway, key_press

BUSY = 30  # H3's flagged presses: windows 1–3, every fourth a SESSION_REPEAT


def _database(server: Central) -> str:
    return f"sqlite+aiosqlite:///{server.config.parent / 'central.db'}"


async def _ingest_busy_hall(server: Central) -> None:
    start = day_start(server.seed.today)
    span = server.seed.now - start
    events = [
        (
            "evaluator.key",
            key_press(
                i % 3 + 1,
                i % 6 + 1,
                session=i + 1,
                ticket=f"E{i:03d}",
                staff="300101",
                marks=["SESSION_REPEAT" if i % 4 == 0 else "UNKNOWN_SESSION"],
            ),
            start + span * (i + 1) / (BUSY + 2),
        )
        for i in range(BUSY)
    ]
    engine = make_engine(_database(server))
    try:
        await Ingestor(engine).ingest([Gateway("H3", "gw3").batch(events)])
    finally:
        await engine.dispose()


def _reviews_of(server: Central, hall: str) -> list[tuple[int, str, str, str]]:
    """Read with plain sqlite3: Playwright's sync API keeps an event loop in this thread."""
    with closing(sqlite3.connect(server.config.parent / "central.db")) as db:
        return list(
            db.execute(
                "SELECT seq, flag, decision, note FROM evaluation_reviews WHERE hall_id = ?",
                (hall,),
            )
        )


@pytest.fixture(scope="module")
def busy(central: Central) -> Iterator[Central]:  # noqa: F811
    asyncio.run(_ingest_busy_hall(central))
    yield central


def _rows(page: Page) -> list[tuple[str, str]]:
    return [
        (r.get_attribute("data-gateway") or "", r.get_attribute("data-seq") or "")
        for r in page.locator("tr.queue-row").all()
    ]


def test_filter_select_with_keys_and_dismiss_in_bulk(busy: Central, browser: Browser) -> None:  # noqa: F811
    context = new_context(busy, browser)
    page = loaded(login(context, "jiancha", "/reviews"))
    page.on("dialog", lambda dialog: dialog.accept())
    expect(page.locator("#bulk-bar")).to_be_visible()
    # "/" focuses the filter; hall and window narrow the rows, the counts follow
    page.keyboard.press("/")
    expect(page.locator("#f-hall")).to_be_focused()
    page.keyboard.type("H3")
    page.fill("#f-window", "2")
    page.locator("#range-form button[type='submit']").click()
    expect(page.locator("tr.queue-row")).to_have_count(BUSY // 3)
    assert set(page.locator("tr.queue-row td:nth-child(2)").all_inner_texts()) == {"H3"}
    assert set(page.locator("tr.queue-row td:nth-child(3)").all_inner_texts()) == {"2"}
    repeat = sum(1 for i in range(BUSY) if i % 3 == 1 and i % 4 == 0)
    expect(page.locator(".count-chip[data-flag='SESSION_REPEAT'] .count-n")).to_have_text(
        str(repeat)
    )
    expect(page.locator(".count-chip[data-flag='UNKNOWN_SESSION'] .count-n")).to_have_text(
        str(BUSY // 3 - repeat)
    )
    expect(page).to_have_url(re.compile(r"hall=H3.*window=2|window=2.*hall=H3"))
    # a flag from the counts narrows further
    page.locator(".count-chip[data-flag='UNKNOWN_SESSION']").click()
    expect(page.locator("tr.queue-row")).to_have_count(BUSY // 3 - repeat)
    rows = _rows(page)
    # j moves (the evidence follows), x selects; three rows
    page.evaluate("document.activeElement && document.activeElement.blur()")
    for _ in range(3):
        page.keyboard.press("j")
        expect(page.locator("#detail[data-loaded='1']")).to_be_visible()
        page.keyboard.press("x")
    expect(page.locator("#selected-count")).to_have_text("已选 3 条")
    expect(page.locator("tr.queue-row.chosen")).to_have_count(3)
    expect(page.locator("#detail")).to_contain_text("票号 E")
    page.keyboard.press("k")
    expect(page.locator("tr.queue-row.selected")).to_have_attribute("data-seq", rows[1][1])
    page.fill("#bulk-note", "演练数据，非群众评价")
    page.locator("tr.queue-row.selected").focus()
    page.keyboard.press("d")
    expect(page.locator("body[data-bulk-done='3']")).to_have_count(1)
    expect(page.locator("#notice")).to_contain_text("已复核 3 项")
    for _, seq in rows[:3]:
        chip = page.locator(f"tr.queue-row[data-seq='{seq}'] .flag[data-flag='UNKNOWN_SESSION']")
        expect(chip).to_have_class(re.compile("dismissed"))
    stored = _reviews_of(busy, "H3")
    assert sorted(s for s, *_ in stored) == sorted(int(seq) for _, seq in rows[:3])
    assert {(f, d, n) for _, f, d, n in stored} == {
        ("UNKNOWN_SESSION", "dismissed", "演练数据，非群众评价")
    }
    shoot(page, "reviews-bulk")
    # every row of the hall: select all matching, dismiss; the three decided stay as they were
    page.fill("#f-window", "")
    page.locator(".count-chip[data-flag='all']").click()
    expect(page.locator("tr.queue-row")).to_have_count(BUSY)
    page.locator("#select-matching").click()
    expect(page.locator("#selected-count")).to_have_text(f"已选 {BUSY} 条")
    expect(page.locator("#bulk-note")).to_have_value("")  # a note is not reused by mistake
    page.fill("#bulk-note", "整批不属实")
    page.locator("#bulk-dismiss").click()
    expect(page.locator("body[data-bulk-done='27']")).to_have_count(1)
    expect(page.locator("#notice")).to_contain_text("3 项此前已有结论")
    stored = _reviews_of(busy, "H3")
    assert len(stored) == BUSY
    assert sum(1 for *_, n in stored if n == "整批不属实") == BUSY - 3
    page.select_option("#show", "undecided")
    page.locator("#range-form button[type='submit']").click()
    expect(page.locator("tr.queue-row")).to_have_count(0)
    context.close()
