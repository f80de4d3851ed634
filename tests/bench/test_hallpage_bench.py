"""Hall page figures on this machine (printed and recorded, nothing timed against a threshold).

Sixteen evaluators pressed at ~30 presses/s for 20 s while four pages (a big screen and three
kiosks) watch in one Chromium: how long from a press on the simulated evaluator to the count
on the tile of a watching page, and what the gateway process spends in CPU meanwhile.

Run: .venv/bin/pytest -m bench -s tests/bench/test_hallpage_bench.py
Results: test-output/bench-hallpage.json
"""

from __future__ import annotations

import json
import random
import statistics
import time
from collections import defaultdict
from functools import partial
from pathlib import Path

import psutil
import pytest

from tests.edge.web.rig import OUTPUT, PASSWORD, USER, WINDOWS, chromium, running_hall

pytestmark = pytest.mark.bench

PAGES = 4
RATE = 30.0  # presses per second over the whole hall
DURATION_S = 20.0

RECORDER = """() => {
  // every change of a tile's count, with the moment it was rendered
  window.__log = [];
  const last = {};
  new MutationObserver(() => {
    const now = Date.now();
    for (const keys of document.querySelectorAll('.tile-keys')) {
      const w = keys.closest('.tile').dataset.window;
      const total = Number(keys.dataset.total);
      if (last[w] !== total) { last[w] = total; window.__log.push([Number(w), total, now]); }
    }
  }).observe(document.getElementById('tiles'), {subtree: true, childList: true});
}"""


def test_key_to_tile_latency_with_four_pages_watching(tmp_path: Path) -> None:
    with running_hall(tmp_path, poll_interval_s=5) as hall, chromium() as browser:
        context = browser.new_context(viewport={"width": 1920, "height": 1080})
        pages = [context.new_page() for _ in range(PAGES)]
        first = pages[0]
        first.goto(hall.url + "/login")
        first.fill("input[name=username]", USER)
        first.fill("input[name=password]", PASSWORD)
        first.click("button[type=submit]")
        for page in pages:
            if page is not first:
                page.goto(hall.url + "/")
            page.wait_for_selector(f'.tile[data-window="{WINDOWS}"]')
        watcher = pages[-1]
        watcher.evaluate(RECORDER)
        base = {
            int(w): int(t)
            for w, t in watcher.evaluate(
                "[...document.querySelectorAll('.tile')].map(t => [t.dataset.window,"
                " t.querySelector('.tile-keys').dataset.total])"
            )
        }

        gateway = psutil.Process(hall.gateway.process.pid)  # type: ignore[union-attr]
        cpu_before = sum(gateway.cpu_times()[:2])
        rng = random.Random(3)
        presses: dict[int, list[float]] = defaultdict(list)
        started = time.monotonic()
        n = 0
        while time.monotonic() - started < DURATION_S:
            window = rng.randint(1, WINDOWS)
            presses[window].append(time.time())
            hall.sims.call(partial(hall.bus.press, hall.addr(window), rng.randint(1, 6)))
            n += 1
            time.sleep(max(0.0, started + n / RATE - time.monotonic()))
        elapsed = time.monotonic() - started
        expected = {w: base[w] + len(times) for w, times in presses.items()}
        watcher.wait_for_function(
            "expected => Object.entries(expected).every(([w, n]) => Number(document"
            '.querySelector(`.tile[data-window="${w}"] .tile-keys`).dataset.total) >= n)',
            arg={str(w): n for w, n in expected.items()},
            timeout=30_000,
        )
        cpu_s = sum(gateway.cpu_times()[:2]) - cpu_before
        log = watcher.evaluate("window.__log")
        context.close()

    shown: dict[tuple[int, int], float] = {}
    for window, total, at_ms in log:
        shown.setdefault((window, total), at_ms / 1000)
    latencies = []
    for window, times in presses.items():
        for k, pressed in enumerate(times, start=1):
            seen = shown.get((window, base[window] + k))
            if seen is None:  # two presses rendered in one update: the later one shows both
                seen = min(
                    at
                    for (w, total), at in shown.items()
                    if w == window and total > base[window] + k
                )
            latencies.append(seen - pressed)
    latencies.sort()
    result = {
        "presses": n,
        "rate_per_s": round(n / elapsed, 1),
        "pages_open": PAGES,
        "latency_ms": {
            "p50": round(statistics.median(latencies) * 1000, 1),
            "p95": round(latencies[int(0.95 * (len(latencies) - 1))] * 1000, 1),
            "max": round(latencies[-1] * 1000, 1),
        },
        "gateway_cpu_percent_of_one_core": round(100 * cpu_s / elapsed, 1),
    }
    print(json.dumps(result, indent=1))
    OUTPUT.mkdir(exist_ok=True)
    (OUTPUT / "bench-hallpage.json").write_text(json.dumps(result, indent=1))
    assert len(latencies) == n
