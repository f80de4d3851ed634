"""The dashboard over its real app and storage (SQLite and PostgreSQL): a seeded central, one
account per role, clients that log in through the login form."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
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
from central.rules.workdays import WorkCalendar
from central.security import accounts as accounts_module
from central.security.tokens import Role, create_token
from central.spine.registry import register
from central.store.db import make_engine
from central.store.migrate import upgrade
from central.web.context import WebContext
from hallkit.login import accounts as login_accounts
from tests.central.web import seed as seeds

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


@pytest.fixture
async def site(database_url: str, tmp_path: Path) -> AsyncIterator[Site]:
    engine = make_engine(database_url)
    await upgrade(engine)
    for hall, gateway in (("H1", "gw1"), ("H2", "gw2"), ("H3", "gw3")):
        await register(engine, hall, gateway)
    calendar = WorkCalendar(assume_weekends=True)
    seed = seeds.build(calendar)
    masker = ApplicantMasker(b"s" * 32)
    results = await feed(engine, seed.cases, masker, source=Source.API, now=seed.now)
    assert all(r.outcome.value == "created" for r in results), results
    await ladder.run_once(engine, seed.today, calendar, DEFAULT_LADDER, now=seed.now)
    await seeds.ingest(engine, seed)
    await correlation_job.run_once(engine, calendar=calendar, now=seed.now)
    for name, (role, user_hall, department) in seeds.USERS.items():
        await accounts_module.add(
            engine, name, seeds.PASSWORD, Role(role), hall=user_hall, department=department
        )
    app = create_app(engine)
    app.state.cases = CaseContext(masker=masker, calendar=calendar, ladder=DEFAULT_LADDER)
    app.state.web = WebContext.from_data_dir(tmp_path / "data")
    yield Site(engine, app, seed, calendar)
    await engine.dispose()


def hidden_csrf(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found, "no CSRF field in the page"
    return found.group(1)
