"""The 大屏 under 50 screens (``./run.sh bench``, or
``pytest -m bench tests/bench/test_wall_bench.py -s``): central (a uvicorn process on
PostgreSQL) holding 2,000 halls × 30 days — a registry tree, a gateway per hall, EVALS
counted evaluations and CASES completed cases per hall and day, open cases on every ladder stage,
and a background of stored events — while SSE screens (each also fetching the snapshot when its
version changes, with If-None-Match, and a drill-down every 20 s) and polling screens (ticker
every 3 s, snapshot every 30 s) stay open for DURATION seconds and a bad review is stored
every PRESS_EVERY seconds through the real Ingestor. Printed and recorded in
test-output/bench-wall.json: central's CPU (process CPU time / wall time, one core = 100 %),
the PostgreSQL backends' CPU serving it, the first (cold) snapshot, and the latency from a bad
review stored to its tick on each screen. Nothing is timed against a limit.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import insert, text

from central.reporting.registry import put_halls
from central.security import screens
from central.spine.ingest import Ingestor
from central.store.db import make_engine
from central.store.migrate import upgrade
from central.store.schema import gateways
from hallkit.clock import utc_now
from tests.bench.figures import record_ms
from tests.bench.test_registry_scope_bench import tree
from tests.support.broker import free_port
from tests.support.databases import create_pg_database, drop_pg_database
from tests.support.hallevents import Gateway, key_press

pytestmark = [pytest.mark.bench, pytest.mark.timeout(3600)]  # filling takes minutes

EVALS, CASES, OPEN = 40, 10, 30  # per hall and day; open cases per hall
SSE_SCREENS, POLLING_SCREENS = 40, 10
DURATION = float(os.environ.get("HALLWATCH_WALL_BENCH_S", "60"))
PRESS_EVERY = 1.0
RESULTS = Path(__file__).resolve().parents[2] / "test-output" / "bench-wall.json"
CLK_TCK = os.sysconf("SC_CLK_TCK")

CENTRAL = """
import sys, uvicorn
from central.api.app import create_app
from central.store.db import make_engine
uvicorn.run(create_app(make_engine(sys.argv[1])), host="127.0.0.1", port=int(sys.argv[2]),
            log_level="warning", access_log=False, lifespan="off")
"""

# Every hall's 30 days in a few statements (generate_series): evaluations with a hall's own
# share of bad keys, completed cases on time or late, open cases on each stage, and a backlog of
# the last minutes' other events so the ticker's query reads a realistic range.
FILL = [
    """CREATE TEMP TABLE bench_halls AS
       SELECT hall_id, (row_number() OVER (ORDER BY hall_id))::int AS n FROM halls""",
    """INSERT INTO correlation_results (gateway_id, seq, version, hall_id, business_day,
         "window", addr, dev_seq, key, evaluated_at, time_source, case_nos, confidence, flags,
         counted, basis, computed_at, digest)
       SELECT 'gw-' || h.hall_id, d * 1000 + i, 1, h.hall_id, CURRENT_DATE - d, i % 12 + 1,
         i % 12 + 1, i % 256,
         CASE WHEN (h.n * 7 + d * 13 + i * 31) % 100 < 70 + h.n % 25 THEN 1 + i % 2
              ELSE 3 + i % 4 END,
         (CURRENT_DATE - d) + time '02:00' + i * interval '4 minutes', 'receive', '[]', 1.0,
         '[]', true, 'session', now(), md5(h.hall_id || d || i)
       FROM bench_halls h, generate_series(0, 29) d, generate_series(1, :evals) i""",
    """INSERT INTO correlation_heads (gateway_id, seq, version, hall_id, business_day)
       SELECT gateway_id, seq, version, hall_id, business_day FROM correlation_results""",
    """INSERT INTO cases (case_no, revision, item_code, item_name, department, hall_id, "window",
         staff, accepted_at, legal_days, promised_days, completed_at, status, received_at, source)
       SELECT h.hall_id || '-' || d || '-' || i, 1, 'ITEM' || i, '事项' || i,
         '部门' || (i % 6), h.hall_id, i % 12 + 1, '100' || lpad((i % 12)::text, 3, '0'),
         (CURRENT_DATE - d - 3) + time '02:00', 5, 3, (CURRENT_DATE - d) + time '06:00',
         'completed', now(), 'api'
       FROM bench_halls h, generate_series(0, 29) d, generate_series(1, :cases) i""",
    """INSERT INTO case_steps (case_no, at, stage, on_date, days_over, revision, recorded_at)
       SELECT case_no, completed_at,
         CASE WHEN abs(hashtext(case_no)) % 10 < 9 THEN 'done_on_time' ELSE 'done_late' END,
         (completed_at AT TIME ZONE 'Asia/Shanghai')::date, 0, 1, now()
       FROM cases""",
    """INSERT INTO cases (case_no, revision, item_code, item_name, department, hall_id, "window",
         staff, accepted_at, legal_days, promised_days, status, received_at, source)
       SELECT h.hall_id || '-open-' || i, 1, 'ITEM' || i, '事项' || i, '部门' || (i % 6),
         h.hall_id, i % 12 + 1, '100001', now() - interval '2 days', 5, 3, 'running', now(),
         'api'
       FROM bench_halls h, generate_series(1, :open) i""",
    """INSERT INTO case_ladder (case_no, revision, rules_digest, as_of, stage, deadline,
         days_over, overdue, settled, updated_at)
       SELECT c.case_no, 1, 'bench', CURRENT_DATE,
         (ARRAY['blue', 'blue', 'blue', 'blue', 'yellow_light', 'red_light', 'yellow_card',
                'red_card', 'supervision_letter', 'suspended'])
           [1 + abs(hashtext(c.case_no)) % (CASE WHEN h.n % 10 = 0 THEN 10 ELSE 5 END)],
         CURRENT_DATE, 0, false, false, now()
       FROM cases c JOIN bench_halls h ON h.hall_id = c.hall_id WHERE c.status = 'running'""",
    """INSERT INTO events (gateway_id, seq, hall_id, kind, utc, mono_ns, boot, synced, body,
         received_at)
       SELECT 'gw-' || h.hall_id, 900000 + i, h.hall_id, 'queue.event',
         now() - i * interval '20 seconds', i, 'cd', true, '{}', now() - i * interval '20 seconds'
       FROM bench_halls h, generate_series(1, 30) i""",
    "ANALYZE",
]


def _cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime + stime


async def _fill(url: str) -> list[str]:
    engine = make_engine(url)
    await upgrade(engine)
    entries = tree()
    now = utc_now()
    async with engine.begin() as conn:
        await put_halls(conn, entries, now)
        await conn.execute(
            insert(gateways),
            [
                {
                    "gateway_id": f"gw-{e.hall_id}",
                    "hall_id": e.hall_id,
                    "registered_at": now,
                    "committed_through": 0,
                    "online": i % 50 != 0,  # one hall in fifty offline
                }
                for i, e in enumerate(entries)
            ],
        )
    async with engine.begin() as conn:
        for sql in FILL:
            names = {"evals": EVALS, "cases": CASES, "open": OPEN}
            await conn.execute(text(sql), {k: v for k, v in names.items() if f":{k}" in sql})
    total = SSE_SCREENS + POLLING_SCREENS + 1  # and one for the cold snapshot
    codes = [await screens.add(engine, f"wall-{i}") for i in range(total)]
    await engine.dispose()
    return codes


@pytest.fixture
def central_pg() -> Iterator[tuple[str, str]]:
    name, url = create_pg_database()
    try:
        yield name, url
    finally:
        drop_pg_database(name)


class Screens:
    def __init__(self) -> None:
        self.arrivals: dict[tuple[str, int], list[float]] = {}
        self.requests = 0
        self.not_modified = 0
        self.errors: list[str] = []
        self.stop = float("inf")  # set once every stream is open
        self.ready, self.streams, self.all_open = 0, 0, asyncio.Event()

    def arrived(self, tick: dict[str, object]) -> None:
        if tick.get("kind") == "bad_review":
            key = (str(tick["hall_id"]), int(str(tick["window"])))
            self.arrivals.setdefault(key, []).append(time.monotonic())

    async def get(self, c: httpx.AsyncClient, path: str, **kw: object) -> httpx.Response:
        self.requests += 1
        reply = await c.get(path, **kw)  # type: ignore[arg-type]
        if reply.status_code == 304:
            self.not_modified += 1
        elif reply.status_code != 200:
            self.errors.append(f"{path} {reply.status_code}")
        return reply

    async def sse(self, c: httpx.AsyncClient) -> None:
        etag, worst, event = "", [], ""
        next_drill = time.monotonic() + 20
        async with c.stream("GET", "/api/v1/wall/stream") as stream:
            async for line in stream.aiter_lines():
                if line.startswith("event: "):
                    event = line.removeprefix("event: ")
                elif line.startswith("data: ") and event == "tick":
                    self.arrived(json.loads(line.removeprefix("data: ")))
                elif line.startswith("data: ") and event == "snapshot":
                    self.ready += not etag
                    if self.ready == self.streams:
                        self.all_open.set()
                    snap = await self.get(
                        c, "/api/v1/wall/snapshot", headers={"If-None-Match": etag}
                    )
                    if snap.status_code == 200:
                        etag, worst = snap.headers["etag"], snap.json()["worst"]
                if worst and time.monotonic() >= next_drill:
                    next_drill += 20
                    await self.get(c, f"/api/v1/wall/hall/{worst[0]}")
                    worst = worst[1:] + worst[:1]
                if time.monotonic() >= self.stop:
                    return

    async def polling(self, c: httpx.AsyncClient, stop: float) -> None:
        cursor, etag, next_snapshot = "", "", 0.0
        while time.monotonic() < stop:
            if time.monotonic() >= next_snapshot:
                next_snapshot = time.monotonic() + 30
                snap = await self.get(c, "/api/v1/wall/snapshot", headers={"If-None-Match": etag})
                etag = snap.headers.get("etag", etag)
            reply = await self.get(c, "/api/v1/wall/ticker", params={"after": cursor})
            body = reply.json()
            cursor = body["cursor"]
            for tick in body["items"]:
                self.arrived(tick)
            await asyncio.sleep(3)


async def _enrolled(url: str, code: str) -> httpx.AsyncClient:
    c = httpx.AsyncClient(base_url=url, timeout=120)
    reply = await c.get("/wall/enroll", params={"code": code})
    assert reply.status_code == 303, reply.text
    return c


async def _press(url: str, halls: list[str], stop: float) -> dict[tuple[str, int], float]:
    engine = make_engine(url)
    ingestor = Ingestor(engine)
    stored: dict[tuple[str, int], float] = {}
    seqs: dict[str, int] = {}
    n = 0
    while time.monotonic() < stop - 8:  # the last presses still have time to arrive
        hall = halls[(n * 37) % len(halls)]
        window = 20 + n % 30
        gw = Gateway(hall, f"gw-{hall}")
        gw.seq = seqs.get(hall, 0)
        batch = gw.batch([("evaluator.key", key_press(window, 3 + n % 4), utc_now())])
        seqs[hall] = gw.seq
        await ingestor.ingest([batch])
        stored[(hall, window)] = time.monotonic()
        n += 1
        await asyncio.sleep(PRESS_EVERY)
    await engine.dispose()
    return stored


async def _pg_backends_cpu(url: str, name: str) -> dict[int, float]:
    engine = make_engine(url)
    async with engine.connect() as conn:
        pids = (
            await conn.execute(
                text(
                    "SELECT pid FROM pg_stat_activity "
                    "WHERE datname = :n AND pid <> pg_backend_pid()"
                ),
                {"n": name},
            )
        ).scalars()
        found = {}
        for pid in pids:
            with contextlib.suppress(OSError):  # a backend that just ended
                found[int(pid)] = _cpu_s(int(pid))
    await engine.dispose()
    return found


async def _run(url: str, name: str, codes: list[str], base: str, pid: int) -> None:
    start = time.perf_counter()
    async with httpx.AsyncClient(base_url=base, timeout=300) as first:
        assert (await first.get("/wall/enroll", params={"code": codes[0]})).status_code == 303
        cold = await first.get("/api/v1/wall/snapshot")
    assert cold.status_code == 200, cold.text
    cold_s = time.perf_counter() - start
    halls = [h["hall_id"] for h in cold.json()["halls"]]
    print(f"\n{len(halls)} halls, snapshot {len(cold.content) / 1024:.0f} KiB")
    record_ms(RESULTS, "first snapshot (cold: trends and 红黑榜 read), 2,000 halls", cold_s)

    clients = [await _enrolled(base, code) for code in codes[1:]]
    board, polled = Screens(), Screens()
    sse, polling = clients[:SSE_SCREENS], clients[SSE_SCREENS:]
    board.streams = len(sse)
    tasks = [asyncio.create_task(board.sse(c)) for c in sse]
    await asyncio.wait_for(board.all_open.wait(), 300)  # each past its first snapshot
    await asyncio.sleep(2)
    pg_before = await _pg_backends_cpu(url, name)
    cpu_before, wall_before = _cpu_s(pid), time.monotonic()
    stop = board.stop = wall_before + DURATION
    tasks += [asyncio.create_task(polled.polling(c, stop)) for c in polling]
    stored = await _press(url, halls, stop)
    await asyncio.wait(tasks, timeout=DURATION + 30)
    cpu = (_cpu_s(pid) - cpu_before) / (time.monotonic() - wall_before)
    pg_after = await _pg_backends_cpu(url, name)
    pg = sum(pg_after[p] - pg_before.get(p, 0.0) for p in pg_after) / DURATION
    for c in clients:
        await c.aclose()

    sse_lat = _latencies(board, stored, len(sse))
    poll_lat = _latencies(polled, stored, len(polling))
    errors = board.errors + polled.errors
    print(
        f"{len(sse)} SSE + {len(polling)} polling screens, {DURATION:.0f} s, "
        f"{len(stored)} bad reviews stored, {board.requests + polled.requests} requests "
        f"({board.not_modified + polled.not_modified} answered 304), errors {len(errors)}"
    )
    record_ms(RESULTS, "central CPU with 50 screens (percent of one core)", cpu / 10, "%")
    record_ms(RESULTS, "PostgreSQL backends' CPU for central (percent of one core)", pg / 10, "%")
    for mode, lat in (("SSE", sse_lat), ("polling", poll_lat)):
        if lat:
            name_ = f"bad review stored → tick on a screen ({mode})"
            record_ms(RESULTS, f"{name_}, median", statistics.median(lat))
            record_ms(RESULTS, f"{name_}, max", max(lat))
    assert not errors, errors[:5]


def _latencies(board: Screens, stored: dict[tuple[str, int], float], screens_n: int) -> list[float]:
    found: list[float] = []
    missing = 0
    for key, at in stored.items():
        arrivals = [t - at for t in board.arrivals.get(key, []) if t >= at - 0.5]
        found += arrivals
        missing += max(0, screens_n - len(arrivals))
    print(f"ticks expected but not seen: {missing} of {len(stored) * screens_n}")
    return found


def test_fifty_screens_on_two_thousand_halls(central_pg: tuple[str, str]) -> None:
    name, url = central_pg
    start = time.perf_counter()
    codes = asyncio.run(_fill(url))
    print(f"\nfilled in {time.perf_counter() - start:.0f} s")
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-c", CENTRAL, url, str(port)],
        cwd=Path(__file__).resolve().parents[2],
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])},
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                httpx.get(f"{base}/healthz", timeout=2)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline and proc.poll() is None, "central did not start"
                time.sleep(0.2)
        asyncio.run(_run(url, name, codes, base, proc.pid))
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
