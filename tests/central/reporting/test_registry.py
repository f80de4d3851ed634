"""The registry of halls: validation of one hall, the tree (levels descend, parents exist),
subtrees, storage on SQLite and PostgreSQL, the API (supervisors only) and what user add counts
as an existing hall."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator

import httpx
import pytest
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncEngine

from central.api.app import create_app
from central.reporting.registry import (
    HallEntry,
    Level,
    RegistryError,
    put_halls,
    registry,
    subtree,
    tree_errors,
)
from central.reporting.registry_cache import hall_names, halls_under, snapshot
from central.security.known_places import check_scope_exists, known_halls
from central.security.tokens import Role, create_token
from central.store.db import make_engine
from central.store.migrate import upgrade
from hallkit.login.accounts import AccountError

NOW = dt.datetime(2026, 12, 6, 8, tzinfo=dt.UTC)


def hall(hall_id: str, level: str, parent: str | None = None, code: str = "330000") -> HallEntry:
    return HallEntry(
        hall_id=hall_id,
        name=f"{hall_id}政务服务中心",
        level=Level(level),
        parent_id=parent,
        region_code=code,
    )


# a province with two cities; the first city has two counties, one with a township
TREE = {
    h.hall_id: h
    for h in (
        hall("ZJ", "province"),
        hall("HZ", "city", "ZJ", "330100"),
        hall("NB", "city", "ZJ", "330200"),
        hall("XH", "county", "HZ", "330106"),
        hall("YH", "county", "HZ", "330110"),
        hall("YH-LP", "township", "YH", "330110001000"),
        hall("NB-HS", "county", "NB", "330203"),
    )
}


@pytest.mark.parametrize("code", ["33010", "3301000", "33010600100", "33O100", ""])
def test_region_codes_have_6_or_12_digits(code: str) -> None:
    with pytest.raises(ValidationError):
        hall("X", "city", code=code)


def test_levels_read_in_chinese_and_english() -> None:
    doc = {"hall_id": "X", "name": "西湖区", "region_code": "330106"}
    assert HallEntry.model_validate({**doc, "level": "区县"}).level is Level.COUNTY
    assert HallEntry.model_validate({**doc, "level": "街道"}).level is Level.TOWNSHIP
    assert HallEntry.model_validate({**doc, "level": "City"}).level is Level.CITY
    with pytest.raises(ValidationError):
        HallEntry.model_validate({**doc, "level": "村"})


def test_opening_hours_are_periods_or_blank() -> None:
    doc = {"hall_id": "X", "name": "西湖区", "level": "county", "region_code": "330106"}
    assert HallEntry.model_validate({**doc, "opening_hours": "09:00-12:00，13:00-17:00"})
    with pytest.raises(ValidationError):
        HallEntry.model_validate({**doc, "opening_hours": "9点到5点"})


def test_the_tree_must_descend_and_name_parents_that_exist() -> None:
    assert tree_errors(TREE) == {}
    upward = {**TREE, "ZJ": hall("ZJ", "province", "XH")}  # a cycle through a lower level
    assert set(tree_errors(upward)) == {"ZJ"}
    sideways = {**TREE, "NB": hall("NB", "city", "HZ")}
    assert set(tree_errors(sideways)) == {"NB"}
    orphan = {**TREE, "XH": hall("XH", "county", "SH")}
    assert "SH" in tree_errors(orphan)["XH"]
    itself = {**TREE, "XH": hall("XH", "county", "XH")}
    assert set(tree_errors(itself)) == {"XH"}


def test_a_subtree_is_the_hall_and_everything_below() -> None:
    assert subtree(TREE, "HZ") == {"HZ", "XH", "YH", "YH-LP"}
    assert subtree(TREE, "NB") == {"NB", "NB-HS"}
    assert subtree(TREE, "YH-LP") == {"YH-LP"}
    assert subtree(TREE, "ZJ") == set(TREE)
    assert subtree({}, "H1") == {"H1"}  # not registered: its own subtree
    assert subtree(TREE, "H1") == {"H1"}


@pytest.fixture
def database_at_head() -> bool:
    return True  # every test migrates first: start from the migrated template


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    eng = make_engine(database_url)
    await upgrade(eng)
    yield eng
    await eng.dispose()


async def test_stored_tree_and_refusals_write_nothing(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        await put_halls(conn, TREE.values(), NOW)
    async with engine.connect() as conn:
        assert await registry(conn) == TREE
        assert await halls_under(conn, "HZ") == {"HZ", "XH", "YH", "YH-LP"}
        assert (await hall_names(conn))["XH"] == "XH政务服务中心"
    # making a city a county would leave its counties under a level that does not descend
    with pytest.raises(RegistryError) as refused:
        async with engine.begin() as conn:
            await put_halls(conn, [hall("HZ", "county", "ZJ"), hall("NEW", "city", "ZJ")], NOW)
    assert set(refused.value.problems) == {"XH", "YH"}
    async with engine.connect() as conn:
        assert await registry(conn) == TREE  # neither hall of the refused batch was written
    # a replacement that keeps the tree is taken
    renamed = TREE["XH"].model_copy(update={"name": "西湖区行政服务中心", "address": "文三路"})
    async with engine.begin() as conn:
        await put_halls(conn, [renamed], NOW)
        assert (await registry(conn))["XH"] == renamed


async def test_a_registry_change_reaches_another_process_at_its_next_request(
    database_url: str, engine: AsyncEngine
) -> None:
    other = make_engine(database_url)  # a second central process on the same database
    try:
        async with other.connect() as conn:
            before = await snapshot(conn)
            assert before.subtree("HZ") == {"HZ"}  # nothing registered yet
            assert await snapshot(conn) is before  # kept while the version row stays
        async with engine.begin() as conn:
            await put_halls(conn, TREE.values(), NOW)
        async with other.connect() as conn:
            assert await halls_under(conn, "HZ") == {"HZ", "XH", "YH", "YH-LP"}
        renamed = TREE["XH"].model_copy(update={"name": "西湖区行政服务中心"})
        async with engine.begin() as conn:
            await put_halls(conn, [renamed], NOW)
        async with other.connect() as conn:
            assert (await hall_names(conn))["XH"] == "西湖区行政服务中心"
            kept = await snapshot(conn)
        # a refused write rolls its bump back: the kept copy stays current
        with pytest.raises(RegistryError):
            async with engine.begin() as conn:
                await put_halls(conn, [hall("HZ", "county", "ZJ")], NOW)
        async with other.connect() as conn:
            assert await snapshot(conn) is kept
    finally:
        await other.dispose()


async def test_user_add_knows_registered_halls(engine: AsyncEngine) -> None:
    with pytest.raises(AccountError, match="XH"):
        await check_scope_exists(engine, "XH", None)
    async with engine.begin() as conn:
        await put_halls(conn, TREE.values(), NOW)
    assert set(TREE) <= await known_halls(engine)
    await check_scope_exists(engine, "XH", None)
    with pytest.raises(AccountError, match="XH"):  # the near match is offered
        await check_scope_exists(engine, "XJ", None)


async def test_the_api_lists_gets_and_puts_for_supervisors(engine: AsyncEngine) -> None:
    supervisor = {"Authorization": f"Bearer {await create_token(engine, Role.SUPERVISOR)}"}
    manager = {
        "Authorization": f"Bearer {await create_token(engine, Role.HALL_MANAGER, hall='ZJ')}"
    }
    transport = httpx.ASGITransport(app=create_app(engine))
    async with httpx.AsyncClient(transport=transport, base_url="http://central") as client:
        for entry in TREE.values():
            reply = await client.put(
                f"/api/v1/halls/{entry.hall_id}",
                headers=supervisor,
                json=entry.model_dump(mode="json"),
            )
            assert reply.status_code == 200, reply.text
        listed = await client.get("/api/v1/halls", headers=supervisor)
        assert [HallEntry.model_validate(h) for h in listed.json()] == sorted(
            TREE.values(), key=lambda h: h.hall_id
        )
        one = await client.get("/api/v1/halls/YH-LP", headers=supervisor)
        assert one.json()["region_code"] == "330110001000"
        assert (await client.get("/api/v1/halls/SH", headers=supervisor)).status_code == 404

        bad = hall("QT", "city", "XH").model_dump(mode="json")  # a city under a county
        reply = await client.put("/api/v1/halls/QT", headers=supervisor, json=bad)
        assert reply.status_code == 422 and "county" in reply.text
        other = hall("QT", "county", "HZ").model_dump(mode="json")
        reply = await client.put("/api/v1/halls/XX", headers=supervisor, json=other)
        assert reply.status_code == 422
        reply = await client.put(
            "/api/v1/halls/QT", headers=supervisor, json={**other, "region_code": "3301"}
        )
        assert reply.status_code == 422
        assert (await client.get("/api/v1/halls/QT", headers=supervisor)).status_code == 404

        assert (await client.get("/api/v1/halls", headers=manager)).status_code == 403
        reply = await client.put("/api/v1/halls/QT", headers=manager, json=other)
        assert reply.status_code == 403
