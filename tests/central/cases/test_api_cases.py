"""POST/GET /api/v1/cases on both databases: idempotency, revisions, per-row errors, role scope,
masking, filters and paging."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from central.security.tokens import Role
from central.store.schema import case_revisions, case_suspensions, cases
from central.store.tables import metadata
from tests.central.cases.support import ID_NO, NAME, PHONE, bearer, case


async def post(
    client: httpx.AsyncClient, headers: dict[str, str], rows: list[Any]
) -> dict[str, Any]:
    response = await client.post("/api/v1/cases", headers=headers, json={"cases": rows})
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


async def count(engine: AsyncEngine, table: Any) -> int:
    async with engine.connect() as conn:
        return int((await conn.execute(select(func.count()).select_from(table))).scalar_one())


async def test_same_batch_twice_changes_nothing_and_a_change_is_a_revision(
    client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    sup = await bearer(engine, Role.SUPERVISOR)
    rows = [
        case("C-1"),
        case(
            "C-2",
            suspensions=[
                {"start": "2026-09-21 14:00", "end": "2026-09-22 09:00", "reason": "补正"}
            ],
        ),
        case("C-3", window=None),
    ]
    first = await post(client, sup, rows)
    assert (first["created"], first["unchanged"], first["revised"], first["rejected"]) == (
        3,
        0,
        0,
        0,
    )
    assert [r["outcome"] for r in first["results"]] == ["created"] * 3
    again = await post(client, sup, rows)
    assert [r["outcome"] for r in again["results"]] == ["unchanged"] * 3
    assert [r["revision"] for r in again["results"]] == [1, 1, 1]
    assert await count(engine, case_revisions) == 3

    done = case("C-1", status="办结", completed_at="2026-09-24T16:30:00+08:00")
    revised = await post(client, sup, [done, rows[1]])
    assert [(r["outcome"], r["revision"]) for r in revised["results"]] == [
        ("revised", 2),
        ("unchanged", 1),
    ]
    assert await count(engine, case_revisions) == 4

    detail = (await client.get("/api/v1/cases/C-1", headers=sup)).json()
    assert detail["revision"] == 2 and detail["status"] == "completed"
    assert detail["completed_at"] == "2026-09-24T08:30:00Z"
    history = (await client.get("/api/v1/cases/C-1/revisions", headers=sup)).json()
    assert [(h["revision"], h["doc"]["status"]) for h in history] == [
        (1, "running"),
        (2, "completed"),
    ]
    assert history[0]["doc"]["completed_at"] is None  # the old version is kept as it was

    # a suspension reported later replaces the case's suspensions, as a revision
    more = case(
        "C-2",
        status="暂停",
        suspensions=[
            {"start": "2026-09-21 14:00", "end": "2026-09-22 09:00", "reason": "补正"},
            {"start": "2026-09-24 10:00", "reason": "特别程序"},
        ],
    )
    assert (await post(client, sup, [more]))["results"][0]["outcome"] == "revised"
    async with engine.connect() as conn:
        held = (
            await conn.execute(
                select(case_suspensions.c.reason, case_suspensions.c.ended_at)
                .where(case_suspensions.c.case_no == "C-2")
                .order_by(case_suspensions.c.started_at)
            )
        ).all()
    assert [(r.reason, r.ended_at is None) for r in held] == [("补正", False), ("特别程序", True)]


async def test_the_same_case_twice_in_one_batch(
    client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    sup = await bearer(engine, Role.TECHNICIAN)
    out = await post(
        client, sup, [case("D-1"), case("D-1", staff="000999"), case("D-1", staff="000999")]
    )
    assert [(r["outcome"], r["revision"]) for r in out["results"]] == [
        ("created", 1),
        ("revised", 2),
        ("unchanged", 2),
    ]
    async with engine.connect() as conn:
        assert (await conn.execute(select(cases.c.staff, cases.c.revision))).one() == ("000999", 2)


async def test_bad_rows_are_rejected_with_reasons_and_the_rest_is_stored(
    client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    sup = await bearer(engine, Role.SUPERVISOR)
    rows: list[Any] = [
        case("E-1"),
        case("E-2", accepted_at="2026-09-18"),  # no time of day
        case("E-3", promised_days=11),  # promise beyond the legal limit
        case("E-4", status="办结"),  # completed without a completion time
        case("E-5", applicant={"phone": "12345678901"}),
        "not an object",
        case("E-7", accepted_at="2099-01-01 09:00"),  # in the future
        case("E 8"),  # not a case number
        {**case("E-9"), "colour": "blue"},  # unknown field
        case("E-10", status="审核中"),
    ]
    out = await post(client, sup, rows)
    assert (out["created"], out["rejected"]) == (1, 9)
    by_index = {r["index"]: r for r in out["results"]}
    assert by_index[0]["outcome"] == "created"
    assert "time of day" in by_index[1]["errors"][0]
    assert "exceeds" in by_index[2]["errors"][0]
    assert "completed_at" in by_index[3]["errors"][0]
    assert by_index[4]["errors"][0].startswith("applicant.phone:")
    assert by_index[5]["case_no"] is None and "object" in by_index[5]["errors"][0]
    assert "future" in by_index[6]["errors"][0]
    assert by_index[7]["case_no"] is None and by_index[7]["errors"][0].startswith("case_no:")
    assert by_index[8]["errors"][0].startswith("colour:")
    assert "unknown status" in by_index[9]["errors"][0]
    assert "12345678901" not in json.dumps(out)  # the refused value is not echoed
    assert await count(engine, cases) == 1


async def test_body_errors_and_limits(client: httpx.AsyncClient, engine: AsyncEngine) -> None:
    sup = await bearer(engine, Role.SUPERVISOR)
    r = await client.post(
        "/api/v1/cases", headers=sup, content=b'{"cases": "' + PHONE.encode() + b'"}'
    )
    assert r.status_code == 422 and PHONE not in r.text
    r = await client.post("/api/v1/cases", headers=sup, content=b"not json")
    assert r.status_code == 422
    r = await client.post("/api/v1/cases", headers=sup, json={"cases": [{}] * 5001})
    assert r.status_code == 413
    assert (await client.post("/api/v1/cases", json={"cases": []})).status_code == 401


async def test_only_supervisor_or_technician_may_feed(
    client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    for role, scope in (
        (Role.HALL_MANAGER, {"hall": "H1"}),
        (Role.DEPARTMENT_LEADER, {"department": "市场监管局"}),
    ):
        headers = await bearer(engine, role, **scope)
        r = await client.post("/api/v1/cases", headers=headers, json={"cases": [case("F-1")]})
        assert r.status_code == 403
    assert await count(engine, cases) == 0


async def _all(
    client: httpx.AsyncClient, headers: dict[str, str], **params: Any
) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    cursor = None
    while True:
        query = {**params, "limit": 4, **({"cursor": cursor} if cursor else {})}
        r = await client.get("/api/v1/cases", headers=headers, params=query)
        assert r.status_code == 200, r.text
        page = r.json()
        items += page["items"]
        cursor = page["next_cursor"]
        if cursor is None:
            return items


async def test_department_leader_and_hall_manager_see_only_their_cases(
    client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    sup = await bearer(engine, Role.SUPERVISOR)
    rows = [
        case(
            f"S-{i:02d}",
            department="市场监管局" if i % 2 else "人社局",
            hall="H1" if i % 3 else "H2",
            accepted_at=f"2026-09-{10 + i} 09:00",
        )
        for i in range(12)
    ]
    await post(client, sup, rows)
    leader = await bearer(engine, Role.DEPARTMENT_LEADER, department="人社局")
    manager = await bearer(engine, Role.HALL_MANAGER, hall="H2")

    mine = {r["case_no"] for r in rows if r["department"] == "人社局"}
    seen = await _all(client, leader)
    assert {i["case_no"] for i in seen} == mine
    # asking for the other department or any of its halls still shows only the own cases
    assert await _all(client, leader, department="市场监管局") == []
    assert {i["case_no"] for i in await _all(client, leader, hall="H1")} == {
        r["case_no"] for r in rows if r["department"] == "人社局" and r["hall"] == "H1"
    }

    missing = await client.get("/api/v1/cases/S-99", headers=leader)
    for other in sorted({r["case_no"] for r in rows} - mine):
        guessed = await client.get(f"/api/v1/cases/{other}", headers=leader)
        assert (guessed.status_code, guessed.json()) == (404, missing.json())
        history = await client.get(f"/api/v1/cases/{other}/revisions", headers=leader)
        assert history.status_code == 404
    for own in sorted(mine):
        assert (await client.get(f"/api/v1/cases/{own}", headers=leader)).status_code == 200

    hall_cases = {r["case_no"] for r in rows if r["hall"] == "H2"}
    assert {i["case_no"] for i in await _all(client, manager)} == hall_cases
    for other in sorted({r["case_no"] for r in rows} - hall_cases):
        assert (await client.get(f"/api/v1/cases/{other}", headers=manager)).status_code == 404
    assert len(await _all(client, sup)) == 12


async def test_list_filters_and_keyset_paging(
    client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    sup = await bearer(engine, Role.SUPERVISOR)
    rows = [
        case(
            f"P-{i:02d}",
            window=i % 3 + 1,
            staff=f"00010{i % 2}",
            accepted_at=f"2026-09-{1 + i // 2:02d} {8 + i % 2}:30",
        )
        for i in range(23)
    ]
    await post(client, sup, rows)
    everything = await _all(client, sup)
    assert [i["case_no"] for i in everything] == [f"P-{i:02d}" for i in reversed(range(23))]
    assert {i["case_no"] for i in await _all(client, sup, window=2)} == {
        r["case_no"] for r in rows if r["window"] == 2
    }
    assert {i["case_no"] for i in await _all(client, sup, staff="000101", window=1)} == {
        r["case_no"] for r in rows if r["staff"] == "000101" and r["window"] == 1
    }
    # accepted dates are Beijing dates: 09-03 … 09-05 are rows 4 … 9
    ranged = await _all(client, sup, accepted_from="2026-09-03", accepted_to="2026-09-05")
    assert sorted(i["case_no"] for i in ranged) == [f"P-{i:02d}" for i in range(4, 10)]
    assert (
        await client.get("/api/v1/cases", headers=sup, params={"cursor": "garbage"})
    ).status_code == 422


async def test_applicant_data_is_only_ever_masked(
    client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    sup = await bearer(engine, Role.SUPERVISOR)
    tech = await bearer(engine, Role.TECHNICIAN)
    leader = await bearer(engine, Role.DEPARTMENT_LEADER, department="市场监管局")
    applicant = {
        "name": NAME,
        "phone": f"+86 {PHONE[:3]}-{PHONE[3:7]}-{PHONE[7:]}",
        "id_no": ID_NO.lower(),
    }
    responses = [
        await client.post(
            "/api/v1/cases", headers=sup, json={"cases": [case("M-1", applicant=applicant)]}
        )
    ]
    responses.append(
        await client.post(
            "/api/v1/cases",
            headers=sup,
            json={"cases": [case("M-1", applicant={**applicant, "phone": "010-6512 3456"})]},
        )
    )
    for headers in (sup, leader, tech):
        responses += [
            await client.get("/api/v1/cases", headers=headers),
            await client.get("/api/v1/cases/M-1", headers=headers),
            await client.get("/api/v1/cases/M-1/revisions", headers=headers),
        ]
    for r in responses:
        # technicians: no cases at all (staff numbers, applicants), like the pages
        assert r.status_code == (
            403 if r.request.headers.get("authorization") == tech["Authorization"] else 200
        )
        for secret in (PHONE, ID_NO, ID_NO.lower(), NAME, "65123456", "01065123456"):
            assert secret not in r.text, (r.request.url, secret)

    detail = responses[3].json()
    assert detail["applicant"] == "王** *******3456 1****************X"
    assert "applicant_digest" not in json.dumps(detail)
    assert [h["doc"]["applicant_masked"] for h in responses[4].json()] == [
        "王** 138****5678 1****************X",
        "王** *******3456 1****************X",
    ]

    # and nothing unmasked in any table
    async with engine.connect() as conn:
        for table in metadata.sorted_tables:
            for row in (await conn.execute(select(table))).all():
                text = json.dumps([str(v) for v in row], ensure_ascii=False)
                for secret in (PHONE, ID_NO, NAME, "65123456"):
                    assert secret not in text, (table.name, secret)
        digests = (await conn.execute(select(cases.c.applicant_digest))).scalars().all()
    assert len(digests) == 1 and len(digests[0]) == 64  # same ID number: same digest


async def test_concurrent_writers_store_each_case_and_revision_once(
    engine: AsyncEngine, context: Any
) -> None:
    # four aggregator requests with overlapping batches at once: every case once, every
    # distinct content once as a revision, whoever commits first
    from central.cases.store import Source, feed
    from hallkit.clock import utc_now

    batches = [
        [case(f"K-{i:02d}", window=w) for i in range(start, start + 30)]
        for start, w in ((0, 1), (10, 1), (20, 2), (0, 1))
    ]
    results = await asyncio.gather(
        *(feed(engine, rows, context.masker, source=Source.API, now=utc_now()) for rows in batches)
    )
    outcomes = [r.outcome.value for batch in results for r in batch]
    assert outcomes.count("created") == 50
    async with engine.connect() as conn:
        stored = (await conn.execute(select(cases.c.case_no, cases.c.revision))).all()
        revisions = (
            await conn.execute(select(func.count()).select_from(case_revisions))
        ).scalar_one()
    assert len(stored) == 50
    assert revisions == 50 + outcomes.count("revised")
    assert outcomes.count("rejected") == 0
