"""复核: a supervisor's decision on a flag is a new record pointing at the one it replaces;
nothing is edited, stale decisions are refused, and every role sees only its own."""

from __future__ import annotations

import asyncio

from sqlalchemy import func, select

from central.security.tokens import Role
from central.store.schema_dashboard import evaluation_reviews
from tests.central.web.conftest import Site, logged_in
from tests.central.web.seed import SNAPSHOT_SHA


def _url(site: Site, name: str) -> str:
    gateway, seq = site.seed.flagged[name]
    return f"/api/v1/evaluations/{gateway}/{seq}/reviews"


async def test_confirm_then_dismiss_keeps_both_records_and_marks_the_first_replaced(
    site: Site,
) -> None:
    url = _url(site, "no_session")
    async with site.client() as c:
        headers = await site.bearer(Role.SUPERVISOR, label="王监察")
        before = (await c.get(url, headers=headers)).json()
        assert "NO_SESSION" in before["flags"] and "SELF_PRESS_SUSPECTED" in before["flags"]
        assert before["reviews"] == []
        first = await c.post(
            url,
            headers=headers,
            json={"flag": "SELF_PRESS_SUSPECTED", "decision": "confirmed", "note": "录像显示无人"},
        )
        assert first.status_code == 201, first.text
        assert first.json()["generation"] == 1 and first.json()["supersedes"] is None
        assert first.json()["reviewer"] == "王监察"
        second = await c.post(
            url,
            headers=headers,
            json={
                "flag": "SELF_PRESS_SUSPECTED",
                "decision": "dismissed",
                "note": "群众在侧面",
                "supersedes": first.json()["id"],
            },
        )
        assert second.status_code == 201, second.text
        assert second.json()["supersedes"] == first.json()["id"]
        after = (await c.get(url, headers=headers)).json()
    reviews = {r["id"]: r for r in after["reviews"]}
    assert reviews[first.json()["id"]]["current"] is False
    assert reviews[first.json()["id"]]["decision"] == "confirmed"  # unchanged, still there
    assert reviews[second.json()["id"]]["current"] is True
    assert after["correlation_version"] == 1
    assert [r["evaluation_version"] for r in after["reviews"]] == [1, 1]


async def test_a_decision_on_a_stale_view_is_refused(site: Site) -> None:
    url = _url(site, "no_session")
    async with site.client() as c:
        headers = await site.bearer(Role.SUPERVISOR)
        body = {"flag": "NO_SESSION", "decision": "confirmed"}
        assert (await c.post(url, headers=headers, json=body)).status_code == 201
        # a second supervisor still looking at the unreviewed flag
        stale = await c.post(url, headers=headers, json={**body, "decision": "dismissed"})
        assert stale.status_code == 409 and "刷新" in stale.json()["detail"]
        wrong = await c.post(url, headers=headers, json={**body, "supersedes": 999999})
        assert wrong.status_code == 409


async def test_two_supervisors_deciding_at_once_cannot_both_extend_the_same_review(
    site: Site,
) -> None:
    url = _url(site, "repeat")
    async with site.client() as c:
        headers = await site.bearer(Role.SUPERVISOR)
        body = {"flag": "SESSION_REPEAT", "decision": "confirmed"}
        replies = await asyncio.gather(*(c.post(url, headers=headers, json=body) for _ in range(4)))
    assert sorted(r.status_code for r in replies) == [201, 409, 409, 409]
    async with site.engine.connect() as conn:
        n = (await conn.execute(select(func.count()).select_from(evaluation_reviews))).scalar()
    assert n == 1


async def test_only_flags_the_evaluation_carries_can_be_decided(site: Site) -> None:
    url = _url(site, "repeat")
    async with site.client() as c:
        headers = await site.bearer(Role.SUPERVISOR)
        reply = await c.post(
            url, headers=headers, json={"flag": "SELF_PRESS_SUSPECTED", "decision": "confirmed"}
        )
        assert reply.status_code == 422


async def test_retransmissions_are_not_evaluations(site: Site) -> None:
    async with site.client() as c:
        headers = await site.bearer(Role.SUPERVISOR)
        assert (await c.get(_url(site, "retransmit"), headers=headers)).status_code == 404
        queue = (await c.get("/api/v1/review-queue", headers=headers)).json()
    listed = {(f["gateway"], f["seq"]) for f in queue}
    assert site.seed.flagged["retransmit"] not in listed
    assert {site.seed.flagged["no_session"], site.seed.flagged["repeat"]} <= listed


async def test_the_camera_verdict_is_the_evidence_shown_by_its_hash(site: Site) -> None:
    async with site.client() as c:
        headers = await site.bearer(Role.SUPERVISOR)
        detail = (await c.get(_url(site, "no_session"), headers=headers)).json()
    (evidence,) = detail["evidence"]
    assert evidence["verdict"] == "absent"
    assert evidence["snapshot_sha256"] == SNAPSHOT_SHA
    assert evidence["image_url"] is None  # no evidence upload path yet


async def test_review_queue_shows_decisions_and_filters_undecided(site: Site) -> None:
    url = _url(site, "repeat")
    async with site.client() as c:
        headers = await site.bearer(Role.SUPERVISOR)
        for flag in ("SESSION_REPEAT", "DUPLICATE"):
            reply = await c.post(url, headers=headers, json={"flag": flag, "decision": "dismissed"})
            assert reply.status_code == 201, reply.text
        everything = (await c.get("/api/v1/review-queue", headers=headers)).json()
        undecided = (await c.get("/api/v1/review-queue?undecided=true", headers=headers)).json()
    repeat = next(
        f for f in everything if [f["gateway"], f["seq"]] == list(site.seed.flagged["repeat"])
    )
    assert repeat["decisions"] == {"SESSION_REPEAT": "dismissed", "DUPLICATE": "dismissed"}
    assert repeat["open_flags"] == []
    assert repeat["ticket"] == "D001" and repeat["counted"] is False
    assert all(f["open_flags"] for f in undecided)
    assert site.seed.flagged["repeat"] not in {(f["gateway"], f["seq"]) for f in undecided}


async def test_only_supervisors_decide(site: Site) -> None:
    url = _url(site, "repeat")
    body = {"flag": "SESSION_REPEAT", "decision": "confirmed"}
    async with site.client() as c:
        for role, scope in (
            (Role.HALL_MANAGER, {"hall": "H2"}),
            (Role.TECHNICIAN, {}),
            (Role.DEPARTMENT_LEADER, {"department": "公安局"}),
        ):
            headers = await site.bearer(role, **scope)
            reply = await c.post(url, headers=headers, json=body)
            assert reply.status_code == 403, (role, reply.text)


async def test_each_role_sees_only_its_own_evaluations(site: Site) -> None:
    h1, h2 = _url(site, "no_session"), _url(site, "repeat")
    async with logged_in(site, "h2-guanli") as c:  # hall manager of H2
        assert (await c.get(h2)).status_code == 200
        assert (await c.get(h1)).status_code == 404  # exactly like a missing one
        halls = {f["hall"] for f in (await c.get("/api/v1/review-queue")).json()}
        assert halls == {"H2"}
    async with logged_in(site, "shichang-lingdao") as c:  # 市场监管局: no case of theirs
        assert (await c.get(h1)).status_code == 404
        assert (await c.get(h2)).status_code == 404
        assert (await c.get("/api/v1/review-queue")).json() == []
    async with logged_in(site, "yunwei") as c:  # technicians do not review evaluations
        assert (await c.get("/api/v1/review-queue")).status_code == 403
        assert (await c.get(h1)).status_code == 403  # the whole area is out of reach


async def test_the_list_of_recent_reviews_is_scoped(site: Site) -> None:
    async with site.client() as c:
        headers = await site.bearer(Role.SUPERVISOR)
        for name, flag in (("no_session", "NO_SESSION"), ("repeat", "SESSION_REPEAT")):
            assert (
                await c.post(
                    _url(site, name), headers=headers, json={"flag": flag, "decision": "confirmed"}
                )
            ).status_code == 201
        every = (await c.get("/api/v1/reviews", headers=headers)).json()
        assert {r["hall"] for r in every} == {"H1", "H2"}
        mine = (
            await c.get("/api/v1/reviews", headers=await site.bearer(Role.HALL_MANAGER, hall="H2"))
        ).json()
        assert {r["hall"] for r in mine} == {"H2"}
        refused = await c.get(
            "/api/v1/reviews",
            headers=await site.bearer(Role.DEPARTMENT_LEADER, department="公安局"),
        )
        assert refused.status_code == 403
