"""The 大屏's API over the real app and store (SQLite and PostgreSQL): snapshot with ETag, the
ticker's cursor and a bad review stored now, the drill-down, screens enrolled and revoked, a
screen refused everywhere but the wall, and the live stream over a real HTTP server."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import time

import httpx

from central.reporting.registry import HallEntry, Level, put_halls
from central.security import screens
from central.spine.ingest import Ingestor
from hallkit.clock import utc_now
from tests.central.web.conftest import Site, logged_in
from tests.support.hallevents import Gateway, key_press
from tests.support.logins import serving

NAMES = {"H1": "杭州市民中心", "H2": "西湖区行政服务中心"}


async def _registry(site: Site) -> None:
    async with site.engine.begin() as conn:
        await put_halls(
            conn,
            [
                HallEntry(hall_id="H1", name=NAMES["H1"], level=Level.CITY, region_code="330100"),
                HallEntry(
                    hall_id="H2",
                    name=NAMES["H2"],
                    level=Level.COUNTY,
                    parent_id="H1",
                    region_code="330106",
                ),
            ],
            utc_now(),
        )


async def _bad_review(
    site: Site, key: int = 3, ago: dt.timedelta = dt.timedelta(0), gateway: Gateway | None = None
) -> None:
    """A bad key pressed at H3's window 4 ``ago`` (a backlog's when long), stored now through
    the real Ingestor."""
    at = utc_now() - ago
    gateway = gateway or Gateway("H3", "gw3")
    batch = gateway.batch([("evaluator.key", key_press(4, key), at)])
    await Ingestor(site.engine).ingest([batch])


async def _ticks_until(c: httpx.AsyncClient, cursor: str, deadline_s: float) -> list[dict]:  # type: ignore[type-arg]
    found: list[dict] = []  # type: ignore[type-arg]
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        reply = (await c.get("/api/v1/wall/ticker", params={"after": cursor})).json()
        found += reply["items"]
        cursor = reply["cursor"]
        if any(t["kind"] == "bad_review" for t in found):
            return found
        await asyncio.sleep(0.2)
    return found


async def test_snapshot_etag_ticker_and_drill_down(site: Site) -> None:
    await _registry(site)
    async with logged_in(site, "jiancha") as c:
        reply = await c.get("/api/v1/wall/snapshot")
        assert reply.status_code == 200, reply.text
        snap = reply.json()
        halls = {h["hall_id"]: h for h in snap["halls"]}
        assert [h["hall_id"] for h in snap["halls"]][:2] == ["H1", "H2"]  # parent first
        assert halls["H2"]["parent"] == "H1" and halls["H2"]["name"] == NAMES["H2"]
        assert halls["H2"]["level"] == "county" and halls["H3"]["level"] is None
        # red cards and lights in H1; H2's 监察建议书 makes it red too (never green beside one)
        assert halls["H1"]["state"] == "red" and halls["H1"]["cards"] == {"yellow": 1, "red": 1}
        assert halls["H2"]["state"] == "red" and halls["H2"]["letters"] == 1
        assert halls["H3"]["state"] in ("offline", "idle")  # its gateway never reported
        assert snap["totals"]["halls"] == 3 and snap["scope"]["label"] == "全部大厅"
        assert len(snap["trends"]["days"]) == 30 == len(snap["trends"]["satisfaction"])
        assert snap["totals"]["evaluations_today"] > 0 and snap["worst"][0] == "H1"
        etag = reply.headers["etag"]
        assert etag.strip('"') == snap["version"]
        again = await c.get("/api/v1/wall/snapshot", headers={"If-None-Match": etag})
        assert again.status_code == 304 and again.content == b""

        cursor = (await c.get("/api/v1/wall/ticker")).json()["cursor"]
        await _bad_review(site)
        ticks = await _ticks_until(c, cursor, 5.0)
        bad = [t for t in ticks if t["kind"] == "bad_review"]
        assert bad and bad[0]["hall_id"] == "H3" and bad[0]["window"] == 4, ticks
        assert "服务态度不好" in bad[0]["text"] and "100231" not in bad[0]["text"]
        assert bad[0]["history"] is False and "补传" not in bad[0]["text"]
        # the cursor moved past it: asked again, nothing new
        last = (await c.get("/api/v1/wall/ticker", params={"after": bad[-1]["id"]})).json()
        assert last["items"] == []
        # one pressed five minutes ago, arriving now with a gateway's backlog: history (补传)
        cursor = (await c.get("/api/v1/wall/ticker")).json()["cursor"]
        gw3 = Gateway("H3", "gw3")
        gw3.seq = 1  # after the first
        await _bad_review(site, key=5, ago=dt.timedelta(minutes=5), gateway=gw3)
        late = [t for t in await _ticks_until(c, cursor, 5.0) if t["kind"] == "bad_review"]
        assert late and late[0]["history"] is True and late[0]["text"].endswith("（补传）"), late

        detail = (await c.get("/api/v1/wall/hall/H1")).json()
        assert detail["name"] == NAMES["H1"] and detail["state"] == "red"
        assert {d["name"] for d in detail["departments"]} >= {"市场监管局", "人社局"}
        assert {w["window"] for w in detail["windows"]} >= {1, 3}
        assert [c["light"] for c in detail["cases_overdue"]][:2] == ["red_card", "yellow_card"]
        assert (await c.get("/api/v1/wall/hall/NOPE")).status_code == 404
        # the overview's cards follow the same rule
        cards = {h["hall"]: h for h in (await c.get("/api/v1/overview")).json()["halls"]}
        assert cards["H2"]["state"] == "red" and cards["H3"]["state"] == halls["H3"]["state"]

    async with logged_in(site, "h2-guanli") as c:  # a hall manager: the hall's subtree only
        snap = (await c.get("/api/v1/wall/snapshot")).json()
        assert [h["hall_id"] for h in snap["halls"]] == ["H2"]
        assert snap["scope"]["label"] == NAMES["H2"]
        assert (await c.get("/api/v1/wall/hall/H1")).status_code == 404
    async with logged_in(site, "shichang-lingdao") as c:  # whole halls: not a department's
        assert (await c.get("/api/v1/wall/snapshot")).status_code == 403


async def test_a_screen_is_enrolled_once_sees_the_wall_only_and_stops_when_revoked(
    site: Site,
) -> None:
    await _registry(site)
    code = await screens.add(site.engine, "wall-1", hall="H1")
    async with site.client() as c:
        enrolled = await c.get("/wall/enroll", params={"code": code})
        assert enrolled.status_code == 303 and enrolled.headers["location"] == "/wall"
        cookie = enrolled.cookies["hw_screen"]
        header = enrolled.headers["set-cookie"].lower()
        assert "httponly" in header and "samesite=strict" in header and "max-age=3153" in header
        assert (await c.get("/wall/enroll", params={"code": code})).status_code == 404  # once
        snap = await c.get("/api/v1/wall/snapshot")
        assert snap.status_code == 200
        assert {h["hall_id"] for h in snap.json()["halls"]} == {"H1", "H2"}  # the subtree
        assert (await c.get("/api/v1/wall/ticker")).status_code == 200
        # nothing else: raw events, reviews, the overview, cases
        for path in ("/api/v1/events", "/api/v1/overview", "/api/v1/review-queue"):
            assert (await c.get(path)).status_code in (401, 403), path
        gateway, seq = site.seed.flagged["repeat"]
        decided = await c.post(
            f"/api/v1/evaluations/{gateway}/{seq}/reviews",
            json={"flag": "SESSION_REPEAT", "decision": "dismissed"},
        )
        assert decided.status_code in (401, 403)
        listed = {s.name: s for s in await screens.list_screens(site.engine)}
        assert listed["wall-1"].state == "enrolled"

        await screens.revoke(site.engine, "wall-1")
        assert (await c.get("/api/v1/wall/snapshot")).status_code == 401  # at once
    async with site.client() as other:  # a code of a revoked screen is dead as well
        late = await screens.add(site.engine, "wall-2")
        await screens.revoke(site.engine, "wall-2")
        assert (await other.get("/wall/enroll", params={"code": late})).status_code == 404
        other.cookies.set("hw_screen", cookie)
        assert (await other.get("/api/v1/wall/stream")).status_code == 401


async def test_a_stored_bad_review_reaches_the_stream_within_five_seconds(site: Site) -> None:
    code = await screens.add(site.engine, "wall-sse")
    async with serving(site.app) as url, httpx.AsyncClient(base_url=url, timeout=10) as c:
        enrolled = await c.get("/wall/enroll", params={"code": code})
        assert enrolled.status_code == 303
        async with c.stream("GET", "/api/v1/wall/stream") as stream:
            assert stream.headers["content-type"].startswith("text/event-stream")
            lines = stream.aiter_lines()
            event = ""
            while event != "snapshot":  # the stream's first state
                line = await asyncio.wait_for(anext(lines), 10)
                event = line.removeprefix("event: ") if line.startswith("event: ") else event
            stored = time.monotonic()
            await _bad_review(site, key=5)
            tick = None
            while tick is None:
                line = await asyncio.wait_for(anext(lines), 5)
                if line.startswith("data: ") and event == "tick":
                    doc = json.loads(line.removeprefix("data: "))
                    tick = doc if doc["kind"] == "bad_review" else None
                elif line.startswith("event: "):
                    event = line.removeprefix("event: ")
            took = time.monotonic() - stored
            assert took < 5.0 and "业务不熟" in tick["text"], (took, tick)
            await screens.revoke(site.engine, "wall-sse")  # and its open stream ends
            revoked = time.monotonic()
            with contextlib.suppress(StopAsyncIteration):
                while True:
                    await asyncio.wait_for(anext(lines), 10)
            assert time.monotonic() - revoked < 8.0
