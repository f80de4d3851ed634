"""schemathesis against central's OpenAPI schema, in process (ASGI), on a migrated SQLite with
real data: no request a supervisor can make causes a server error, every 2xx body matches its
documented model, and no request without a valid token succeeds."""

from __future__ import annotations

import asyncio
import itertools
import os
from datetime import UTC, datetime
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.core.result import Ok
from schemathesis.specs.openapi.checks import response_schema_conformance
from sqlalchemy import update
from sqlalchemy.pool import NullPool

from central.api.app import create_app
from central.security.tokens import Role, create_token
from central.spine.ingest import Ingestor
from central.spine.registry import register
from central.store.db import make_engine
from central.store.migrate import upgrade
from central.store.schema import api_tokens
from tests.central.records.test_ledger import store_case
from tests.central.records.test_timeseries import scenario
from tests.support.hallevents import Gateway

# Per operation, with a valid token: ~50 operations keep the run near a minute on two cores.
# HALLWATCH_FUZZ_EXAMPLES raises it for a longer hunt.
EXAMPLES = int(os.environ.get("HALLWATCH_FUZZ_EXAMPLES", "20"))
# Refusal does not depend on the payload beyond its shape: the first few examples of each
# operation are also sent without a valid token and as another hall's manager.
REFUSAL_EXAMPLES = 8


async def _prepare(url: str) -> dict[str, str]:
    engine = make_engine(url)
    try:
        await upgrade(engine)
        await register(engine, "H1", "gw1")
        await register(engine, "H2", "gw2")
        await Ingestor(engine).ingest([Gateway("H1", "gw1").batch(scenario())])
        await store_case(engine, "C1", 1)
        revoked = await create_token(engine, Role.SUPERVISOR, label="left the office")
        async with engine.begin() as conn:
            await conn.execute(
                update(api_tokens)
                .values(revoked_at=datetime.now(UTC))
                .where(api_tokens.c.label == "left the office")
            )
        return {
            "supervisor": await create_token(engine, Role.SUPERVISOR),
            "hall_manager": await create_token(engine, Role.HALL_MANAGER, hall="H2"),
            "revoked": revoked,
        }
    finally:
        await engine.dispose()


@pytest.fixture(scope="module")
def tokens_and_app(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, str], Any]:
    url = f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('fuzz') / 'central.db'}"
    tokens = asyncio.run(_prepare(url))
    # every call runs the app on a fresh event loop: no pooled connection may outlive one
    app = create_app(make_engine(url, poolclass=NullPool))
    try:  # what the aggregator binds at start for the case routes (salt, calendar, ladder)
        from central.cases.context import CaseContext
        from central.config import CentralConfig
    except ImportError:  # pragma: no cover - a tree without the case service
        return tokens, app
    data_dir = tmp_path_factory.mktemp("data")
    app.state.cases = CaseContext.from_config(CentralConfig(database_url=url, data_dir=data_dir))
    # and the evidence vault the aggregator binds for GET /api/v1/evidence/{sha256}
    from central.records.evidence import EvidenceVault

    app.state.evidence = EvidenceVault.in_data_dir(data_dir)
    return tokens, app


def success_conforms(ctx: Any, response: Any, case: Any) -> bool | None:
    """A 2xx body matches its documented model (error bodies are not checked: the API's
    HTTPException details are plain strings where FastAPI documents its validation list)."""
    if 200 <= response.status_code < 300:
        return response_schema_conformance(ctx, response, case)
    return None


def bounded(case: Any) -> Any:
    """A server-sent-events stream runs as long as it is asked to (max_s up to an hour, ten
    minutes when absent): the fuzz ends the stream after its first state."""
    if case.path.endswith("/stream"):
        case.query = {**(case.query or {}), "max_s": 0}
    return case


def check(case: Any, tokens: dict[str, str], refusals: bool) -> None:
    case = bounded(case)
    case.call_and_validate(
        headers={"Authorization": f"Bearer {tokens['supervisor']}"},
        checks=[not_a_server_error, success_conforms],
    )
    if refusals:
        check_refusals(case, tokens)


def check_refusals(case: Any, tokens: dict[str, str]) -> None:
    headers = {k: v for k, v in (case.headers or {}).items() if k.lower() != "authorization"}
    for auth in (
        None,
        f"Bearer {tokens['revoked']}",
        "Basic aHc6aHc=",
        f"Bearer {tokens['supervisor'][:-2]}",
        "Bearer hwt_" + "x" * 43,
    ):
        reply = case.call(headers={**headers, **({"Authorization": auth} if auth else {})})
        assert reply.status_code < 500, (auth, reply.status_code, reply.text[:300])
        assert not 200 <= reply.status_code < 300, (
            f"{case.method} {case.formatted_path} answered {reply.status_code} to {auth!r}"
        )
    # a hall manager of H2 never gets H1's data
    reply = case.call(headers={**headers, "Authorization": f"Bearer {tokens['hall_manager']}"})
    assert reply.status_code < 500, (reply.status_code, reply.text[:300])
    if 200 <= reply.status_code < 300 and case.method == "GET":
        assert '"H1"' not in reply.text, f"{case.formatted_path} leaks hall H1 to H2's manager"


def test_no_server_error_and_nothing_without_a_token(
    tokens_and_app: tuple[dict[str, str], Any],
) -> None:
    tokens, app = tokens_and_app
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    operations = []
    for result in schema.get_all_operations():
        assert isinstance(result, Ok), result
        operations.append(result.ok())
    assert len(operations) >= 3

    for operation in operations:
        counter = itertools.count()

        @given(case=operation.as_strategy())
        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            derandomize=True,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def fuzz(case: Any) -> None:
            check(case, tokens, refusals=next(counter) < REFUSAL_EXAMPLES)  # noqa: B023 (run now)

        fuzz()


def test_the_schema_documents_every_route_as_authenticated(
    tokens_and_app: tuple[dict[str, str], Any],
) -> None:
    doc = tokens_and_app[1].openapi()
    assert doc["paths"]
    for path, operations in doc["paths"].items():
        for method, op in operations.items():
            assert op.get("summary"), f"{method.upper()} {path} has no summary"
            assert op.get("security"), f"{method.upper()} {path} is not marked authenticated"
            assert any(
                (code.startswith("2") and "content" in body) or code == "204"
                for code, body in op["responses"].items()
            ), f"{method} {path}"
