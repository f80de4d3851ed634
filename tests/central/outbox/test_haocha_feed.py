"""The 好差评 feed on real stores: counted evaluations become create records, a re-issued
version an update, one no longer counted a withdrawal; each record carries the mapping version
in force on its day; delivered to a fake platform; status by API and CLI."""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncEngine
from typer.testing import CliRunner

from central.api.app import create_app
from central.cli import app as cli
from central.haocha import feed
from central.haocha.config import FeedConfig
from central.outbox.config import HttpTarget, OutboxConfig
from central.outbox.worker import Deliverer
from central.rules.scale import DEFAULT_MAPPING, MappingBook, MappingVersion
from central.security.tokens import Role, create_token
from central.store.db import make_engine
from central.store.migrate import upgrade
from central.store.schema import cases
from central.store.schema_correlation import correlation_heads, correlation_results, followups
from central.store.schema_halls import halls
from central.store.schema_outbox import haocha_feed, outbox
from tests.central.outbox.fakes import FakeReceiver, serve

NOW = dt.datetime(2027, 1, 4, 2, 0, tzinfo=dt.UTC)  # 10:00 in Beijing, under version 2027
HTTP = FeedConfig(channel="platform_http")


def _book() -> MappingBook:
    keys: dict[int, Any] = {
        k: {"level": r.level, "tag": r.tag} for k, r in DEFAULT_MAPPING.keys.items()
    }
    keys[2] = {"level": 3, "tag": None}  # from 2027 key 2 is 基本满意
    later = MappingVersion.model_validate(
        {"version": "2027", "effective_from": "2027-01-01", "keys": keys}
    )
    return MappingBook([DEFAULT_MAPPING, later])


def _result(seq: int, version: int, key: int, counted: bool, case_nos: list[str]) -> dict[str, Any]:
    at = NOW if seq != 3 else dt.datetime(2026, 12, 30, 2, tzinfo=dt.UTC)  # seq 3: in 2026
    return {
        "gateway_id": "gw1", "seq": seq, "version": version,
        "supersedes": version - 1 if version > 1 else None, "hall_id": "H1",
        "business_day": at.date(), "window": 2, "addr": 2, "dev_seq": seq, "key": key,
        "evaluated_at": at, "time_source": "synced", "session_id": None, "ticket": "A001",
        "staff": "000123", "case_nos": case_nos, "confidence": 0.9, "flags": [],
        "counted": counted, "basis": "invitation", "citizen": None, "computed_at": NOW,
        "digest": hashlib.sha256(f"{seq}/{version}".encode()).hexdigest(),
    }  # fmt: skip


async def _put(engine: AsyncEngine, *results: dict[str, Any]) -> None:
    async with engine.begin() as conn:
        for r in results:
            await conn.execute(insert(correlation_results).values(**r))
            head = {k: r[k] for k in ("gateway_id", "seq", "version", "hall_id", "business_day")}
            if r["version"] == 1:
                await conn.execute(insert(correlation_heads).values(**head))
            else:
                await conn.execute(
                    update(correlation_heads)
                    .where(
                        correlation_heads.c.gateway_id == r["gateway_id"],
                        correlation_heads.c.seq == r["seq"],
                    )
                    .values(version=r["version"])
                )


async def _seed(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        await conn.execute(
            insert(halls).values(
                hall_id="H1", name="西湖区行政服务中心", level="county", parent_id=None,
                region_code="330106", updated_at=NOW,
            )
        )  # fmt: skip
        await conn.execute(
            insert(cases).values(
                case_no="C1", revision=1, item_code="11330106MB0001", item_name="营业执照",
                department="市场监管局", hall_id="H1", window=2, staff="000123",
                accepted_at=NOW, legal_days=5, status="running", received_at=NOW, source="api",
                applicant_masked="张*, 138****5678",
            )
        )  # fmt: skip
    await _put(
        engine,
        _result(1, 1, 2, True, ["C1"]),
        _result(2, 1, 4, True, []),
        _result(3, 1, 3, True, []),
        _result(4, 1, 1, False, []),  # never counted: never fed
    )


@pytest.mark.asyncio
async def test_feed_creates_updates_withdraws_and_reports(engine: AsyncEngine) -> None:
    await _seed(engine)
    book = _book()
    assert await feed.scan(engine, book, HTTP, None, NOW) == 3
    assert await feed.scan(engine, book, HTTP, None, NOW) == 0  # nothing new: nothing again
    await _put(engine, _result(1, 2, 1, True, ["C1"]), _result(2, 2, 4, False, []))
    assert await feed.scan(engine, book, HTTP, NOW - dt.timedelta(minutes=5), NOW) == 2
    fake = FakeReceiver(["500", "timeout"])
    fake.hang_s = 1.2
    with serve(fake) as url:
        config = OutboxConfig(
            platform_http=HttpTarget(url=url, timeout_s=0.5), lease_s=1, backoff_s=0.05
        )
        deliverer = Deliverer(engine, config, worker="w")
        for _ in range(100):
            await deliverer.run_once()
            if len(fake.accepted) == 5 and fake.plan == []:
                async with engine.connect() as conn:
                    from central.outbox.store import counts

                    if (await counts(conn))["delivered"] == 5:
                        break
            await asyncio.sleep(0.05)
        await deliverer.adapters["platform_http"].close()
    got = {k.removeprefix("haocha:gw1:"): v for k, v in fake.accepted.items()}
    assert set(got) == {"1:1", "2:1", "3:1", "1:2", "2:2"}
    first = got["1:1"]
    assert (first["op"], first["case_no"], first["item_code"]) == ("create", "C1", "11330106MB0001")
    assert (first["department"], first["region_code"], first["hall_name"]) == (
        "市场监管局", "330106", "西湖区行政服务中心"
    )  # fmt: skip
    assert (first["level"], first["level_name"], first["mapping_version"]) == (
        3,
        "基本满意",
        "2027",
    )
    assert first["channel"] == "线下-窗口评价器" and first["source"] == "hallwatch/gw1/1"
    assert "applicant" not in first  # not configured
    assert (got["2:1"]["tags"], got["2:1"]["level"]) == (["办理时限"], 2)
    # seq 3 was pressed in 2026: the version in force then, though fed in 2027
    assert (got["3:1"]["mapping_version"], got["3:1"]["tags"]) == ("2019", ["服务态度"])
    assert (got["1:2"]["op"], got["1:2"]["level"], got["1:2"]["supersedes"]) == ("update", 5, 1)
    assert got["2:2"]["op"] == "withdraw"

    app = create_app(engine)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://test"
    ) as client:
        token = await create_token(engine, Role.SUPERVISOR)
        answer = await client.get(
            "/api/v1/feed/status", headers={"Authorization": f"Bearer {token}"}
        )
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert body["counts"]["delivered"] == 5 and body["counts"]["pending"] == 0
        ops = {(r["seq"], r["version"]): (r["op"], r["status"]) for r in body["records"]}
        assert ops[(2, 2)] == ("withdraw", "delivered") and len(ops) == 5
        other = await create_token(engine, Role.HALL_MANAGER, hall="H9")
        theirs = await client.get(
            "/api/v1/feed/status", headers={"Authorization": f"Bearer {other}"}
        )
        assert theirs.json()["records"] == []  # another hall's records stay out of reach


def test_feed_status_cli(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'central.db'}"
    config = tmp_path / "central.yaml"
    config.write_text(f"database_url: {url}\ndata_dir: {tmp_path / 'data'}\n")

    async def prepare() -> None:
        engine = make_engine(url)
        try:
            await upgrade(engine)
            await _seed(engine)
            await feed.scan(engine, _book(), FeedConfig(channel="platform_file"), None, NOW)
            async with engine.begin() as conn:  # one held by a rate limit, one given up
                await conn.execute(update(outbox).where(outbox.c.id == 1).values(status="held"))
                await conn.execute(update(outbox).where(outbox.c.id == 2).values(status="failed"))
        finally:
            await engine.dispose()

    asyncio.run(prepare())
    result = CliRunner().invoke(cli, ["feed", "status", "-c", str(config)])
    assert result.exit_code == 0, result.output
    assert "pending 1" in result.output and "held 1" in result.output
    assert "gw1:1 v1\tH1\tcreate\theld" in result.output
    release = CliRunner().invoke(cli, ["outbox", "release", "1", "2", "3", "-c", str(config)])
    assert release.exit_code == 0 and "2 messages released" in release.output
    status = CliRunner().invoke(cli, ["outbox", "status", "-c", str(config)])
    assert "platform_file\tpending 3  sending 0  delivered 0  failed 0  held 0" in status.output


async def _uphold_appeal(engine: AsyncEngine, seq: int) -> None:
    """The work order of ``seq`` closed as excluded (申诉核减), as the supervisor's decision
    leaves it."""
    async with engine.begin() as conn:
        await conn.execute(
            insert(followups).values(
                item_id=f"FU-gw1-{seq}", gateway_id="gw1", seq=seq, evaluation_version=1,
                reason=4, hall_id="H1", window=2, evaluated_at=NOW, created_at=NOW,
                due=NOW.date(), state="closed", updated_at=NOW, escalation_level=0,
                closed_at=NOW, appeal_ground="malicious", appeal_upheld=True, excluded=True,
            )
        )  # fmt: skip


@pytest.mark.asyncio
async def test_an_upheld_appeal_withdraws_the_record_once(engine: AsyncEngine) -> None:
    await _seed(engine)
    book = _book()
    assert await feed.scan(engine, book, HTTP, None, NOW) == 3
    await _uphold_appeal(engine, 2)
    assert await feed.scan(engine, book, HTTP, NOW, NOW) == 1  # the withdrawal
    assert await feed.scan(engine, book, HTTP, None, NOW) == 0  # said once
    async with engine.connect() as conn:
        sent = (
            await conn.execute(select(outbox).where(outbox.c.idem_key == "haocha:gw1:2:1:appeal"))
        ).one()
        fed = (await conn.execute(select(haocha_feed).where(haocha_feed.c.seq == 2))).one()
    assert (sent.payload["op"], sent.payload["record_id"]) == ("withdraw", "gw1-2")
    assert sent.payload["withdraw_reason"] == "申诉核减"
    assert (fed.op, fed.level, fed.outbox_id) == ("withdraw", None, sent.id)
    # a later version of the excluded evaluation stays withdrawn: nothing to send
    await _put(engine, _result(2, 2, 3, True, []))
    assert await feed.scan(engine, book, HTTP, None, NOW) == 0
