"""The dashboard over its real app and storage (SQLite and PostgreSQL): a seeded central, one
account per role, clients that log in through the login form."""

from __future__ import annotations

import datetime as dt
import functools
import re
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncEngine

from central.api.app import create_app
from central.cases import ladder
from central.cases.context import CaseContext
from central.cases.masking import ApplicantMasker
from central.cases.store import Source, feed
from central.correlation import job as correlation_job
from central.rules.timelimit import DEFAULT_LADDER
from central.rules.workdays import WorkCalendar, business_date
from central.security import accounts as accounts_module
from central.security.tokens import Role, create_token
from central.spine.registry import register
from central.store.db import make_engine
from central.store.migrate import upgrade
from central.web.context import WebContext
from hallkit.clock import utc_now
from hallkit.login import accounts as login_accounts
from tests.central.web import seed as seeds
from tests.support.databases import DATABASE_KINDS, Template, scratch_database

BASE = "http://central.test"


@pytest.fixture
def database_at_head() -> bool:
    return True  # these tests migrate first: start from the migrated template


@pytest.fixture(autouse=True)
def cheap_hashes(monkeypatch: pytest.MonkeyPatch) -> None:
    """The real scrypt code at a small cost: these tests are about HTTP and scope, not hashing
    (the cost is stored with each hash, so verification follows it)."""
    monkeypatch.setattr(login_accounts, "SCRYPT_N", 2**10)
    login_accounts._dummy_hash.cache_clear()


@dataclass
class Site:
    engine: AsyncEngine
    app: FastAPI
    seed: seeds.Seed
    calendar: WorkCalendar

    def client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(transport=httpx.ASGITransport(app=self.app), base_url=BASE)

    async def bearer(
        self,
        role: Role,
        *,
        hall: str | None = None,
        department: str | None = None,
        label: str = "",
    ) -> dict[str, str]:
        token = await create_token(self.engine, role, hall=hall, department=department, label=label)
        return {"Authorization": f"Bearer {token}"}


async def login(
    client: httpx.AsyncClient, name: str, password: str = seeds.PASSWORD
) -> httpx.Response:
    return await client.post(
        "/login", data={"username": name, "password": password, "next": "/overview"}
    )


def csrf_of(client: httpx.AsyncClient) -> str:
    return client.cookies.get("hw_central_csrf") or ""


@asynccontextmanager
async def logged_in(site: Site, name: str) -> AsyncIterator[httpx.AsyncClient]:
    async with site.client() as client:
        reply = await login(client, name)
        assert reply.status_code == 303, reply.text
        yield client


MASKER = ApplicantMasker(b"s" * 32)


@dataclass(frozen=True)
class SeededSite:
    """The seed of one business day and the template database holding it: built once per
    session (and again should the session cross midnight in Beijing), copied for each test."""

    seed: seeds.Seed
    calendar: WorkCalendar
    template: Template


@functools.cache
def _seeded_site(day: dt.date) -> SeededSite:
    calendar = WorkCalendar(assume_weekends=True)
    seed = seeds.build(calendar)

    async def fill(url: str) -> None:
        engine = make_engine(url)
        try:
            await upgrade(engine)
            for hall, gateway in (("H1", "gw1"), ("H2", "gw2"), ("H3", "gw3")):
                await register(engine, hall, gateway)
            results = await feed(engine, seed.cases, MASKER, source=Source.API, now=seed.now)
            assert all(r.outcome.value == "created" for r in results), results
            await ladder.run_once(engine, seed.today, calendar, DEFAULT_LADDER, now=seed.now)
            await seeds.ingest(engine, seed)
            await correlation_job.run_once(engine, calendar=calendar, now=seed.now)
            for name, (role, user_hall, department) in seeds.USERS.items():
                await accounts_module.add(
                    engine, name, seeds.PASSWORD, Role(role), hall=user_hall, department=department
                )
        finally:
            await engine.dispose()

    return SeededSite(seed, calendar, Template(f"web-seed-{day}", fill))


@pytest.fixture(params=DATABASE_KINDS)
def seeded_site_url(
    request: pytest.FixtureRequest, tmp_path: Path, cheap_hashes: None
) -> Iterator[tuple[str, SeededSite]]:
    """A copy of today's seeded central (outside the event loop: the template may be built)."""
    seeded = _seeded_site(business_date(utc_now()))
    with scratch_database(request.param, tmp_path, seeded.template) as url:
        yield url, seeded


@pytest.fixture
async def site(seeded_site_url: tuple[str, SeededSite], tmp_path: Path) -> AsyncIterator[Site]:
    url, seeded = seeded_site_url
    engine = make_engine(url)
    await upgrade(engine)  # a no-op on the copy, as on any central restarted at the head
    app = create_app(engine)
    app.state.cases = CaseContext(masker=MASKER, calendar=seeded.calendar, ladder=DEFAULT_LADDER)
    app.state.web = WebContext.from_data_dir(tmp_path / "data")
    yield Site(engine, app, seeded.seed, seeded.calendar)
    await engine.dispose()


def hidden_csrf(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found, "no CSRF field in the page"
    return found.group(1)
