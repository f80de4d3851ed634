"""The review queue at scale: filters and counts per flag over a busy hall, bulk decisions that
keep one append-only review per flag, and scopes that hold in filters, counts and bulk."""

from __future__ import annotations

import datetime as dt
from typing import Any

import httpx
from sqlalchemy import func, select

from central.rules.workdays import day_start
from central.security.tokens import Role
from central.spine.ingest import Ingestor
from central.store.schema_dashboard import evaluation_reviews
from tests.central.web.conftest import Site
from tests.support.hallevents import Gateway, key_press

BUSY = 500
STAFF = ("300101", "300102")


def _mark(i: int) -> str:
    return "SESSION_REPEAT" if i % 5 == 0 else "UNKNOWN_SESSION"


async def _busy_hall(site: Site, n: int = BUSY) -> None:
    """n flagged key presses at hall H3 today: windows 1–5, keys 1–6, two staff, two marks."""
    start = day_start(site.seed.today)
    span = site.seed.now - start
    events = [
        (
            "evaluator.key",
            key_press(
                i % 5 + 1,
                i % 6 + 1,
                session=i % 200 + 1,
                ticket=f"E{i:03d}",
                staff=STAFF[i % 2],
                marks=[_mark(i)],
            ),
            start + span * (i + 1) / (n + 2),
        )
        for i in range(n)
    ]
    await Ingestor(site.engine).ingest([Gateway("H3", "gw3").batch(events)])


async def _page(c: httpx.AsyncClient, headers: dict[str, str], **params: Any) -> dict[str, Any]:
    reply = await c.get("/api/v1/review-queue/page", headers=headers, params=params)
    assert reply.status_code == 200, reply.text
    body: dict[str, Any] = reply.json()
    return body


async def _review_rows(site: Site, hall: str) -> list[Any]:
    async with site.engine.connect() as conn:
        return list(
            (
                await conn.execute(
                    select(evaluation_reviews)
                    .where(evaluation_reviews.c.hall_id == hall)
                    .order_by(evaluation_reviews.c.id)
                )
            ).all()
        )


async def test_bulk_dismiss_of_500_rows_keeps_500_records_and_a_repeat_changes_nothing(
    site: Site,
) -> None:
    await _busy_hall(site)
    note = "演练数据，非群众评价"
    async with site.client() as c:
        headers = await site.bearer(Role.SUPERVISOR, label="王监察")
        queue = await _page(c, headers, hall="H3", limit=1000)
        assert queue["total"] == BUSY and len(queue["items"]) == BUSY
        rows = [{"gateway": f["gateway"], "seq": f["seq"]} for f in queue["items"]]
        body = {"rows": rows, "decision": "dismissed", "note": note}
        reply = await c.post("/api/v1/review-queue/decide", headers=headers, json=body)
        assert reply.status_code == 200, reply.text
        assert len(reply.json()["decided"]) == BUSY and reply.json()["already"] == []
        stored = await _review_rows(site, "H3")
        assert len(stored) == BUSY
        assert {(r.gateway_id, r.seq) for r in stored} == {(r["gateway"], r["seq"]) for r in rows}
        assert all(
            r.decision == "dismissed"
            and r.note == note
            and r.generation == 1
            and r.supersedes is None
            and r.reviewer == "王监察"
            and r.reviewer_role == "supervisor"
            for r in stored
        )
        # the same request again: every row reported as decided, nothing written
        again = await c.post("/api/v1/review-queue/decide", headers=headers, json=body)
        assert again.status_code == 200, again.text
        assert again.json()["decided"] == []
        assert sorted(r["id"] for r in again.json()["already"]) == [r.id for r in stored]
        assert await _review_rows(site, "H3") == stored
        open_now = await _page(c, headers, hall="H3", undecided="true")
        assert open_now["total"] == 0 and open_now["counts"] == {}
        # each decision reads like a single one in the evaluation's history
        one = rows[0]
        history = (
            await c.get(
                f"/api/v1/evaluations/{one['gateway']}/{one['seq']}/reviews", headers=headers
            )
        ).json()
    assert [(r["decision"], r["note"], r["current"]) for r in history["reviews"]] == [
        ("dismissed", note, True)
    ]


async def test_each_filter_and_the_counts_per_flag(site: Site) -> None:
    n = 60
    await _busy_hall(site, n)
    expected_repeat = sum(1 for i in range(n) if _mark(i) == "SESSION_REPEAT")
    async with site.client() as c:
        headers = await site.bearer(Role.SUPERVISOR)
        every = await _page(c, headers, hall="H3", limit=1000)
        assert every["total"] == n
        assert every["counts"] == {
            "SESSION_REPEAT": expected_repeat,
            "UNKNOWN_SESSION": n - expected_repeat,
        }
        # the flag filter narrows the rows, the counts stay those of the other filters
        repeat = await _page(c, headers, hall="H3", flag="SESSION_REPEAT")
        assert repeat["total"] == expected_repeat and repeat["counts"] == every["counts"]
        assert all("SESSION_REPEAT" in f["marks"] for f in repeat["items"])
        window = await _page(c, headers, hall="H3", window=2)
        assert window["total"] == n // 5 and {f["window"] for f in window["items"]} == {2}
        key = await _page(c, headers, hall="H3", key=4)
        assert key["total"] == n // 6 and {f["key"] for f in key["items"]} == {4}
        staff = await _page(c, headers, hall="H3", staff=STAFF[1])
        assert staff["total"] == n // 2 and {f["staff"] for f in staff["items"]} == {STAFF[1]}
        combined = await _page(c, headers, hall="H3", window=1, staff=STAFF[0])
        assert combined["total"] == len([i for i in range(n) if i % 5 == 0 and i % 2 == 0])
        halls = await _page(c, headers, hall="H2")
        assert {f["hall"] for f in halls["items"]} == {"H2"}
        # dates: yesterday holds none of today's rows
        yesterday = (site.seed.today - dt.timedelta(days=1)).isoformat()
        assert (await _page(c, headers, first=yesterday, last=yesterday, hall="H3"))["total"] == 0
        today = site.seed.today.isoformat()
        assert (await _page(c, headers, first=today, last=today, hall="H3"))["total"] == n
        # paging: oldest first, pages that join up
        first = await _page(c, headers, hall="H3", limit=25)
        second = await _page(c, headers, hall="H3", limit=25, offset=25)
        assert [f["seq"] for f in first["items"] + second["items"]] == [
            f["seq"] for f in every["items"][:50]
        ]
        # undecided: a decided flag leaves the open counts
        target = repeat["items"][0]
        decided = await c.post(
            "/api/v1/review-queue/decide",
            headers=headers,
            json={
                "rows": [{"gateway": target["gateway"], "seq": target["seq"]}],
                "decision": "confirmed",
            },
        )
        assert decided.status_code == 200, decided.text
        open_ = await _page(c, headers, hall="H3", undecided="true")
        assert open_["total"] == n - 1
        assert open_["counts"]["SESSION_REPEAT"] == expected_repeat - 1


async def test_scopes_hold_in_filters_counts_and_bulk(site: Site) -> None:
    await _busy_hall(site, 20)
    async with site.client() as c:
        supervisor = await site.bearer(Role.SUPERVISOR)
        leader = await site.bearer(Role.DEPARTMENT_LEADER, department="市场监管局")
        manager = await site.bearer(Role.HALL_MANAGER, hall="H2")
        busy = await _page(c, supervisor, hall="H3")
        assert busy["total"] == 20
        # the leader's department has no case at H3: no rows, no counts
        assert await _page(c, leader, hall="H3") == {
            "total": 0,
            "offset": 0,
            "limit": 100,
            "counts": {},
            "items": [],
        }
        mine = await _page(c, leader)
        assert all(f["case_nos"] for f in mine["items"])
        assert await _page(c, manager, hall="H3") == {**busy, "total": 0, "counts": {}, "items": []}
        assert {f["hall"] for f in (await _page(c, manager))["items"]} <= {"H2"}
        rows = [{"gateway": f["gateway"], "seq": f["seq"]} for f in busy["items"]]
        body = {"rows": rows, "decision": "dismissed", "note": "x"}
        # only supervisors decide
        for headers in (leader, manager):
            refused = await c.post("/api/v1/review-queue/decide", headers=headers, json=body)
            assert refused.status_code == 403
        # one row that is not an evaluation (the device's retransmit, an unknown seq) refuses
        # the whole request: nothing is written for the others
        retransmit = site.seed.flagged["retransmit"]
        for stranger in (
            {"gateway": retransmit[0], "seq": retransmit[1]},
            {"gateway": "gw3", "seq": 999_999},
        ):
            refused = await c.post(
                "/api/v1/review-queue/decide",
                headers=supervisor,
                json={**body, "rows": [*rows, stranger]},
            )
            assert refused.status_code == 403, refused.text
            assert "nothing was decided" in refused.json()["detail"]
        # a flag the row does not carry refuses the whole request too
        wrong = await c.post(
            "/api/v1/review-queue/decide",
            headers=supervisor,
            json={**body, "rows": [{**rows[0], "flag": "ORPHAN"}, *rows[1:]]},
        )
        assert wrong.status_code == 422
        too_many = await c.post(
            "/api/v1/review-queue/decide",
            headers=supervisor,
            json={**body, "rows": rows * 51},
        )
        assert too_many.status_code == 422
    async with site.engine.connect() as conn:
        assert (await conn.scalar(select(func.count()).select_from(evaluation_reviews))) == 0
