"""抽查 over the real app and storage (SQLite and PostgreSQL): a month drawn from its seed with
the site's sizes and overrides, drawn again without duplicates, call-backs entered by a
supervisor, the findings in the 月度通报 against a hand count, and who may do what."""

from __future__ import annotations

import datetime as dt
import hashlib
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from central.audits import config as audit_config
from central.audits import store as audit_store
from central.audits.config import AuditConfig, SampleSize
from central.audits.store import draw_month
from central.cases.store import Source, feed
from central.records import evidence
from central.reporting import bulletin
from central.security.tokens import Principal, Role
from central.spine.ingest import Ingestor
from central.store.schema import events
from protocols import topics
from protocols.evidence import EvidenceHeader, encode_upload
from tests.central.web import seed as seeds
from tests.central.web.conftest import MASKER, Site
from tests.support.hallevents import Gateway

SEED = "nov-audit-1"
MARKET, SOCIAL, TAX = seeds.MARKET, seeds.SOCIAL, seeds.TAX


def by_hand(numbers: list[str], n: int) -> list[str]:
    return sorted(numbers, key=lambda no: hashlib.sha256(f"{SEED}\x1f{no}".encode()).hexdigest())[
        :n
    ]


async def _finish_more(site: Site) -> dict[str, list[str]]:
    """Completed cases this month besides the seed's: SJ-201 (its evaluation: key 1) finished,
    and extra cases in three departments; returns every department's finished cases."""
    now = site.seed.now
    rows: list[dict[str, Any]] = []
    for no, hall, window, staff, n in (
        ("SJ-9", "H1", 2, "100232", 2),
        ("RS-9", "H1", 3, "100241", 9),
        ("SW-9", "H2", 2, "200201", 5),
    ):
        for i in range(n):
            done = now - dt.timedelta(seconds=30 + i)
            rows.append(
                seeds._row(
                    f"{no}{i:02d}",
                    hall,
                    window,
                    staff,
                    done - dt.timedelta(minutes=1),
                    status="completed",
                    completed_at=done.isoformat(),
                )
            )
    revised = dict(next(c for c in site.seed.cases if c["case_no"] == "SJ-201"))
    revised.update(status="completed", completed_at=(now - dt.timedelta(seconds=20)).isoformat())
    rows.append(revised)
    results = await feed(site.engine, rows, MASKER, source=Source.API, now=now)
    assert all(r.outcome.value in ("created", "revised") for r in results), results
    return {
        MARKET: ["SJ-101", "SJ-201", "SJ-900", "SJ-901"],
        SOCIAL: ["RS-101", *(f"RS-9{i:02d}" for i in range(9))],
        TAX: [f"SW-9{i:02d}" for i in range(5)],
    }


SNAPSHOT = b"\xff\xd8 window 1 at SJ-201's evaluation \xff\xd9"


async def _snapshot_for(site: Site, evaluation: dict[str, Any], data_dir: Path) -> str:
    """The camera verdict of the evaluation's key press and its snapshot, as the gateway would
    journal and upload them (real Ingestor, real evidence receiver and vault)."""
    async with site.engine.connect() as conn:
        last = (
            await conn.execute(select(func.max(events.c.seq)).where(events.c.gateway_id == "gw1"))
        ).scalar_one()
    gateway = Gateway("H1", "gw1")
    gateway.seq = last
    sha = hashlib.sha256(SNAPSHOT).hexdigest()
    path = "2026/w1/audit-0001.jpg"
    verdict = {
        "window": evaluation["window"],
        "verdict": "present",
        "confidence": 0.9,
        "reason": "窗口前有人 / someone at the window",
        "camera": "cam-w1",
        "at_mono_ns": 1,
        "frames": 12,
        "occupied_frames": 11,
        "snapshot": path,
        "snapshot_sha256": sha,
        "snapshot_offset_ms": 80,
        "manifest_seq": 9,
        "manifest_head": "cd" * 32,
        "addr": evaluation["window"],
        "dev_seq": 0,
        "key_seq": evaluation["seq"],
    }
    at = dt.datetime.fromisoformat(evaluation["evaluated_at"]) + dt.timedelta(seconds=2)
    await Ingestor(site.engine).ingest([gateway.batch([("camera.verdict", verdict, at)])])
    vault = evidence.bind(site.engine, data_dir)
    header = EvidenceHeader(
        hall="H1",
        gateway="gw1",
        path=path,
        sha256=sha,
        size=len(SNAPSHOT),
        manifest_seq=9,
        event_seq=gateway.seq,
    )
    topic = topics.topic("H1", "gw1", topics.Channel.EVIDENCE)
    receipt = await evidence.receive(site.engine, vault, topic, encode_upload(header, SNAPSHOT))
    assert receipt is not None and receipt.status == "stored", receipt
    return sha


CONFIG = AuditConfig(
    sample=SampleSize(count=3),
    departments={MARKET: SampleSize(percent=100), TAX: SampleSize(count=1, percent=50)},
)


async def test_draw_callbacks_findings_and_the_bulletin(
    site: Site, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(audit_store, "CHUNK", 4)  # the month read in several chunks
    finished = await _finish_more(site)
    month = f"{site.seed.today:%Y-%m}"
    audit_config.bind(site.engine, CONFIG)
    ended = site.seed.now + dt.timedelta(days=32)  # drawn as if the month had ended
    sample = await draw_month(site.engine, month, CONFIG, seed=SEED, by="test", now=ended)
    assert sample.created
    sizes = {d: (doc["population"], doc["size"]) for d, doc in sample.departments.items()}
    assert sizes == {MARKET: (4, 4), SOCIAL: (10, 3), TAX: (5, 3)}  # TAX: max(1, ⌈2.5⌉)
    supervisor = await site.bearer(Role.SUPERVISOR, label="jiancha")
    async with site.client() as client:
        listed = (
            await client.get("/api/v1/audits", params={"month": month}, headers=supervisor)
        ).json()
        picked: dict[str, list[str]] = {}
        for t in listed["tasks"]:
            picked.setdefault(t["department"], []).append(t["case_no"])
        assert picked == {d: by_hand(nos, sizes[d][1]) for d, nos in finished.items()}
        task_of = {t["case_no"]: t["id"] for t in listed["tasks"]}
        # drawn again, by the API with another seed: the same sample, nothing added
        again = await client.post(
            "/api/v1/audits/draw", json={"month": month, "seed": "other"}, headers=supervisor
        )
        assert again.status_code == 200 and again.json()["seed"] == SEED
        assert again.json()["created"] is False
        relisted = await client.get("/api/v1/audits", params={"month": month}, headers=supervisor)
        assert len(relisted.json()["tasks"]) == 10

        async def call(case_no: str, **answer: Any) -> dict[str, Any]:
            reply = await client.post(
                f"/api/v1/audits/tasks/{task_of[case_no]}/callbacks",
                json=answer,
                headers=supervisor,
            )
            assert reply.status_code == 201, reply.text
            return reply.json()  # type: ignore[no-any-return]

        yes = {"handled": "yes", "timing": "yes", "evaluation": "yes"}
        said = await call("SJ-201", reached=True, **yes, satisfied="no", note="说不满意")
        assert said["discrepancies"] == ["satisfaction"]  # the record holds 非常满意
        await call("SJ-101", reached=False, note="无人接听")
        await call("SJ-101", reached=True, handled="no", note="称未办结")
        await call("SJ-900", reached=False)
        social = picked[SOCIAL][0]
        await call(social, reached=True, **yes, satisfied="yes")
        detail = (
            await client.get(f"/api/v1/audits/tasks/{task_of['SJ-201']}", headers=supervisor)
        ).json()
        assert detail["case"]["applicant"] == "张** 138****5678"  # 张三丰, masked as stored
        assert detail["case"]["status"] == "completed" and detail["case"]["ladder"] is not None
        assert [e["key"] for e in detail["evaluations"]] == [1]
        assert detail["evaluations"][0]["evidence"] == []
        sha = await _snapshot_for(site, detail["evaluations"][0], tmp_path)
        detail = (
            await client.get(f"/api/v1/audits/tasks/{task_of['SJ-201']}", headers=supervisor)
        ).json()
        (shown,) = detail["evaluations"][0]["evidence"]
        assert shown["snapshot_sha256"] == sha and shown["verdict"] == "present"
        image = await client.get(shown["image_url"], headers=supervisor)
        assert image.status_code == 200 and image.content == SNAPSHOT
        assert [c["satisfied"] for c in detail["callbacks"]] == ["no"]
        findings = (
            await client.get("/api/v1/audits/findings", params={"month": month}, headers=supervisor)
        ).json()
        assert {f["case_no"]: f["discrepancies"] for f in findings} == {
            "SJ-101": ["handling"],
            "SJ-201": ["satisfaction"],
        }

        # a department leader reads its own department's tasks, changes nothing
        leader = await site.bearer(Role.DEPARTMENT_LEADER, department=MARKET)
        own = (await client.get("/api/v1/audits", params={"month": month}, headers=leader)).json()
        assert {t["department"] for t in own["tasks"]} == {MARKET} and own["may_work"] is False
        assert [d["department"] for d in own["sample"]["departments"]] == [MARKET]
        mine = (
            await client.get(f"/api/v1/audits/tasks/{task_of['SJ-201']}", headers=leader)
        ).json()
        assert mine["may_work"] is False and mine["callbacks"] == detail["callbacks"]
        (seen,) = mine["evaluations"][0]["evidence"]
        assert (await client.get(seen["image_url"], headers=leader)).content == SNAPSHOT
        social_task = f"/api/v1/audits/tasks/{task_of[social]}"
        assert (await client.get(social_task, headers=leader)).status_code == 404
        refused = await client.post(
            f"{social_task}/callbacks", json={"reached": False}, headers=leader
        )
        assert refused.status_code == 403
        for role, scope in ((Role.TECHNICIAN, {}), (Role.HALL_MANAGER, {"hall": "H2"})):
            other = await site.bearer(role, **scope)
            assert (await client.get("/api/v1/audits", headers=other)).status_code == 403

    # the 月度通报's section, counted by hand from the calls above
    who = Principal(Role.SUPERVISOR)
    doc = await bulletin.build(site.engine, who, month, site.calendar, site.seed.now)
    assert doc.audits is not None and doc.audits.seed == SEED
    section = {d.department: d for d in doc.audits.departments}
    assert {
        d: (s.population, s.sampled, s.called, s.reached, s.discrepancies, s.case_nos)
        for d, s in section.items()
    } == {
        MARKET: (4, 4, 3, 2, 2, sorted(["SJ-101", "SJ-201"], key=picked[MARKET].index)),
        SOCIAL: (10, 3, 1, 1, 0, []),
        TAX: (5, 3, 0, 0, 0, []),
    }
    lines = bulletin.to_csv(doc, "audits", "zh").decode("utf-8-sig").splitlines()
    assert lines[0] == "部门,办结件数,抽取件数,已录入回访,完成回访,发现问题,问题办件"
    assert lines[1:] == [
        f"{SOCIAL},10,3,1,1,0,",  # in the order of the departments' names
        f"{MARKET},4,4,3,2,2,{' '.join(section[MARKET].case_nos)}",
        f"{TAX},5,3,0,0,0,",
    ]
    leader_doc = await bulletin.build(
        site.engine,
        Principal(Role.DEPARTMENT_LEADER, department=MARKET),
        month,
        site.calendar,
        site.seed.now,
    )
    assert leader_doc.audits is not None
    assert [d.department for d in leader_doc.audits.departments] == [MARKET]


async def test_a_month_not_ended_is_not_drawn(site: Site) -> None:
    supervisor = await site.bearer(Role.SUPERVISOR)
    async with site.client() as client:
        reply = await client.post(
            "/api/v1/audits/draw", json={"month": f"{site.seed.today:%Y-%m}"}, headers=supervisor
        )
        assert reply.status_code == 422
        assert "尚未结束" in reply.json()["detail"]
