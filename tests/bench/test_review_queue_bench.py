"""Review queue figures on both databases (``./run.sh bench``, or
``pytest -m bench tests/bench/test_review_queue_bench.py -s``): one busy hall's day of ROWS
flagged key presses, the time of a filtered page, of reading every matching row (what "select
all matching" asks) and of one bulk dismissal of them all, through the ASGI app as a
supervisor. Printed and recorded in test-output/bench-review-queue.json; nothing is timed
against a limit.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from central.api.app import create_app
from central.rules.workdays import business_date, day_start
from central.security.tokens import Role, create_token
from central.spine.ingest import Ingestor
from central.spine.registry import register
from central.store.db import make_engine
from central.store.migrate import upgrade
from hallkit.clock import utc_now
from tests.bench.figures import record_ms
from tests.support.hallevents import Gateway, key_press

pytestmark = pytest.mark.bench

ROWS = 1000
RESULTS = Path(__file__).resolve().parents[2] / "test-output" / "bench-review-queue.json"


def record(name: str, seconds: float) -> None:
    record_ms(RESULTS, name, seconds)


async def timed(call: Callable[[], Awaitable[httpx.Response]]) -> tuple[float, Any]:
    start = time.perf_counter()
    reply = await call()
    seconds = time.perf_counter() - start
    assert reply.status_code == 200, reply.text
    return seconds, reply.json()


async def test_review_queue_figures(database_url: str) -> None:
    kind = database_url.split("+")[0]  # sqlite | postgresql
    engine = make_engine(database_url)
    try:
        await upgrade(engine)
        await register(engine, "H1", "gw1")
        now = utc_now()
        start = day_start(business_date(now))
        events = [
            (
                "evaluator.key",
                key_press(i % 12 + 1, i % 6 + 1, session=i % 250 + 1, marks=["UNKNOWN_SESSION"]),
                start + (now - start) * (i + 1) / (ROWS + 2),
            )
            for i in range(ROWS)
        ]
        await Ingestor(engine).ingest([Gateway("H1", "gw1").batch(events)])
        token = await create_token(engine, Role.SUPERVISOR, label="bench")
        headers = {"Authorization": f"Bearer {token}"}
        app = create_app(engine)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://c", timeout=120) as c:
            path = "/api/v1/review-queue/page"
            page_s, _ = await timed(
                lambda: c.get(path, headers=headers, params={"hall": "H1", "window": 3})
            )
            all_s, every = await timed(
                lambda: c.get(path, headers=headers, params={"hall": "H1", "limit": 1000})
            )
            assert every["total"] == ROWS
            rows = [{"gateway": f["gateway"], "seq": f["seq"]} for f in every["items"]]
            body = {"rows": rows, "decision": "dismissed", "note": "bench"}
            bulk_s, out = await timed(
                lambda: c.post("/api/v1/review-queue/decide", headers=headers, json=body)
            )
            assert len(out["decided"]) == ROWS
            again_s, out = await timed(
                lambda: c.post("/api/v1/review-queue/decide", headers=headers, json=body)
            )
            assert len(out["already"]) == ROWS
        record(f"{kind}: filtered page of {ROWS} flagged rows", page_s)
        record(f"{kind}: every matching row ({ROWS})", all_s)
        record(f"{kind}: bulk dismiss of {ROWS} rows", bulk_s)
        record(f"{kind}: the same bulk request again", again_s)
    finally:
        await engine.dispose()
